"""The pipelines themselves: KFP DAGs built from the components, and the settings of their tasks.

``search`` holds the part every search shares (preprocess, per-fold transforms, the planned
train tasks, aggregate, report, refit and export); ``cross_validation``, ``grid_search``,
``random_search``, ``halving_search`` and ``retrain`` are the pipelines users compile and
run; ``cluster`` holds the node pools, accelerators, retries and caching a cluster's tasks
get. Nothing here runs a pipeline: the application layer (``foldwise.pipelines``) does.
"""
