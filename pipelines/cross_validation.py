"""Cross-validation of one Keras model configuration (see :mod:`foldwise.pipelines.search`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset

from foldwise.pipelines.cluster import LOCAL, ClusterSettings
from foldwise.pipelines.search import search_steps

CrossValidationOutputs = NamedTuple(
    "CrossValidationOutputs", cv_results=Dataset, summary=Artifact, folds=Dataset
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
        task: str = "",
        categorical: list = [],  # noqa: B006 - KFP reads defaults from the signature
        numeric: list = [],  # noqa: B006
        drop: list = [],  # noqa: B006
        group_column: str = "",
        folds: int = 5,
        seed: int = 0,
        scaler: str = "standard",
        model_spec: dict = {},  # noqa: B006
        scoring: str = "",
        baseline: str = "none",
        packing: str = "none",
    ) -> CrossValidationOutputs:
        """Cross-validate one Keras model configuration.

        Args:
            data: Path or ``gs://`` URI of the CSV or Parquet table.
            target: Column to predict.
            task: ``classification``, ``regression`` or empty to infer it.
            categorical: Columns to one-hot encode whatever their type.
            numeric: Columns to treat as numbers.
            drop: Columns to leave out.
            group_column: Rows sharing this column's value share a fold.
            folds: Number of folds.
            seed: Seed of folds, weights and shuffling.
            scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
            model_spec: Model, optimizer and training parameters.
            scoring: Metric to rank by; empty for the task's default.
            baseline: ``mlp`` to also score scikit-learn's MLP with matching layers, learning
                rate, batch size and epochs on the same folds (rows marked in ``cv_results``).
            packing: ``none``: one train task per (configuration, fold), a pod each on a
                cluster; ``folds``: one task per configuration trains its folds at once as
                one stacked model; ``configs``: configurations that stack share tasks too.
                The same models either way.

        Returns:
            ``cv_results`` (CSV), ``summary`` (JSON) and ``folds`` (CSV of row → fold).
        """
        prepared, results = search_steps(
            settings, data=data, target=target, task=task, categorical=categorical, numeric=numeric,
            drop=drop, group_column=group_column, folds=folds, seed=seed, scaler=scaler,
            param_grid=[], model_spec=model_spec, scoring=scoring,
            baseline=baseline, packing=packing)
        return CrossValidationOutputs(
            cv_results=results.outputs["cv_results"],
            summary=results.outputs["summary"],
            folds=prepared.outputs["fold_assignment"],
        )

    return cross_validation


cross_validation = build_cross_validation()
