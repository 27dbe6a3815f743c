"""Checks of core.training.vmapped that need Keras' JAX backend: run in a process of their own.

    python tests/helpers/vmapped_checks.py RESULT.json

Writes a JSON object of measured differences and facts; tests/test_vmapped.py asserts on it.
"""

import json
import os
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "jax"

from foldwise.components.core.training.vmapped import select_backend

select_backend()  # as a train task: TensorFlow kept out, JAX's compilation cache on

import keras  # noqa: E402
import numpy as np  # noqa: E402

from foldwise.components.core.models.keras_model import seed_everything
from foldwise.components.core.training.vmapped import (
    Member,
    architecture_key,
    epoch_order,
    fit_members,
)

SPEC = {"epochs": 4, "batch_size": 16, "early_stopping": False, "patience": 2}


@keras.saving.register_keras_serializable(package="checks")
class Scale(keras.layers.Layer):
    """A custom layer: multiplies by a trainable scalar."""

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(), initializer="ones")

    def call(self, inputs):
        return inputs * self.factor


def build(seed, kind="plain", lr=1e-2, units=16):
    seed_everything(seed)
    layers = [keras.Input((6,)), keras.layers.Dense(units, activation="relu")]
    if "bn" in kind:
        layers.append(keras.layers.BatchNormalization())
    if "drop" in kind:
        layers.append(keras.layers.Dropout(0.3))
    if "custom" in kind:
        layers.append(Scale())
    layers.append(keras.layers.Dense(3, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy")
    return model


def data(seed, rows):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype("float32")
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    return x, np.eye(3, dtype="float32")[labels]


def member(seed, kind, rows, lr=1e-2, spec=SPEC, units=16, test=None):
    model = build(seed, kind, lr, units)
    x, y = data(seed, rows)
    stop = None
    if spec["early_stopping"]:
        stop = data(seed + 100, 40)
    return Member(model, x, y, None if stop is None else stop[0],
                  None if stop is None else stop[1], seed, spec,
                  architecture_key(model, spec, "params"),
                  *(test if test is not None else (None, None)))


def max_difference(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype="float64") - np.asarray(b, dtype="float64"))))


def packed_against_lone(kind, rows, rates, spec=SPEC):
    settings = list(enumerate(zip(rows, rates, strict=True)))
    members = [member(k, kind, n, lr, spec) for k, (n, lr) in settings]
    probe = [m.x_fit[:20] for m in members]
    packed = fit_members(members, predict=probe)
    lone = [fit_members([member(k, kind, n, lr, spec)], predict=[probe[k]])[0]
            for k, (n, lr) in settings]
    each = [max_difference(p.output, q.output) for p, q in zip(packed, lone, strict=True)]
    return {"packed": [t.packed for t in packed], "each": each, "outputs": max(each),
            "losses": max(max_difference(p.history["loss"], q.history["loss"])
                          for p, q in zip(packed, lone, strict=True)),
            "histories": [t.history for t in packed]}


def against_keras_fit(kind, rows):
    test = data(203, 30)  # a validation fold: its loss is recorded every epoch
    ours = fit_members([member(3, kind, rows, test=test)], predict=[data(3, rows)[0][:20]])[0]
    model = build(3, kind)
    x, y = data(3, rows)
    losses, evaluated = [], []
    for epoch in range(SPEC["epochs"]):
        order = epoch_order(3, epoch, rows)
        history = model.fit(x[order], y[order], batch_size=SPEC["batch_size"], epochs=1,
                            shuffle=False, verbose=0)
        losses.append(history.history["loss"][0])
        evaluated.append(model.evaluate(*test, verbose=0))
    return {"outputs": max_difference(ours.output, model.predict(x[:20], verbose=0)),
            "losses": max_difference(ours.history["loss"], losses),
            "test_losses": max_difference(ours.history["test_loss"], evaluated)}


def main(out):
    results = {"backend": keras.backend.backend()}
    # Folds of one configuration and configurations differing in learning rate only.
    results["plain"] = packed_against_lone("plain", [100, 99, 101], [1e-2, 1e-2, 3e-2])
    results["dropout_custom"] = packed_against_lone("drop-custom", [100, 99, 100],
                                                    [1e-2, 1e-2, 1e-2])
    results["batchnorm"] = packed_against_lone("bn-drop", [100, 100, 99], [1e-2] * 3)
    # A member that diverges (an absurd learning rate) among mates that do not.
    results["diverging"] = packed_against_lone("plain", [100, 100, 100], [1e-2, 1e30, 1e-2])
    stopping = {**SPEC, "epochs": 30, "early_stopping": True, "patience": 2}
    results["early_stopping"] = packed_against_lone("plain", [100, 100], [5e-2, 5e-2],
                                                    stopping)
    for kind, rows in [("plain", 99), ("drop", 99), ("bn", 99), ("bn-drop", 96)]:
        results[f"keras_fit_{kind}_{rows}"] = against_keras_fit(kind, rows)
    # Dense networks of different widths: one padded computation, each as it is alone.
    probe = [data(k, 100)[0][:20] for k in range(2)]
    wide = fit_members([member(0, "plain", 100, units=16), member(1, "plain", 100, units=32)],
                       predict=probe)
    lone = [fit_members([member(k, "plain", 100, units=u)], predict=[probe[k]])[0]
            for k, u in ((0, 16), (1, 32))]
    results["widths"] = {"packed": [t.packed for t in wide],
                         "program": [t.program for t in wide],
                         "outputs": max(max_difference(a.output, b.output)
                                        for a, b in zip(wide, lone, strict=True))}
    # With dropout, widths split the pack (a mask is drawn at its layer's width).
    dropped = [member(0, "drop", 100, units=16), member(1, "drop", 100, units=32)]
    results["dropout_widths"] = [t.packed for t in fit_members(dropped)]
    # A checkpoint after 2 of 4 epochs, resumed, ends where an uninterrupted run does.
    with tempfile.TemporaryDirectory() as folder:
        two = {**SPEC, "epochs": 2}
        fit_members([member(k, "drop", 100, spec=two) for k in range(2)], checkpoint_dir=folder)
        resumed = fit_members([member(k, "drop", 100) for k in range(2)],
                              predict=[data(k, 100)[0][:20] for k in range(2)],
                              checkpoint_dir=folder)
    whole = fit_members([member(k, "drop", 100) for k in range(2)],
                        predict=[data(k, 100)[0][:20] for k in range(2)])
    results["resume"] = {"from": [t.resumed_from_epoch for t in resumed],
                         "outputs": max(max_difference(a.output, b.output)
                                        for a, b in zip(resumed, whole, strict=True))}
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1])
