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

    from foldwise.components.core.columns import FOLD_COLUMN
    from foldwise.components.core.jsonio import read_json, write_json
    from foldwise.components.core.scaling import apply_scaler, fit_scaler

    numeric = read_json(schema.path)["numeric"]
    table = pd.read_parquet(prepared.path)
    state = fit_scaler(table[table[FOLD_COLUMN] != fold], numeric, scaler)
    apply_scaler(table, state).to_parquet(scaled.path, index=False)
    write_json(scaler_state.path, {"fold": fold, **state})
