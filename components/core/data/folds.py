"""Which rows each fold trains on and which it scores on: K-fold, repeated and time-ordered.

Plain K-fold (and group K-fold) gives every row one validation fold, ``__fold__``: fold ``k``
trains on the rows of the other folds. Repeated K-fold and time-ordered folds do not partition
the table that way (a row is validated once per repetition; under time-ordered folds the rows
after a validation block train no fold that precedes them), so the prepared table then also
holds one column per fold, ``__split_<k>__``: :data:`TRAIN`, :data:`VALIDATION` or
:data:`UNUSED` for each row. :func:`fold_view` turns either form into the table of one fold
(its training rows and its validation rows, ``__fold__`` equal to ``k`` on the validation rows
only), which is what every per-fold transform fits on and writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold, TimeSeriesSplit

from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.errors import FoldwiseError

SPLIT_PREFIX = "__split_"
UNUSED, TRAIN, VALIDATION = 0, 1, 2
ROLE_NAMES = {UNUSED: "unused", TRAIN: "train", VALIDATION: "validation"}


def split_column(fold: int) -> str:
    """The prepared table's column of fold ``fold``'s row roles: ``__split_<fold>__``."""
    return f"{SPLIT_PREFIX}{int(fold)}__"


def split_columns(table: pd.DataFrame) -> dict[int, str]:
    """The table's per-fold role columns by fold (empty for a plain K-fold table)."""
    return {int(str(c)[len(SPLIT_PREFIX):-2]): str(c) for c in table.columns
            if str(c).startswith(SPLIT_PREFIX) and str(c).endswith("__")}


def fold_ids(table: pd.DataFrame) -> list[int]:
    """The folds a prepared table holds, sorted."""
    columns = split_columns(table)
    if columns:
        return sorted(columns)
    return sorted(int(fold) for fold in table[FOLD_COLUMN].unique() if int(fold) >= 0)


def fold_view(table: pd.DataFrame, fold: int) -> pd.DataFrame:
    """Fold ``fold``'s rows: its training rows (``__fold__`` not ``fold``) and validation rows.

    A plain K-fold table is returned as it is (every other row trains the fold). A table with
    role columns loses its rows the fold does not use and the role columns; ``__fold__`` is
    ``fold`` on the validation rows and -1 on the training rows.
    """
    columns = split_columns(table)
    if not columns:
        return table
    if int(fold) not in columns:
        raise ValueError(f"the table has no fold {fold} (folds: {sorted(columns)})")
    roles = table[columns[int(fold)]].to_numpy()
    view = table.loc[roles != UNUSED].drop(columns=list(columns.values()))
    view[FOLD_COLUMN] = np.where(roles[roles != UNUSED] == VALIDATION, int(fold), -1)
    return view.reset_index(drop=True)


def assignment_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The run's ``folds.csv``: ``row`` (position in the input table) and ``fold``.

    ``fold`` is the fold that validates the row (the first, under repeated K-fold; -1 for a row
    no time-ordered fold validates). A repeated or time-ordered table adds each fold's role of
    each row as a word (``train``, ``validation`` or ``unused``), in columns ``fold_<k>``.
    """
    frame = pd.DataFrame({"row": table[ROW_COLUMN].to_numpy(),
                          "fold": table[FOLD_COLUMN].to_numpy()})
    for fold, column in sorted(split_columns(table).items()):
        frame[f"fold_{fold}"] = pd.Series(table[column].to_numpy()).map(ROLE_NAMES).to_numpy()
    return frame


def order_positions(order: pd.Series, name: str) -> np.ndarray:
    """The rows' positions in time, from the order column's numbers or dates.

    Raises:
        FoldwiseError: The column has missing values, duplicates, or is neither numbers nor
            dates.
    """
    missing = int(order.isna().sum())
    if missing:
        raise FoldwiseError(
            f"order column {name!r} is missing on {missing} rows: time-ordered folds need a "
            "time on every row; fill them in or drop those rows")
    if pd.api.types.is_bool_dtype(order):
        raise FoldwiseError(f"order column {name!r} holds true/false values, not times: name a "
                            "column of numbers or dates")
    if pd.api.types.is_numeric_dtype(order) or pd.api.types.is_datetime64_any_dtype(order):
        values = order
    else:
        try:
            values = pd.to_datetime(order.astype(str), format="mixed")
        except (ValueError, TypeError, OverflowError):
            example = str(order.iloc[0])
            raise FoldwiseError(
                f"order column {name!r} holds values that are neither numbers nor dates (such "
                f"as {example!r}): name a column of numbers or dates") from None
    duplicated = values.duplicated(keep=False)
    if duplicated.any():
        shown = ", ".join(repr(str(v)) for v in pd.unique(order[duplicated.to_numpy()])[:3])
        raise FoldwiseError(
            f"order column {name!r} has {int(duplicated.sum())} rows sharing a time (such as "
            f"{shown}): time-ordered folds need one row per time, or rows of one time would "
            "train a fold and score it; aggregate them, or order by a finer column")
    return np.argsort(np.argsort(values.to_numpy(), kind="stable"), kind="stable")


def time_split_sizes(rows: int, folds: int, gap: int, test_size: int) -> tuple[int, int]:
    """``(validation rows per fold, training rows of the first fold)``, as TimeSeriesSplit.

    Raises:
        FoldwiseError: The folds, gap and validation blocks do not fit in ``rows``.
    """
    size = int(test_size) or rows // (folds + 1)
    if size < 1:
        raise FoldwiseError(
            f"the table has {rows} rows, too few for {folds} time-ordered folds: use fewer "
            "--folds")
    first_train = rows - folds * size - int(gap)
    if first_train < 1:
        most_gap = rows - folds * size - 1
        hint = (f"use a --gap below {most_gap + 1}" if most_gap >= 0 and gap
                else f"use fewer --folds or a smaller --test-size (at most "
                     f"{max(0, (rows - 1 - int(gap)) // folds)})")
        gapped = f" after a --gap of {gap} rows" if gap else ""
        raise FoldwiseError(
            f"{folds} validation blocks of {size} rows{gapped} leave no training rows before "
            f"the first block ({rows} rows in the table): {hint}")
    return size, first_train


def time_roles(positions: np.ndarray, folds: int, gap: int, test_size: int) -> np.ndarray:
    """Role matrix ``(folds, rows)`` of time-ordered folds (scikit-learn's TimeSeriesSplit).

    Each fold validates the next block of ``test_size`` rows in time and trains on every row
    before it but the last ``gap``.
    """
    rows = len(positions)
    size, _ = time_split_sizes(rows, folds, gap, test_size)
    splitter = TimeSeriesSplit(n_splits=folds, gap=int(gap), test_size=size)
    by_time = np.argsort(positions, kind="stable")  # row indices in time order
    roles = np.full((folds, rows), UNUSED, dtype="int8")
    for fold, (train, validation) in enumerate(splitter.split(np.zeros((rows, 1)))):
        roles[fold, by_time[train]] = TRAIN
        roles[fold, by_time[validation]] = VALIDATION
    return roles


def repeated_roles(y: np.ndarray, task: str, folds: int, repeats: int,
                   seed: int) -> np.ndarray:
    """Role matrix ``(folds * repeats, rows)`` of repeated (stratified) K-fold.

    Fold ``r * folds + k`` is fold ``k`` of repetition ``r``; each repetition reshuffles.
    """
    rows = len(y)
    if task == "classification":
        splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    else:
        splitter = RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    roles = np.full((folds * repeats, rows), TRAIN, dtype="int8")
    for fold, (_, validation) in enumerate(splitter.split(np.zeros((rows, 1)), y)):
        roles[fold, validation] = VALIDATION
    return roles


def role_columns(roles: np.ndarray) -> dict[str, np.ndarray]:
    """A role matrix as the prepared table's ``__split_<k>__`` columns."""
    return {split_column(fold): roles[fold] for fold in range(len(roles))}


def first_of(roles: np.ndarray) -> np.ndarray:
    """Per row, the first fold of a role matrix that validates it (-1: none)."""
    validated = roles == VALIDATION
    return np.where(validated.any(axis=0), validated.argmax(axis=0), -1).astype("int64")
