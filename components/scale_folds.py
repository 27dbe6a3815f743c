"""KFP component: fit imputation and scaling once per fold, all folds in one task."""

from kfp.dsl import Artifact, Dataset, Input, Output

from foldwise.components.image import component


@component
def scale_folds(
    prepared: Input[Dataset],
    schema: Input[Artifact],
    scaled: Output[Dataset],
    scaler_state: Output[Artifact],
    scaler: str = "standard",
):
    """For each fold, impute and scale numeric columns with statistics of rows outside it.

    What the ``scale`` step does for one fold, for every fold in one task (a process start
    and a read of the table instead of one per fold).

    Args:
        prepared: The preprocessed table (all rows, with ``__fold__``).
        schema: The preprocess step's schema.
        scaled: Folder of ``fold-<k>.parquet``: the whole table scaled for fold ``k``.
        scaler_state: JSON ``{"folds": [...]}``: per fold its medians, centers and scales.
        scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
    """
    import pandas as pd

    from foldwise.components.core.data.fold_transforms import scale_all_folds
    from foldwise.components.core.jsonio import read_json, write_json

    numeric = read_json(schema.path)["numeric"]
    states = scale_all_folds(pd.read_parquet(prepared.path), numeric, scaler, scaled.path)
    write_json(scaler_state.path, {"folds": states})
    scaled.metadata["folds"] = [state["fold"] for state in states]
