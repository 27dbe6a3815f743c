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

    from foldwise.components.core.data.fold_data import write_fold_table
    from foldwise.components.core.data.fold_transforms import encode_fold
    from foldwise.components.core.jsonio import read_json, write_json

    table, features, state = encode_fold(pd.read_parquet(scaled.path), read_json(schema.path),
                                         fold)
    write_fold_table(table, encoded.path, fold, features)
    write_json(encoder_state.path, state)
