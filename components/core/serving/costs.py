"""What a configuration's model costs to serve: latency per 1,000 raw rows, and its size.

Each configuration is measured on one of its fold models (its first that trained), as it
would be exported: the network with that fold's fitted preprocessing folded in
(``serving_model``), answering raw rows. Every model of a run is measured the same way, in
one step and one process (the aggregate step; a Bayesian search's round steps measure their
round for the study), so that on a cluster every latency is one node's: 1,000 raw rows of its
fold's validation rows (repeated when the fold has fewer) per call of the model run as one
TensorFlow graph, as a SavedModel's signature runs it; :data:`WARMUP` calls first, then
:data:`BLOCKS` blocks of :data:`CALLS` calls, the models' blocks in turns. Configurations
that serve the same computation (they differ only in training settings) share one
measurement (``timing.inference_key``). The latency is the median of the blocks' mean call
time in milliseconds, its spread their interquartile range; the size is the bytes of the
saved ``model.keras``.

The serving model needs Keras' TensorFlow backend (string lookups), which the steps that
measure do not otherwise load, so the models are measured in a child process
(:func:`measure_in_child`, running :mod:`~foldwise.components.core.serving.timing`); this
module itself imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

import numpy as np

from foldwise.components.core.models.builder_code import with_source
from foldwise.components.core.models.estimators import get_estimator

ROWS = 1000
WARMUP = 5
BLOCKS = 10
CALLS = 20
REQUEST = "costs-request.json"
ANSWER = "costs.json"
MODEL_FILES = ("model.keras", "target_scaling.json")


def sample_rows(prepared, fold: int, fold_column: str, rows: int = ROWS):
    """``rows`` raw rows of ``fold``'s validation rows, in order, repeated as needed."""
    own = prepared[prepared[fold_column] == fold]
    if own.empty:
        own = prepared
    return own.iloc[np.resize(np.arange(len(own)), rows)].reset_index(drop=True)


def models_to_measure(entries: list[dict], skip=()) -> list[dict]:
    """Each configuration's first fold model that trained (a Keras one), in order.

    Args:
        entries: Train results (``core.training.trials``), each naming its model folder's
            URI under ``model``.
        skip: Configurations measured already.
    """
    chosen: dict[str, dict] = {}
    for entry in sorted(entries, key=lambda e: int(e["fold"])):
        cid = entry["config_id"]
        if (cid in chosen or cid in skip or entry.get("fit_error") or not entry.get("model")
                or not get_estimator(entry["params"]["estimator"]).keras):
            continue
        chosen[cid] = entry
    return [chosen[cid] for cid in dict.fromkeys(e["config_id"] for e in entries)
            if cid in chosen]


def measure_configs(entries: list[dict], read_bytes: Callable[[str], bytes], prepared: str,
                    states: dict, schema: dict, builder: dict | None = None,
                    skip=()) -> dict:
    """The serving costs of each configuration in ``entries`` not in ``skip``.

    Args:
        entries: Train results (:func:`models_to_measure` picks the models).
        read_bytes: Reads the file a URI names (local path or ``gs://``).
        prepared: Path of the preprocessed table (raw columns): the rows timed.
        states: ``{fold: serving state}``, each fold's own fitted preprocessing
            (``core.data.whole_table.serving_state``).
        schema: The preprocess step's schema.
        builder: A user's builder with its source (its models load with it).
        skip: Configurations measured already.

    Returns:
        ``{config_id: {"latency_ms", "latency_iqr_ms", "calls", "model_bytes", "fold"}}``,
        or ``{"error": ...}`` for a model that could not be measured.
    """
    chosen = models_to_measure(entries, skip)
    if not chosen:
        return {}
    with tempfile.TemporaryDirectory(prefix="foldwise-serving-") as scratch:
        models = []
        for index, entry in enumerate(chosen):
            folder = os.path.join(scratch, str(index))
            os.makedirs(folder)
            for name in MODEL_FILES:
                with open(os.path.join(folder, name), "wb") as handle:
                    handle.write(read_bytes(f"{entry['model'].rstrip('/')}/{name}"))
            spec = with_source(entry["params"], builder)
            models.append({"config_id": entry["config_id"], "fold": int(entry["fold"]),
                           "folder": folder, "spec": spec, "estimator": spec["estimator"]})
        return measure_in_child({"prepared": prepared, "schema": schema,
                                 "states": {str(k): v for k, v in states.items()},
                                 "models": models}, os.path.join(scratch, "request"))


def measure_in_child(request: dict, folder: str) -> dict:
    """Measure ``request`` (``core.serving.timing.measure``) in a child under TensorFlow.

    Raises:
        RuntimeError: The child ended without an answer (its output is in the message).
    """
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, REQUEST), "w", encoding="utf-8") as handle:
        json.dump(request, handle)
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-m", "foldwise.components.core.serving.timing", folder],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
        check=False)
    answer = os.path.join(folder, ANSWER)
    if done.returncode != 0 or not os.path.exists(answer):
        raise RuntimeError(f"measuring the serving models failed: {done.stdout[-4000:]}")
    with open(answer, encoding="utf-8") as handle:
        return json.load(handle)
