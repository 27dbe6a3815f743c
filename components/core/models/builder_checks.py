"""A user's builder tried before the search.

Every configuration built once on all rows (:func:`check_configs`), and which configurations
run TensorFlow operations (:func:`tensorflow_operations`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator

import numpy as np

from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.data.whole_table import all_rows
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.jsonio import class_count
from foldwise.components.core.models.builder_code import load_builder, with_source
from foldwise.components.core.models.builder_keras import (
    ESTIMATOR,
    BuildContext,
    build,
    builder_params,
)
from foldwise.components.core.models.estimators import KERAS_BUILDER, standard_target_scaling
from foldwise.components.core.models.keras_model import output_kind
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.models.targets import TargetForm
from foldwise.components.core.models.tensorflow_standin import operation_needed


def check_configs(configs: list[dict], prepared, schema: dict, scaler: str, seed: int,
                  reference: dict | None = None) -> None:
    """Build every user-builder configuration once, on all rows, before any step runs.

    What only building shows (the builder raises, returns no Keras model, compiles what the
    configuration sets, an output or loss that does not fit the task) is then one error up
    front, not a failed configuration after minutes of steps.

    Args:
        configs: The run's configurations (``{"config_id", "params"}``); others are skipped.
        prepared: The preprocessed table (all rows).
        schema: Its schema.
        scaler: The run's scaler.
        seed: The run's seed.
        reference: The builder with its source (:func:`with_source`).

    Raises:
        FoldwiseError: The first configuration that cannot be built (named).
    """
    ours = [c for c in configs if c["params"].get("estimator") == ESTIMATOR]
    if not ours:
        return
    import keras  # noqa: F401 - before the time limit, which is the builder's alone

    rows, _ = all_rows(prepared, schema, scaler)
    y = rows.y_train
    n_classes = class_count(schema)
    kind = output_kind(schema["task"], n_classes)
    for config in ours:
        params = with_source(config["params"], reference)
        if kind == "regression":
            y_seen = TargetForm.of_mlp(kind, None, standard_target_scaling(
                y, kind, params)).scaled(y)
        else:
            y_seen = y
        context = BuildContext(rows.x_train, y_seen, schema["task"], n_classes,
                               schema["target"], schema["classes"], rows.features,
                               rows.raw_columns)
        try:
            with time_limit(check_seconds()):
                build(load_builder(params["builder"]), params, context, seed)
        except FoldwiseError as err:
            shown = builder_params(params)
            raise FoldwiseError(f"configuration {json.dumps(shown)}: {err}" if shown
                                else str(err)) from None


CHECK_SECONDS_ENV = "FOLDWISE_BUILDER_CHECK_SECONDS"


def check_seconds() -> float:
    """How long building one configuration may take in the check (default 120 s)."""
    try:
        return max(1.0, float(os.environ.get(CHECK_SECONDS_ENV) or 120.0))
    except ValueError:
        return 120.0


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Within: a builder that has not returned after ``seconds`` is a :class:`FoldwiseError`.

    A timer signal interrupts it (Python code, sleeps, waits); on a thread other than the main
    one, where no signal can be delivered, there is no limit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise FoldwiseError(
            f"the model builder did not return within {seconds:g} s (a loop that never ends, "
            f"a download or a lock it waits for?): fix it, or give it longer with "
            f"{CHECK_SECONDS_ENV}")

    previous = signal.signal(signal.SIGALRM, expired)
    # then again every second: code that catches every exception (an import's fallback, a
    # retry) may swallow one alarm, never all of them
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def tensorflow_operations(configs: list[dict], schema: dict, reference: dict | None,
                          seed: int = 0) -> dict[str, str]:
    """Which users' builder configurations run TensorFlow operations, found by trying them.

    Each is built, and its loss computed on a few rows, as the one engine would
    (``Estimator.prepare``, with ``tensorflow.keras`` answered by Keras), on stand-in rows
    of the table's columns (one model-ready column per raw column). Imports alone decide
    nothing: ``from tensorflow import keras`` needs no TensorFlow under Keras 3.

    Returns:
        ``{config_id: operation}`` (such as ``"tf.reduce_mean"``) for each that needs
        TensorFlow; other failures are left for the configuration's own trials to report.
    """
    ours = [c for c in configs if c["params"].get("estimator") == ESTIMATOR]
    if not ours:
        return {}
    n_classes = class_count(schema)
    kind = output_kind(schema["task"], n_classes)
    columns = [*schema.get("numeric", []), *schema.get("categorical", [])] or ["x0"]
    rows = 16
    x = np.random.default_rng(seed).normal(size=(rows, len(columns))).astype("float32")
    y = (np.arange(rows) % n_classes if n_classes else np.linspace(-1.0, 1.0, rows))
    data = FoldData(x, y, x[:4], y[:4], np.arange(4), list(columns),
                    {name: [i] for i, name in enumerate(columns)}, schema.get("target", ""),
                    schema.get("classes"))
    found = {}
    for config in ours:
        params = with_source(config["params"], reference)
        try:
            spec = normalize_spec(params, schema["task"], n_classes)
            KERAS_BUILDER.prepare(data, kind, n_classes, spec, seed, None)
        except Exception as err:
            operation = operation_needed(err)
            if operation is not None:
                found[config["config_id"]] = operation
    return found

