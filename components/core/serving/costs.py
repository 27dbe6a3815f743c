"""What a configuration's model costs to serve: latency per 1,000 raw rows, and its size.

Each configuration is measured on one of its fold models, as it would be exported: the
network with that fold's fitted preprocessing folded in (``serving_model``), answering raw
rows. Every model is measured the same way: 1,000 raw rows of its fold's validation rows
(repeated when the fold has fewer) in one call of the model run as one TensorFlow graph, as
a SavedModel's signature runs it; :data:`WARMUP` calls first, then :data:`BLOCKS` blocks of
:data:`CALLS` calls, one after another in one process. The latency is the median of the
blocks' mean call time in milliseconds, its spread their interquartile range; the size is
the bytes of the saved ``model.keras``.

Training runs under Keras' JAX backend and the serving model needs TensorFlow's (string
lookups), so a train task measures its models in a child process (:func:`measure_in_child`)::

    python -m foldwise.components.core.serving.costs FOLDER
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from foldwise.components.core.columns import FOLD_COLUMN
from foldwise.components.core.models.builder_code import with_source
from foldwise.components.core.models.estimators import get_estimator, load_trained
from foldwise.components.core.serving.serving_model import build_serving_model, serving_inputs

ROWS = 1000
WARMUP = 5
BLOCKS = 10
CALLS = 20
REQUEST = "costs-request.json"
ANSWER = "costs.json"


def sample_rows(prepared, fold: int, fold_column: str, rows: int = ROWS):
    """``rows`` raw rows of ``fold``'s validation rows, in order, repeated as needed."""
    own = prepared[prepared[fold_column] == fold]
    if own.empty:
        own = prepared
    return own.iloc[np.resize(np.arange(len(own)), rows)].reset_index(drop=True)


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
    """One serving model's latency (per :data:`ROWS` rows) and saved size.

    Under Keras' TensorFlow backend; ``inputs`` are its input tensors
    (``serving_model.serving_inputs``).
    """
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
            "models": [{"config_id", "fold", "folder", "spec", "estimator"}, ...]}``.
            A model that cannot be measured gets ``{"error": ...}`` instead.
    """
    import keras
    import pandas as pd

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


def attach(summaries: list[dict], model_dir: str, schema: dict, prepared: str, states: dict,
           builder: dict | None = None) -> None:
    """Each configuration's serving costs, on its first fold model that trained (in place).

    Args:
        summaries: A train task's entries (``core.training.trials.run_trials``); the
            measured fold's entry gets ``serving``: what :func:`measure` answers.
        model_dir: The task's model folder (``<config_id>/fold-<k>/``).
        schema: The preprocess step's schema.
        prepared: Path of the preprocessed table (raw columns): the rows timed.
        states: ``{fold: serving state}``, each fold's own fitted preprocessing
            (``core.data.whole_table.serving_state``).
        builder: A user's builder with its source (its model loads with it).
    """
    chosen: dict[str, int] = {}
    for index, summary in enumerate(summaries):
        if (summary["config_id"] not in chosen and not summary["fit_error"]
                and get_estimator(summary["params"]["estimator"]).keras):
            chosen[summary["config_id"]] = index
    if not chosen:
        return
    models = []
    for cid, index in chosen.items():
        fold = summaries[index]["fold"]
        spec = with_source(summaries[index]["params"], builder)
        models.append({"config_id": cid, "fold": fold, "spec": spec,
                       "folder": os.path.join(model_dir, cid, f"fold-{fold}"),
                       "estimator": spec["estimator"]})
    with tempfile.TemporaryDirectory(prefix="foldwise-serving-") as scratch:
        answers = measure_in_child({"prepared": prepared, "schema": schema,
                                    "states": {str(k): v for k, v in states.items()},
                                    "models": models}, scratch)
    for cid, index in chosen.items():
        summaries[index]["serving"] = answers.get(cid, {"error": "not measured"})


def measure_in_child(request: dict, folder: str) -> dict:
    """:func:`measure` in a child process under Keras' TensorFlow backend.

    Raises:
        RuntimeError: The child ended without an answer (its output is in the message).
    """
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, REQUEST), "w", encoding="utf-8") as handle:
        json.dump(request, handle)
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-m", "foldwise.components.core.serving.costs", folder],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
        check=False)
    answer = os.path.join(folder, ANSWER)
    if done.returncode != 0 or not os.path.exists(answer):
        raise RuntimeError(f"measuring the serving models failed: {done.stdout[-4000:]}")
    with open(answer, encoding="utf-8") as handle:
        return json.load(handle)


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
