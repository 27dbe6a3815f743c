"""Cross-validation: preprocess → per fold (scale → one_hot_encode → train) → aggregate.

The shape is chosen so that the embedded engine (kfp.local) runs it correctly and a cluster
runs one pod per fold step: a single flat loop over the fold ids; inside it, every input is a
loop item, a pipeline parameter or an artifact, never another task's parameter output (kfp.local
replaces those with the loop item). Fold results fan in as parameters, not artifacts.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset

from foldwise.components import aggregate, one_hot_encode, preprocess, scale, train

CrossValidationOutputs = NamedTuple(
    "CrossValidationOutputs", cv_results=Dataset, summary=Artifact, folds=Dataset
)


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
) -> CrossValidationOutputs:
    """Cross-validate one Keras model configuration.

    Args:
        data: Path of the CSV or Parquet table.
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

    Returns:
        ``cv_results`` (CSV), ``summary`` (JSON) and ``folds`` (CSV of row → fold).
    """
    prepared = preprocess(
        data=data, target=target, task=task, categorical=categorical, numeric=numeric,
        drop=drop, group_column=group_column, folds=folds, seed=seed,
    ).set_display_name("preprocess")
    with dsl.ParallelFor(items=prepared.outputs["Output"], name="folds") as fold:
        scaled = scale(
            prepared=prepared.outputs["prepared"], schema=prepared.outputs["schema"],
            fold=fold, scaler=scaler,
        ).set_display_name("scale")
        encoded = one_hot_encode(
            scaled=scaled.outputs["scaled"], schema=prepared.outputs["schema"], fold=fold,
        ).set_display_name("one-hot-encode")
        trained = train(
            encoded=encoded.outputs["encoded"], schema=prepared.outputs["schema"], fold=fold,
            model_spec=model_spec, seed=seed,
        ).set_display_name("train")
    summary = aggregate(
        schema=prepared.outputs["schema"],
        fold_results=dsl.Collected(trained.outputs["Output"]),
        scoring=scoring,
    ).set_display_name("aggregate")
    return CrossValidationOutputs(
        cv_results=summary.outputs["cv_results"],
        summary=summary.outputs["summary"],
        folds=prepared.outputs["fold_assignment"],
    )
