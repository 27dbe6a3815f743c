"""KFP component: gather the per-fold model-ready tables into one folder artifact."""

from typing import List

from kfp.dsl import Dataset, Input, Output

from foldwise.components.image import component


@component
def collect_folds(encoded: Input[List[Dataset]], fold_data: Output[Dataset]):
    """Put each fold's encoded table at ``fold-<k>.parquet``, ``k`` read from the table itself.

    The transforms are thereby computed once per fold and shared by every configuration's
    training step, which reads only its fold's file.

    Args:
        encoded: The one_hot_encode step's tables, one per fold, in any order.
        fold_data: Folder of ``fold-<k>.parquet`` files.
    """
    from foldwise.components.core.data.fold_data import collect_fold_tables

    folds = collect_fold_tables([table.path for table in encoded], fold_data.path)
    fold_data.metadata["folds"] = folds
