"""The serving measurement itself, under Keras' TensorFlow backend (``core.serving.costs``).

    python -m foldwise.components.core.serving.timing FOLDER

reads ``FOLDER/costs-request.json`` and writes ``FOLDER/costs.json`` (temporary name, then
rename).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import keras
import numpy as np
import pandas as pd

from foldwise.components.core.columns import FOLD_COLUMN
from foldwise.components.core.models.estimators import load_trained
from foldwise.components.core.serving.costs import (
    ANSWER,
    BLOCKS,
    CALLS,
    REQUEST,
    WARMUP,
    sample_rows,
)
from foldwise.components.core.serving.serving_model import build_serving_model, serving_inputs


def time_calls(call, inputs, warmup: int = WARMUP, blocks: int = BLOCKS,
               calls: int = CALLS) -> dict:
    """Milliseconds per call of ``call(inputs)``: median and interquartile range.

    Timed in ``blocks`` blocks of ``calls`` calls each (a block's mean is one sample, which
    smooths the scheduler's jitter out of calls of a millisecond), after ``warmup`` calls.
    ``call`` must return a value whose ``numpy()`` waits for the answer.
    """
    for _ in range(warmup):
        _finish(call(inputs))
    samples = []
    for _ in range(blocks):
        started = time.perf_counter()
        for _ in range(calls):
            _finish(call(inputs))
        samples.append((time.perf_counter() - started) * 1000.0 / calls)
    low, median, high = np.percentile(samples, [25, 50, 75])
    return {"latency_ms": float(median), "latency_iqr_ms": float(high - low),
            "calls": blocks * calls}


def _finish(value) -> None:
    if hasattr(value, "numpy"):
        value.numpy()


def measure_model(serving, inputs: dict) -> dict:
    """One serving model's latency (per call of ``inputs``) and saved size."""
    import tensorflow as tf

    graph = tf.function(lambda features: serving(features, training=False))
    timed = time_calls(graph, inputs)
    with tempfile.TemporaryDirectory(prefix="foldwise-costs-") as scratch:
        path = os.path.join(scratch, "model.keras")
        serving.save(path)
        size = os.path.getsize(path)
    return {**timed, "model_bytes": int(size)}


def measure(request: dict) -> dict:
    """Each requested model's costs: ``{config_id: {latency_ms, latency_iqr_ms, ...}}``.

    Args:
        request: ``{"prepared": path, "schema": {...}, "states": {fold: serving state},
            "models": [{"config_id", "fold", "folder", "spec", "estimator"}, ...]}``; each
            folder holds ``model.keras`` and ``target_scaling.json``. A model that cannot be
            measured gets ``{"error": ...}`` instead.
    """
    schema = request["schema"]
    prepared = pd.read_parquet(request["prepared"])
    answers = {}
    for entry in request["models"]:
        state = request["states"][str(entry["fold"])]
        try:
            inner = load_trained(os.path.join(entry["folder"], "model.keras"), entry["spec"])
            with open(os.path.join(entry["folder"], "target_scaling.json"),
                      encoding="utf-8") as handle:
                target_scaling = json.load(handle)
            serving = build_serving_model(inner, state, schema, target_scaling,
                                          entry["estimator"])
            rows = sample_rows(prepared, int(entry["fold"]), FOLD_COLUMN)
            answers[entry["config_id"]] = {**measure_model(serving, serving_inputs(rows, state)),
                                           "fold": int(entry["fold"])}
        except Exception as err:  # noqa: BLE001 - a model that cannot be measured is data
            answers[entry["config_id"]] = {"error": f"{type(err).__name__}: {err}"}
        keras.backend.clear_session()
    return answers


def main(folder: str) -> int:
    """The child: measure the request in ``folder``, write the answer there."""
    with open(os.path.join(folder, REQUEST), encoding="utf-8") as handle:
        request = json.load(handle)
    answers = measure(request)
    partial = os.path.join(folder, ANSWER + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(answers, handle)
    os.replace(partial, os.path.join(folder, ANSWER))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
