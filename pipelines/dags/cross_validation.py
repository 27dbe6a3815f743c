"""Cross-validation of one Keras model configuration (see :mod:`foldwise.pipelines.dags.search`).

preprocess → scale → one_hot_encode (every fold in each) → plan_trials → train →
aggregate → report → export (results, report and, last, the manifest; no model).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset

from foldwise.pipelines.dags.cluster import LOCAL, ClusterSettings
from foldwise.pipelines.dags.search import publish_steps, run_values, search_steps

CrossValidationOutputs = NamedTuple(
    "CrossValidationOutputs", cv_results=Dataset, summary=Artifact, folds=Dataset, report=HTML,
    manifest=str,
)


def build_cross_validation(settings: ClusterSettings = LOCAL):
    """The cross-validation pipeline with each step set up by ``settings``."""

    @dsl.pipeline(
        name="foldwise-cross-validation",
        description="Leakage-free K-fold cross-validation of a Keras model on a table.",
    )
    def cross_validation(
        data: str,
        target: str,
        destination: str,
        task: str = "",
        categorical: list = [],  # noqa: B006 - KFP reads defaults from the signature
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
        model_spec: dict = {},  # noqa: B006
        scoring: str = "",
        baseline: str = "none",
        objectives: str = "",
        importance: str = "on",
        packing: str = "none",
    ) -> CrossValidationOutputs:
        """Cross-validate one Keras model configuration.

        Args:
            data: Path or ``gs://`` URI of the CSV or Parquet table.
            target: Column to predict.
            destination: Local folder or ``gs://`` prefix receiving ``cv_results.csv``,
                ``summary.json``, ``folds.csv``, ``report.html`` and, last, ``manifest.json``.
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
            model_spec: Model, optimizer and training parameters.
            scoring: Metric to rank by; empty for the task's default.
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

        Returns:
            ``cv_results`` (CSV), ``summary`` (JSON), ``folds`` (CSV of row → fold), the
            ``report`` and the URI of the published manifest.
        """
        values = run_values(locals())
        prepared, results = search_steps(settings, values, [], model_spec)
        _, page, published = publish_steps(settings, prepared, results, values, destination)
        return CrossValidationOutputs(
            cv_results=results.outputs["cv_results"], summary=results.outputs["summary"],
            folds=prepared.outputs["fold_assignment"], report=page.outputs["page"],
            manifest=published.output,
        )

    return cross_validation


cross_validation = build_cross_validation()
