"""KFP component: fit one-hot categories once per fold, all folds in one task."""

from kfp.dsl import Artifact, Dataset, Input, Output

from foldwise.components.image import component


@component
def one_hot_encode_folds(
    scaled: Input[Dataset],
    schema: Input[Artifact],
    fold_data: Output[Dataset],
    encoder_state: Output[Artifact],
):
    """For each fold, replace categorical columns by indicators of categories seen outside it.

    What the ``one_hot_encode`` step does for one fold, for every fold in one task; its
    output is the folder ``collect_folds`` gathers from the per-fold steps.

    Args:
        scaled: The ``scale_folds`` step's folder of ``fold-<k>.parquet`` tables.
        schema: The preprocess step's schema.
        fold_data: Folder of ``fold-<k>.parquet``: model inputs in order (numeric, then
            indicators), target, ``__row__`` and ``__fold__``; the fold and feature order in
            each file's metadata.
        encoder_state: JSON ``{"folds": [...]}``: per fold its categories and feature names.
    """
    from foldwise.components.core.data.fold_transforms import encode_all_folds
    from foldwise.components.core.jsonio import read_json, write_json

    states = encode_all_folds(scaled.path, read_json(schema.path), fold_data.path)
    write_json(encoder_state.path, {"folds": states})
    fold_data.metadata["folds"] = [state["fold"] for state in states]
