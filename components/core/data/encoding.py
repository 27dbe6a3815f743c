"""One-hot encoding of categorical columns: categories fitted on training rows only.

Missing is a category of its own when the training rows have it; a value never seen in the
training rows (missing included) encodes as all zeros, like scikit-learn's
``OneHotEncoder(handle_unknown="ignore")``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING = None  # how the missing category is written in the JSON state


def fit_one_hot(train: pd.DataFrame, columns: list[str]) -> dict:
    """Learn each column's categories from ``train`` (a fold's training rows only).

    Returns:
        ``{"columns": {name: [category, ...]}}``: sorted strings, then ``None`` for missing if
        any training row lacks a value.
    """
    state: dict = {"columns": {}}
    for name in columns:
        column = train[name]
        categories: list = sorted({str(v) for v in column.dropna()})
        if column.isna().any():
            categories.append(MISSING)
        state["columns"][name] = categories
    return state


def encoded_name(column: str, category: str | None) -> str:
    """Name of the indicator column for one category."""
    return f"{column}=<missing>" if category is MISSING else f"{column}={category}"


def apply_one_hot(frame: pd.DataFrame, state: dict) -> pd.DataFrame:
    """Return a copy of ``frame`` with each categorical column replaced by 0/1 indicators."""
    out = frame.drop(columns=list(state["columns"]))
    indicators = {}
    for name, categories in state["columns"].items():
        column = frame[name]
        missing = column.isna().to_numpy()
        values = column.astype("string").fillna("").to_numpy(dtype=object)
        for category in categories:
            if category is MISSING:
                hit = missing
            else:
                hit = (values == category) & ~missing
            indicators[encoded_name(name, category)] = hit.astype("float32")
    if indicators:
        out = pd.concat([out, pd.DataFrame(indicators, index=frame.index)], axis=1)
    return out


def encoded_feature_names(numeric: list[str], state: dict) -> list[str]:
    """Model input order: numeric columns, then every category indicator column by column."""
    names = list(numeric)
    for name, categories in state["columns"].items():
        names.extend(encoded_name(name, c) for c in categories)
    return names


def raw_column_indices(features: list[str], categorical: list[str],
                       numeric: list[str] = ()) -> dict[str, list[int]]:
    """For each raw column, the positions of its model-ready columns in ``features``.

    A category indicator (``column=category``, see :func:`encoded_name`) belongs to its
    categorical column; any other model-ready column (a number) is a raw column of its own.
    ``numeric`` names settle a number whose name looks like an indicator.
    """
    indices: dict[str, list[int]] = {}
    numeric_names = set(numeric)
    for position, name in enumerate(features):
        owner = name
        if name not in numeric_names:
            owner = next((column for column in categorical
                          if name.startswith(f"{column}=")), name)
        indices.setdefault(owner, []).append(position)
    return indices


def feature_matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The model's float32 input matrix, columns in ``names`` order."""
    return frame[names].to_numpy(dtype="float32")
