"""KFP component: fit median imputation and scaling on one fold's training rows."""

from kfp.dsl import Artifact, Dataset, Input, Output

from foldwise.components.image import component


@component
def scale(
    prepared: Input[Dataset],
    schema: Input[Artifact],
    fold: int,
    scaled: Output[Dataset],
    scaler_state: Output[Artifact],
    scaler: str = "standard",
):
    """Impute and scale numeric columns with statistics of rows outside ``fold`` only.

    Args:
        prepared: The preprocessed table (all rows, with ``__fold__``).
        schema: The preprocess step's schema.
        fold: Validation fold; its rows are transformed but never fitted on.
        scaled: The table with numeric columns imputed and scaled.
        scaler_state: JSON medians, centers and scales per column.
        scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
    """
    import pandas as pd

    from foldwise.components.core.data.fold_transforms import scale_fold
    from foldwise.components.core.jsonio import read_json, write_json

    numeric = read_json(schema.path)["numeric"]
    table, state = scale_fold(pd.read_parquet(prepared.path), numeric, fold, scaler)
    table.to_parquet(scaled.path, index=False)
    write_json(scaler_state.path, state)
