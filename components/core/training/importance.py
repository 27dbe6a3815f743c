"""Permutation importance of each raw column, on one fold's validation rows with its model.

A raw column's importance is how much the fold's score drops when that column's values are
shuffled among the validation rows (every other column left as it is): a category's
indicator columns move together, row by row, so a shuffled categorical column is still one
category per row. Each column is shuffled :data:`REPEATS` times; its importance on the fold
is the mean drop. Over the folds, the caller reports the mean and the spread.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable

import numpy as np

from foldwise.components.core.data.fold_data import (
    FoldData,
    fold_file,
    read_fold_table,
    split_fold,
)
from foldwise.components.core.jsonio import class_count
from foldwise.components.core.models.builder_code import with_source
from foldwise.components.core.models.estimators import get_estimator, load_trained
from foldwise.components.core.models.keras_model import output_kind
from foldwise.components.core.scoring import metrics
from foldwise.components.core.training.vmapped import select_backend

REPEATS = 5


def permutation_importance(predict: Callable[[np.ndarray], np.ndarray], data: FoldData,
                           task: str, n_classes: int | None, scoring: str,
                           repeats: int = REPEATS, seed: int = 0) -> dict[str, float]:
    """Each raw column's mean drop in ``scoring`` when it is shuffled (greater: more relied on).

    Args:
        predict: The fold model's predictions on the user's scale (what the train step
            scores) for a model-ready matrix.
        data: The fold, with its raw columns (``FoldData.raw_columns``).
        task: ``classification`` or ``regression``.
        n_classes: Classes (classification).
        scoring: The metric (greater is better).
        repeats: Shuffles per column.
        seed: Seed of the shuffles.
    """
    x, y = data.x_validation, data.y_validation
    base = metrics.score(task, y, predict(x), n_classes)[scoring]
    rng = np.random.default_rng(seed)
    drops = {}
    for column, positions in (data.raw_columns or {}).items():
        found = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, positions] = x[rng.permutation(len(x))][:, positions]
            found.append(base - metrics.score(task, y, predict(shuffled), n_classes)[scoring])
        drops[column] = float(np.mean(found))
    return drops


def over_folds(by_fold: dict[int, dict[str, float]]) -> list[dict]:
    """Each column's importance over the folds, most important first.

    Returns:
        ``[{"column", "mean", "std", "folds": {fold: drop}}, ...]`` (``std`` over folds,
        ``ddof=0`` as ``cv_results`` has it).
    """
    columns = list(dict.fromkeys(c for drops in by_fold.values() for c in drops))
    found = []
    for column in columns:
        values = {fold: drops[column] for fold, drops in by_fold.items() if column in drops}
        array = np.array(list(values.values()), dtype="float64")
        found.append({"column": column, "mean": float(np.nanmean(array)),
                      "std": float(np.nanstd(array)),
                      "folds": {str(k): float(v) for k, v in values.items()}})
    return sorted(found, key=lambda c: -c["mean"] if np.isfinite(c["mean"]) else np.inf)


def of_best(entries: list[dict], fold_data: str, schema: dict, scoring: str, read_bytes,
            builder: dict | None = None, repeats: int = REPEATS, seed: int = 0) -> dict:
    """The permutation importance of a configuration's fold models, over its folds.

    Args:
        entries: That configuration's train results, one per fold (the last of a fold
            counts: a halving search's last rung), each naming its model folder (``model``).
        fold_data: Folder of the model-ready fold tables (``fold-<k>.parquet``).
        schema: The preprocess step's schema.
        scoring: The metric.
        read_bytes: Reads the file a URI names.
        builder: A user's builder with its source.
        repeats: Shuffles per column and fold.
        seed: Seed of the shuffles.

    Returns:
        ``{"scoring", "repeats", "columns": over_folds(...)}``, or ``{"skipped": why}``
        when a model trained through TensorFlow's fit (it does not load under JAX) or none
        is at hand.
    """
    last = {int(e["fold"]): e for e in entries if e.get("model") and not e.get("fit_error")}
    if not last:
        return {"skipped": "no fold model to shuffle columns for"}
    if any((e.get("devices") or {}).get("tensorflow_operation") for e in last.values()):
        return {"skipped": "its models trained through TensorFlow's fit"}
    select_backend()
    task, n_classes = schema["task"], class_count(schema)
    kind = output_kind(task, n_classes)
    by_fold = {}
    for fold, entry in sorted(last.items()):
        spec = with_source(entry["params"], builder)
        estimator = get_estimator(spec["estimator"])
        with tempfile.TemporaryDirectory(prefix="foldwise-importance-") as scratch:
            for name in ("model.keras", "target_scaling.json"):
                with open(os.path.join(scratch, name), "wb") as handle:
                    handle.write(read_bytes(f"{entry['model'].rstrip('/')}/{name}"))
            model = load_trained(os.path.join(scratch, "model.keras"), spec)
            with open(os.path.join(scratch, "target_scaling.json"), encoding="utf-8") as handle:
                target_state = json.load(handle)
        table, _, features = read_fold_table(fold_file(fold_data, fold))
        data = split_fold(table, fold, schema["target"], features, schema)
        del table

        def predict(x, model=model, estimator=estimator, target_state=target_state):
            return estimator.predict(model, x, kind, n_classes, target_state)

        by_fold[fold] = permutation_importance(predict, data, task, n_classes, scoring,
                                               repeats, seed + fold)
    return {"scoring": scoring, "repeats": repeats, "columns": over_folds(by_fold)}
