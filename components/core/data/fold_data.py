"""Model-ready tables of one fold, tagged with their validation fold.

Each fold's encoded table is written once and read by every configuration's training step.
The fold it was fitted for travels inside the Parquet file, so a step that is handed the
wrong fold's table refuses it instead of silently scoring on rows it was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.data.encoding import feature_matrix, raw_column_indices

FOLD_KEY = b"foldwise.validation_fold"
FEATURES_KEY = b"foldwise.features"


def write_fold_table(frame: pd.DataFrame, path: str | Path, fold: int,
                     features: list[str]) -> None:
    """Write a fold's encoded table with its fold and feature order in the file's metadata."""
    import json

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), FOLD_KEY: str(int(fold)).encode(),
                FEATURES_KEY: json.dumps(features).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)


def read_fold_table(path: str | Path) -> tuple[pd.DataFrame, int, list[str]]:
    """Read a table written by :func:`write_fold_table`: ``(frame, fold, features)``."""
    import json

    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    if FOLD_KEY not in metadata:
        raise ValueError(f"{path} is not a foldwise fold table (no fold in its metadata)")
    frame = table.to_pandas(split_blocks=True, self_destruct=True)  # no second copy
    del table
    return frame, int(metadata[FOLD_KEY]), json.loads(metadata[FEATURES_KEY].decode())


def fold_file(folder: str | Path, fold: int) -> Path:
    """Where fold ``fold``'s table lives inside a collected folder."""
    return Path(folder) / f"fold-{int(fold)}.parquet"


def collect_fold_tables(paths: list[str | Path], folder: str | Path) -> list[int]:
    """Gather per-fold tables into one folder, named by the fold inside each file.

    Returns:
        The folds collected, sorted.

    Raises:
        ValueError: A fold appears twice.
    """
    import shutil

    Path(folder).mkdir(parents=True, exist_ok=True)
    folds = []
    for path in paths:
        fold = int(pq.read_schema(path).metadata[FOLD_KEY])
        if fold in folds:
            raise ValueError(f"fold {fold} was handed over twice ({path})")
        folds.append(fold)
        shutil.copyfile(path, fold_file(folder, fold))
    return sorted(folds)


@dataclass
class FoldData:
    """One fold's arrays: features in model input order and targets.

    ``features``, ``raw_columns``, ``target`` and ``classes`` describe the columns for a
    user's model builder (``models.builder_keras``): model-ready column names, the indices of each
    raw column's model-ready columns, the target's name and the class labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    rows_validation: np.ndarray
    features: list[str] | None = None
    raw_columns: dict[str, list[int]] | None = None
    target: str = ""
    classes: list | None = None


def split_fold(encoded: pd.DataFrame, fold: int, target: str, features: list[str],
               schema: dict | None = None) -> FoldData:
    """Cut an encoded table into the fold's training rows (other folds) and validation rows.

    With the preprocess step's ``schema``, the fold also knows its raw columns and classes.
    """
    validation = encoded[FOLD_COLUMN].to_numpy() == fold
    x = feature_matrix(encoded, features)
    y = encoded[target].to_numpy()
    raw_columns, classes = None, None
    if schema is not None:
        raw_columns = raw_column_indices(features, schema.get("categorical", []),
                                         schema.get("numeric", []))
        classes = schema.get("classes")
    return FoldData(x[~validation], y[~validation], x[validation], y[validation],
                    encoded[ROW_COLUMN].to_numpy()[validation], list(features), raw_columns,
                    target, classes)

