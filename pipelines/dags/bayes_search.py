"""Bayesian search: rounds of a model-based optimizer, racing inside each, as static stages.

preprocess → scale → one_hot_encode (every fold in each) → plan_trials (the study asks
round 0's batch, planned on the first folds) → train loop → [next_round (race the round's
configurations on the folds scored so far, or tell the study the round and ask the next)
→ train loop] × (stages − 1) → next_round (gathers every result) → aggregate → refit →
report → export. The number of stages (rounds × stages per round) is fixed when the pipeline
is built (``rungs``); the study travels between them as the plan artifact.
"""

from kfp import dsl

from foldwise.pipelines.dags.cluster import LOCAL, ClusterSettings
from foldwise.pipelines.dags.search import (
    GridSearchOutputs,
    run_values,
    search_outputs,
    search_steps,
)

DEFAULT_STAGES = 10  # 60 configurations in rounds of 12, each raced in two stages


def build_bayes_search(settings: ClusterSettings = LOCAL, rungs: int = DEFAULT_STAGES):
    """The Bayesian-search pipeline with ``rungs`` stages, each step set up by ``settings``."""

    @dsl.pipeline(
        name="foldwise-bayes-search",
        description="Bayesian search of Keras configurations (Optuna's TPE, asked a batch per "
                    "round; scikit-optimize's BayesSearchCV) with racing inside each round "
                    "by a corrected paired t-test over the folds, leakage-free K-fold "
                    "cross-validation, refit of the best and export of a model that serves "
                    "raw rows.",
    )
    def bayes_search(
        data: str,
        target: str,
        param_distributions: list,
        destination: str,
        bayes: dict = {},  # noqa: B006 - KFP reads defaults from the signature
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
        """Search Keras configurations round by round; export the best, refitted.

        Args:
            data: Path or ``gs://`` URI of the CSV or Parquet table.
            target: Column to predict.
            param_distributions: One mapping of parameter → list of values or distribution
                (``{"loguniform": [a, b]}``, ``{"uniform": [low, high]}``,
                ``{"randint": [low, high]}``), a parameter existing only for some values of
                earlier ones with ``when`` (``core.search.bayes``).
            destination: Local folder or ``gs://`` prefix receiving the model, results,
                report and, last, ``manifest.json``.
            bayes: ``n_iter`` (configurations in all), ``batch`` (per round), ``racing``
                (``on``/``off``) and ``confidence``, as ``core.search.rounds.check_bayes``
                reads them.
            model_spec: Model options fixed for every configuration the space does not vary.
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
            seed: Seed of the optimizer, folds, weights and shuffling.
            scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
            scoring: Metric the search optimizes; empty for ``r2`` / ``accuracy``.
            baseline: ``none`` (a model-based search scores Keras configurations only).
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
        prepared, results = search_steps(settings, values, [], model_spec,
                                         distributions=param_distributions, bayes=bayes,
                                         rungs=rungs, refit=refit, refit_epochs=refit_epochs)
        return search_outputs(settings, prepared, results, values, destination, model_spec,
                              serving_image)

    return bayes_search


bayes_search = build_bayes_search()
