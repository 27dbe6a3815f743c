"""KFP component: fit one-hot categories on one fold's training rows."""

from kfp.dsl import Artifact, Dataset, Input, Output

from foldwise.components.image import component


@component
def one_hot_encode(
    scaled: Input[Dataset],
    schema: Input[Artifact],
    fold: int,
    encoded: Output[Dataset],
    encoder_state: Output[Artifact],
):
    """Replace categorical columns by indicators of categories seen outside ``fold`` only.

    Args:
        scaled: The fold's scaled table.
        schema: The preprocess step's schema.
        fold: Validation fold; its categories are never learnt.
        encoded: Parquet: model inputs in order (numeric, then indicators), target,
            ``__row__`` and ``__fold__``; the fold and feature order in the file's metadata.
        encoder_state: JSON category lists per column and the model's feature names.
    """
    import pandas as pd

    from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
    from foldwise.components.core.encoding import (
        apply_one_hot,
        encoded_feature_names,
        fit_one_hot,
    )
    from foldwise.components.core.fold_data import write_fold_table
    from foldwise.components.core.jsonio import read_json, write_json

    described = read_json(schema.path)
    table = pd.read_parquet(scaled.path)
    state = fit_one_hot(table[table[FOLD_COLUMN] != fold], described["categorical"])
    features = encoded_feature_names(described["numeric"], state)
    columns = [*features, described["target"], ROW_COLUMN, FOLD_COLUMN]
    write_fold_table(apply_one_hot(table, state)[columns], encoded.path, fold, features)
    write_json(encoder_state.path, {"fold": fold, **state, "features": features})
