"""Grid search: the shared search steps, then refit → report → export.

preprocess → scale → one_hot_encode (every fold in each) → plan_trials →
per (config, fold) train → aggregate → refit (best config, all rows) → report → export.
"""

from kfp import dsl

from foldwise.pipelines.dags.cluster import LOCAL, ClusterSettings
from foldwise.pipelines.dags.search import (
    GridSearchOutputs,
    run_values,
    search_outputs,
    search_steps,
)


def build_grid_search(settings: ClusterSettings = LOCAL):
    """The grid-search pipeline with each step set up by ``settings``."""

    @dsl.pipeline(
        name="foldwise-grid-search",
        description="Grid search of Keras models with leakage-free K-fold cross-validation, "
                    "refit of the best configuration and export of a model that serves raw rows.",
    )
    def grid_search(
        data: str,
        target: str,
        param_grid: list,
        destination: str,
        model_spec: dict = {},  # noqa: B006 - KFP reads defaults from the signature
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
        """Search a grid of Keras configurations and export the best one, refitted on all rows.

        Args:
            data: Path or ``gs://`` URI of the CSV or Parquet table.
            target: Column to predict.
            param_grid: Mappings of parameter → list of values (scikit-learn's ``param_grid``).
            destination: Local folder or ``gs://`` prefix receiving the model, ``cv_results.csv``,
                ``best_params.json``, ``summary.json``, ``folds.csv``, ``report.html`` and, last,
                ``manifest.json``.
            model_spec: Model options fixed for every configuration the grid does not vary.
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
            seed: Seed of folds, weights and shuffling.
            scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
            scoring: Metric that picks the best configuration; empty for ``r2`` / ``accuracy``.
            baseline: ``mlp`` to also score scikit-learn's MLP with matching layers, learning
                rate, batch size and epochs on the same folds (rows marked in ``cv_results``).
            objectives: The score and serving costs weighed against each other
                (``r2,latency``; also ``n_parameters``, ``model_bytes``): ``cv_results``
                marks the Pareto front.
            importance: ``on``: the best configuration's permutation importance of each raw
                column, over the folds (summary and report); ``off`` to skip it.
            packing: ``none``: one train task per (configuration, fold), a pod each on a
                cluster; ``folds``: one task per configuration trains its folds at once as
                one packed program; ``configs``: configurations that pack share tasks too.
                The same models either way.
            refit: ``best``: refit the configuration with the highest mean score;
                ``one_standard_error``: the simplest within one standard error of it;
                ``pareto:latency`` (``pareto:n_parameters``, ``pareto:model_bytes``): the
                cheapest within one standard error of it.
            refit_epochs: ``fixed``: refit with the configuration's epochs; ``cv``: with the
                epoch whose mean validation-fold loss over the folds is lowest.
            serving_image: The image that serves the exported SavedModel, given as the
                ``serving_model`` output's ``containerSpec.imageUri`` (Vertex AI's prebuilt
                TensorFlow image by default).
        """
        values = run_values(locals())
        prepared, results = search_steps(settings, values, param_grid, model_spec, refit=refit,
                                         refit_epochs=refit_epochs)
        return search_outputs(settings, prepared, results, values, destination, model_spec,
                              serving_image)

    return grid_search


grid_search = build_grid_search()
