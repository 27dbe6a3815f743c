"""Preprocessing fitted on every row, as the final model serves it.

The fitted state, the model-ready matrix, the refit's rows, and each raw column's serving
input name.
"""

from __future__ import annotations

import keyword
import re

import numpy as np
import pandas as pd

from foldwise.components.core.columns import ROW_COLUMN
from foldwise.components.core.data.encoding import (
    apply_one_hot,
    encoded_feature_names,
    feature_matrix,
    fit_one_hot,
    raw_column_indices,
)
from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.data.scaling import apply_scaler, fit_scaler


def fit_preprocessing(prepared: pd.DataFrame, schema: dict, scaler: str) -> dict:
    """Fit imputation, scaling and categories on every row (for the final, refitted model).

    Returns:
        JSON-ready ``{"scaler", "one_hot", "features", "inputs"}``; ``inputs`` maps each raw
        column to the serving model's input name and dtype.
    """
    return serving_state(schema, fit_scaler(prepared, schema["numeric"], scaler),
                         fit_one_hot(prepared, schema["categorical"]))


def serving_state(schema: dict, scaler_state: dict, encoder: dict) -> dict:
    """The fitted state a serving model folds in, from a scaler's and an encoder's states.

    The refit's (fitted on every row), or one fold's (``scale_folds`` and
    ``one_hot_encode_folds`` record each fold's, fitted on its training rows).
    """
    scaler_state = {k: v for k, v in scaler_state.items() if k != "fold"}
    encoder = {k: v for k, v in encoder.items() if k not in ("fold", "features")}
    columns = [*schema["numeric"], *schema["categorical"]]
    dtypes = ["float32"] * len(schema["numeric"]) + ["string"] * len(schema["categorical"])
    inputs = [{"column": c, "input": name, "dtype": dtype, "shape": []}
              for c, name, dtype in zip(columns, input_names(columns), dtypes, strict=True)]
    return {"scaler": scaler_state, "one_hot": encoder,
            "features": encoded_feature_names(schema["numeric"], encoder), "inputs": inputs}


def fold_serving_states(schema: dict, scaler_states: dict, encoder_states: dict) -> dict:
    """Each fold's serving state, ``{fold: state}``, from the all-folds steps' state files.

    ``scaler_states`` and ``encoder_states`` are what ``scale_folds`` and
    ``one_hot_encode_folds`` write: ``{"folds": [{"fold": k, ...}, ...]}``.
    """
    encoders = {int(e["fold"]): e for e in encoder_states["folds"]}
    return {int(s["fold"]): serving_state(schema, s, encoders[int(s["fold"])])
            for s in scaler_states["folds"]}


_SIGNATURE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def all_rows(prepared: pd.DataFrame, schema: dict, scaler: str):
    """Every row, preprocessed as the served model will: ``(FoldData, fitted state)``.

    What the refit trains on: its training and validation rows are both all rows.
    """
    state = fit_preprocessing(prepared, schema, scaler)
    x, y = encode(prepared, state), prepared[schema["target"]].to_numpy()
    data = FoldData(x, y, x, y, prepared[ROW_COLUMN].to_numpy(), list(state["features"]),
                    raw_column_indices(state["features"], schema["categorical"],
                                       schema["numeric"]), schema["target"],
                    schema["classes"])
    return data, state


def input_names(columns: list[str]) -> list[str]:
    """The serving signature's input name of each column.

    A column keeps its own name when TensorFlow keeps it as a signature input's name (ASCII
    letters, digits and ``_``, starting with a letter, not a Python keyword); another gets
    ``f<position>_<its letters and digits>``, made unique.
    """
    own = [c if _SIGNATURE_NAME.fullmatch(c) and not keyword.iskeyword(c) else None
           for c in columns]
    taken = {name for name in own if name}
    names = []
    for index, (column, name) in enumerate(zip(columns, own, strict=True)):
        if name is None:
            name = input_name(index, column)
            while name in taken:
                name += "_"
            taken.add(name)
        names.append(name)
    return names


def input_name(index: int, column: str) -> str:
    """A serving-signature-safe input name for a column (letters, digits, ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", column).strip("_")[:40]
    return f"f{index}_{safe}" if safe else f"f{index}"


def encode(prepared: pd.DataFrame, state: dict) -> np.ndarray:
    """The model-ready matrix of a prepared table, by the fitted state (the pipeline's path)."""
    encoded = apply_one_hot(apply_scaler(prepared, state["scaler"]), state["one_hot"])
    return feature_matrix(encoded, state["features"])

