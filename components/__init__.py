"""foldwise's KFP components: thin wrappers over :mod:`foldwise.components.core`.

Inside a running step KFP sets ``_KFP_RUNTIME=true`` and provides only its runtime API, not
the authoring API the wrappers are built with; there, like ``kfp`` itself, this package
exports nothing and a step imports only ``foldwise.components.core``.
"""

import os

__all__ = ["aggregate", "champion", "collect_folds", "export", "nested_aggregate",
           "nested_choose", "nested_stage", "next_round", "next_rung", "one_hot_encode",
           "one_hot_encode_folds", "plan_trials", "preprocess", "promote", "refit", "report",
           "scale", "scale_folds", "train"]

if os.environ.get("_KFP_RUNTIME", "false") != "true":
    from foldwise.components.aggregate import aggregate
    from foldwise.components.champion import champion
    from foldwise.components.collect_folds import collect_folds
    from foldwise.components.export import export
    from foldwise.components.nested_aggregate import nested_aggregate
    from foldwise.components.nested_choose import nested_choose
    from foldwise.components.nested_stage import nested_stage
    from foldwise.components.next_round import next_round
    from foldwise.components.next_rung import next_rung
    from foldwise.components.one_hot_encode import one_hot_encode
    from foldwise.components.one_hot_encode_folds import one_hot_encode_folds
    from foldwise.components.plan_trials import plan_trials
    from foldwise.components.preprocess import preprocess
    from foldwise.components.promote import promote
    from foldwise.components.refit import refit
    from foldwise.components.report import report
    from foldwise.components.scale import scale
    from foldwise.components.scale_folds import scale_folds
    from foldwise.components.train import train
