"""Median imputation and scaling of numeric columns: fitted on training rows, applied anywhere.

The fitted state is plain JSON. Its statistics equal scikit-learn's
``make_pipeline(SimpleImputer(strategy="median"), <Scaler>())`` fitted on the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError

SCALERS = options.choices("scaler")


def fit_scaler(train: pd.DataFrame, columns: list[str], method: str = "standard") -> dict:
    """Fit median imputation and a scaler on ``train`` (a fold's training rows only).

    Args:
        train: The rows to learn from. Not modified.
        columns: Numeric columns to impute and scale.
        method: ``standard`` (mean 0, variance 1), ``minmax`` (to [0, 1]), ``robust``
            (median 0, interquartile range 1) or ``none`` (imputation only).

    Returns:
        ``{"method": ..., "columns": {name: {"median", "center", "scale"}}}``; a column with
        no spread gets scale 1, and a column with no values in ``train`` is imputed with 0.
    """
    if method not in SCALERS:
        raise FoldwiseError(f"--scaler must be one of {', '.join(SCALERS)}, got {method!r}")
    state: dict = {"method": method, "columns": {}}
    for name in columns:
        values = train[name].to_numpy(dtype="float64")
        present = values[~np.isnan(values)]
        median = float(np.median(present)) if present.size else 0.0
        filled = np.where(np.isnan(values), median, values)
        if method == "standard":
            center, scale = float(filled.mean()), float(filled.std())
        elif method == "minmax":
            center, scale = float(filled.min()), float(filled.max() - filled.min())
        elif method == "robust":
            q25, q50, q75 = np.percentile(filled, [25, 50, 75])
            center, scale = float(q50), float(q75 - q25)
        else:
            center, scale = 0.0, 1.0
        if not np.isfinite(scale) or scale <= np.finfo("float64").eps * max(1.0, abs(center)):
            scale = 1.0
        state["columns"][name] = {"median": median, "center": center, "scale": scale}
    return state


def apply_scaler(frame: pd.DataFrame, state: dict) -> pd.DataFrame:
    """Return a copy of ``frame`` with the state's columns imputed and scaled."""
    out = frame.copy()
    for name, stats in state["columns"].items():
        values = out[name].to_numpy(dtype="float64")
        values = np.where(np.isnan(values), stats["median"], values)
        out[name] = (values - stats["center"]) / stats["scale"]
    return out
