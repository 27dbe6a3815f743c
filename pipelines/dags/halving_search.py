"""Successive halving (or racing) by folds: rungs of one static DAG, then refit and export.

preprocess → scale → one_hot_encode (every fold in each) → plan_trials (rung 0: every
candidate on the first folds) → train loop → [next_rung → train loop on the survivors'
next folds] × (rungs − 1) → next_rung (gathers every result) → aggregate → refit → report
→ export. The number of rungs is fixed when the pipeline is built (``rungs``).
"""

from kfp import dsl

from foldwise.pipelines.dags.cluster import LOCAL, ClusterSettings
from foldwise.pipelines.dags.search import (
    GridSearchOutputs,
    run_values,
    search_outputs,
    search_steps,
)

DEFAULT_RUNGS = 2


def build_halving_search(settings: ClusterSettings = LOCAL, rungs: int = DEFAULT_RUNGS):
    """The halving-search pipeline with ``rungs`` rungs, each step set up by ``settings``."""

    @dsl.pipeline(
        name="foldwise-halving-search",
        description="Successive halving or racing of Keras configurations by folds "
                    "(scikit-learn's HalvingGridSearchCV / HalvingRandomSearchCV), refit of "
                    "the best and export of a model that serves raw rows.",
    )
    def halving_search(
        data: str,
        target: str,
        destination: str,
        param_grid: list = [],  # noqa: B006 - KFP reads defaults from the signature
        param_distributions: list = [],  # noqa: B006
        n_candidates: int = 0,
        halving: dict = {},  # noqa: B006
        model_spec: dict = {},  # noqa: B006
        task: str = "",
        categorical: list = [],  # noqa: B006
        numeric: list = [],  # noqa: B006
        drop: list = [],  # noqa: B006
        group_column: str = "",
        folds: int = 5,
        split: str = "kfold",
        order_column: str = "",
        gap: int = 0,
        test_size: int = 0,
        repeats: int = 1,
        seed: int = 0,
        scaler: str = "standard",
        scoring: str = "",
        baseline: str = "none",
        objectives: str = "",
        importance: str = "on",
        packing: str = "none",
        refit: str = "best",
        refit_epochs: str = "fixed",
        serving_image: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
    ) -> GridSearchOutputs:
        """Race or halve candidate configurations over the folds; export the winner, refitted.

        Args:
            data: Path or ``gs://`` URI of the CSV or Parquet table.
            target: Column to predict.
            destination: Local folder or ``gs://`` prefix receiving the model, results,
                report and, last, ``manifest.json``.
            param_grid: The candidates as a grid (``HalvingGridSearchCV``), or empty.
            param_distributions: The candidates sampled from this space instead
                (``HalvingRandomSearchCV``), ``n_candidates`` of them.
            n_candidates: How many to sample; 0: ``max_resources // min_resources``.
            halving: ``factor``, ``resource`` (``folds``), ``min_resources``,
                ``max_resources``, ``aggressive_elimination``, ``elimination`` (``halving``
                or ``racing``) and ``confidence`` (racing), as ``core.search.rungs.check_halving``
                reads them.
            model_spec: Model options fixed for every configuration the search does not vary.
            task: ``classification``, ``regression`` or empty to infer it.
            categorical: Columns to one-hot encode whatever their type.
            numeric: Columns to treat as numbers.
            drop: Columns to leave out.
            group_column: Rows sharing this column's value share a fold.
            folds: Number of folds (per repetition).
            split: ``kfold`` or ``time``: time-ordered folds, each validating the next block
                of rows in time after training on the rows before it.
            order_column: ``time``: the column of times; empty for the table's row order.
            gap: ``time``: rows left out between a fold's training rows and its block.
            test_size: ``time``: rows per validation block; 0 for ``rows // (folds + 1)``.
            repeats: Repeat K-fold this many times, reshuffled each time.
            seed: Seed of the sampler, folds, weights and shuffling.
            scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
            scoring: Metric that ranks candidates; empty for ``r2`` / ``accuracy``.
            baseline: ``mlp`` to also score scikit-learn's MLP twin of each configuration.
            objectives: The score and serving costs weighed against each other
                (``r2,latency``; also ``n_parameters``, ``model_bytes``): ``cv_results``
                marks the Pareto front.
            importance: ``on``: the best configuration's permutation importance of each raw
                column, over the folds (summary and report); ``off`` to skip it.
            packing: ``none``, ``folds`` or ``configs``: how trials share train tasks.
            refit: ``best``, ``one_standard_error`` or ``pareto:<cost>``.
            refit_epochs: ``fixed`` or ``cv`` (the epoch of the lowest mean validation loss).
            serving_image: The image that serves the exported SavedModel, given as the
                ``serving_model`` output's ``containerSpec.imageUri`` (Vertex AI's prebuilt
                TensorFlow image by default).
        """
        values = run_values(locals())
        prepared, results = search_steps(settings, values, param_grid, model_spec,
                                         distributions=param_distributions,
                                         n_iter=n_candidates, halving=halving, rungs=rungs,
                                         refit=refit, refit_epochs=refit_epochs)
        return search_outputs(settings, prepared, results, values, destination, model_spec,
                              serving_image)

    return halving_search


halving_search = build_halving_search()
