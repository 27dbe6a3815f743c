"""Each fold's transforms, fitted on that fold's training rows only: one fold, or all of them.

The per-fold components (``scale``, ``one_hot_encode``) transform one fold each, a task per
fold; the all-folds components (``scale_folds``, ``one_hot_encode_folds``) loop over the
folds inside one task, which is what the pipelines run: two tasks instead of two per fold,
each fold still fitted on its own training rows by the same functions below.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.data.encoding import (
    apply_one_hot,
    encoded_feature_names,
    fit_one_hot,
)
from foldwise.components.core.data.fold_data import fold_file, write_fold_table
from foldwise.components.core.data.folds import fold_ids, fold_view
from foldwise.components.core.data.scaling import apply_scaler, fit_scaler


def scale_fold(table: pd.DataFrame, numeric: list[str], fold: int,
               scaler: str) -> tuple[pd.DataFrame, dict]:
    """Fold ``fold``'s rows, numeric columns imputed and scaled by its training rows' statistics.

    The rows are :func:`~foldwise.components.core.data.folds.fold_view`'s: every row of a
    plain K-fold table, only the fold's training and validation rows of a repeated or
    time-ordered one.

    Returns:
        ``(scaled table, state)``; the state records the fold.
    """
    table = fold_view(table, fold)
    state = fit_scaler(table[table[FOLD_COLUMN] != fold], numeric, scaler)
    return apply_scaler(table, state), {"fold": int(fold), **state}


def encode_fold(table: pd.DataFrame, described: dict,
                fold: int) -> tuple[pd.DataFrame, list[str], dict]:
    """Categorical columns replaced by indicators of the categories seen outside ``fold``.

    Returns:
        ``(model-ready table, feature names, state)``: the table holds the features in order
        (numeric, then indicators), the target, ``__row__`` and ``__fold__``.
    """
    state = fit_one_hot(table[table[FOLD_COLUMN] != fold], described["categorical"])
    features = encoded_feature_names(described["numeric"], state)
    columns = [*features, described["target"], ROW_COLUMN, FOLD_COLUMN]
    return apply_one_hot(table, state)[columns], features, {"fold": int(fold), **state,
                                                             "features": features}


def scale_all_folds(table: pd.DataFrame, numeric: list[str], scaler: str,
                    folder: str | Path) -> list[dict]:
    """Write each fold's scaled table to ``folder/fold-<k>.parquet``; their states, in order."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    states = []
    for fold in fold_ids(table):
        scaled, state = scale_fold(table, numeric, fold, scaler)
        scaled.to_parquet(fold_file(folder, fold), index=False)
        states.append(state)
    return states


def encode_all_folds(scaled_folder: str | Path, described: dict,
                     folder: str | Path) -> list[dict]:
    """Encode each ``fold-<k>.parquet`` of ``scaled_folder`` into ``folder`` as a fold table.

    ``folder`` then holds what :func:`~foldwise.components.core.data.fold_data.collect_fold_tables`
    gathers from the per-fold steps: each fold's model-ready table, its fold inside.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    states = []
    for path in sorted(Path(scaled_folder).glob("fold-*.parquet"),
                       key=lambda p: int(p.stem.split("-")[1])):
        fold = int(path.stem.split("-")[1])
        encoded, features, state = encode_fold(pd.read_parquet(path), described, fold)
        write_fold_table(encoded, fold_file(folder, fold), fold, features)
        states.append(state)
    return states
