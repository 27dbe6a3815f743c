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
from foldwise.components.core.data.folds import fold_view
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


def _finish(value) -> None:
    if hasattr(value, "numpy"):
        value.numpy()


# Layers that pass their input through at inference, and settings that only training reads:
# two networks that differ only in these run the same computation when served.
INFERENCE_IDENTITY = {"Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                      "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                      "ActivityRegularization"}
TRAINING_ONLY = {"name", "trainable", "rate", "seed", "noise_shape", "kernel_initializer",
                 "bias_initializer", "kernel_regularizer", "bias_regularizer",
                 "activity_regularizer", "kernel_constraint", "bias_constraint"}


def inference_key(network, fold: int) -> str:
    """What a fold model computes when served: layers, settings, weight shapes and fold.

    The fold's categories set the input's width.

    Configurations that differ only in training (learning rate, batch size, L2, dropout,
    epochs) share a key, so they share one latency measurement: their served computation is
    the same, and measuring it once leaves no noise between them.
    """
    layers = []
    for layer in getattr(network, "layers", []):
        name = type(layer).__name__
        if name in INFERENCE_IDENTITY:
            continue
        config = {k: v for k, v in layer.get_config().items() if k not in TRAINING_ONLY}
        layers.append([name, config])
    shapes = [list(w.shape) for w in network.weights]
    return json.dumps([int(fold), layers, shapes], sort_keys=True, default=str)


def measure(request: dict) -> dict:
    """Each requested model's costs: ``{config_id: {latency_ms, latency_iqr_ms, ...}}``.

    Every distinct served computation (:func:`inference_key`) is timed once, and the
    computations are timed in turns, block by block (each block of one after a block of
    each other), so that a slower moment of the machine falls on all of them alike.

    Args:
        request: ``{"prepared": path, "schema": {...}, "states": {fold: serving state},
            "models": [{"config_id", "fold", "folder", "spec", "estimator"}, ...]}``; each
            folder holds ``model.keras`` and ``target_scaling.json``. A model that cannot be
            measured gets ``{"error": ...}`` instead.
    """
    import tensorflow as tf

    schema = request["schema"]
    prepared = pd.read_parquet(request["prepared"])
    answers, keys, timed = {}, {}, {}
    inputs_of: dict[int, dict] = {}
    for entry in request["models"]:
        fold = int(entry["fold"])
        state = request["states"][str(fold)]
        try:
            inner = load_trained(os.path.join(entry["folder"], "model.keras"), entry["spec"])
            with open(os.path.join(entry["folder"], "target_scaling.json"),
                      encoding="utf-8") as handle:
                target_scaling = json.load(handle)
            serving = build_serving_model(inner, state, schema, target_scaling,
                                          entry["estimator"])
            if fold not in inputs_of:
                inputs_of[fold] = serving_inputs(
                    sample_rows(fold_view(prepared, fold), fold, FOLD_COLUMN), state)
            key = inference_key(inner, fold)
            if key not in timed:
                graph = tf.function(lambda features, model=serving: model(features,
                                                                          training=False))
                for _ in range(WARMUP):
                    _finish(graph(inputs_of[fold]))
                timed[key] = {"graph": graph, "fold": fold, "samples": []}
            keys[entry["config_id"]] = key
            with tempfile.TemporaryDirectory(prefix="foldwise-costs-") as scratch:
                path = os.path.join(scratch, "model.keras")
                serving.save(path)
                answers[entry["config_id"]] = {"model_bytes": int(os.path.getsize(path)),
                                               "fold": fold}
        except Exception as err:  # noqa: BLE001 - a model that cannot be measured is data
            answers[entry["config_id"]] = {"error": f"{type(err).__name__}: {err}"}
    for _ in range(BLOCKS):  # in turns: each computation's block, then the next one's
        for measured in timed.values():
            started = time.perf_counter()
            for _ in range(CALLS):
                _finish(measured["graph"](inputs_of[measured["fold"]]))
            measured["samples"].append((time.perf_counter() - started) * 1000.0 / CALLS)
    names = {key: f"s{index}" for index, key in enumerate(timed)}
    for cid, key in keys.items():
        low, median, high = np.percentile(timed[key]["samples"], [25, 50, 75])
        answers[cid].update(latency_ms=float(median), latency_iqr_ms=float(high - low),
                            calls=BLOCKS * CALLS, computation=names[key])
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
