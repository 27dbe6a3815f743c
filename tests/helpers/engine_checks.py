"""Checks of the one engine on foldwise's own MLP and users' builders, under Keras' JAX backend.

    python tests/helpers/engine_checks.py RESULT.json

Run in a process of its own (a step's process: TensorFlow kept out, as in a train task);
writes a JSON object of measured differences and facts that tests/test_engine.py asserts on.
"""

import json
import os
import re
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "jax"

from foldwise.components.core.training.vmapped import select_backend

select_backend()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.models.keras_model import build_model, seed_everything
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.training.fit import train_fold, train_folds
from foldwise.components.core.training.vmapped import (
    Member,
    epoch_order,
    fit_members,
    load_state,
    save_state,
)

RNG = np.random.default_rng(0)


def table(rows, kind, features=5):
    x = RNG.normal(size=(rows, features)).astype("float32")
    if kind == "regression":
        y = (2.0 * x[:, :1] - x[:, 1:2] + 0.1).astype("float32")
    elif kind == "binary":
        y = (x[:, :1] > 0).astype("float32")
    else:
        y = keras.utils.to_categorical(np.digitize(x[:, 0], [-0.4, 0.4]), 3).astype("float32")
    return x, y


def diff(a, b):
    return float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64"))))


def mlp_member(spec, x, y, seed, task, classes, stop=None, test=None, initial=None):
    seed_everything(seed)
    model = build_model(spec, x.shape[1], task, classes)
    return Member(model, x, y, *(stop or (None, None)), seed, spec, "",
                  *(test or (None, None)), initial)


CASES = [  # (kind, task, classes, optimizer settings)
    ("regression", "regression", None, {"optimizer": "adam"}),
    ("regression", "regression", None, {"optimizer": "sgd", "momentum": 0.9}),
    ("binary", "classification", 2, {"optimizer": "adamw"}),
    ("multiclass", "classification", 3, {"optimizer": "rmsprop", "momentum": 0.5}),
    ("regression", "regression", None, {"optimizer": "sgd", "loss": "huber"}),
]


def one_epoch_against_keras_fit(kind, task, classes, settings):
    """Sizes 100/97/90 at batch 16 and widths 8, 6, 5: one padded program, 7, 7, 6 steps."""
    specs = [normalize_spec({"hidden_units": [units, 4], "epochs": 1, "batch_size": 16,
                             "l2": l2, **settings}, task, classes)
             for units, l2 in ((8, 0.01), (6, 0.0), (5, 0.03))]
    tables = [table(rows, kind, features) for rows, features in ((100, 5), (97, 4), (90, 5))]
    members = [mlp_member(s, x, y, 3, task, classes) for s, (x, y) in zip(specs, tables,
                                                                           strict=True)]
    packed = fit_members(members)
    weights, losses = [], []
    for member, spec, (x, y), done in zip(members, specs, tables, packed, strict=True):
        seed_everything(3)
        model = build_model(spec, x.shape[1], task, classes)
        order = epoch_order(3, 0, len(x))
        history = model.fit(x[order], y[order], epochs=1, batch_size=16, shuffle=False,
                            verbose=0)
        weights.append(max(diff(a, b) for a, b in zip(member.model.get_weights(),
                                                      model.get_weights(), strict=True)))
        losses.append(abs(done.history["loss"][0] - history.history["loss"][0])
                      / abs(history.history["loss"][0]))
    return {"packed": [t.packed for t in packed], "program": packed[0].program,
            "weights": max(weights), "losses": max(losses)}


def folds_against_lone():
    """Different rows, widths, input widths, learning rates, L2, dropout and stopping."""
    # Without dropout, widths are data; with it, its rate is (a mask is drawn at the width).
    settings = [([8, 4], 1e-2, 0.0, 0.0, True, 80, 5), ([6, 3], 3e-2, 0.01, 0.0, True, 77, 4),
                ([8, 4], 1e-2, 0.0, 0.2, True, 83, 5), ([8, 4], 5e-2, 0.001, 0.1, True, 79, 5)]
    datas, specs = [], []
    for units, lr, l2, dropout, stop, rows, features in settings:
        x, y = table(rows, "regression", features)
        datas.append(FoldData(x[:60], 10 * y[:60, 0], x[60:], 10 * y[60:, 0],
                              np.arange(60, rows)))
        specs.append(normalize_spec({"hidden_units": units, "learning_rate": lr, "l2": l2,
                                     "dropout": dropout, "early_stopping": stop,
                                     "patience": 2, "epochs": 12, "batch_size": 8},
                                    "regression"))
    together = train_folds(datas, task="regression", n_classes=None, specs=specs,
                           seeds=[1, 2, 3, 4])
    alone = [train_fold(d, task="regression", n_classes=None, spec=s, seed=k + 1)
             for k, (d, s) in enumerate(zip(datas, specs, strict=True))]
    return {"packed": [r.devices["packed"] for r in together],
            "program": [r.devices.get("program", "") for r in together],
            "epochs": [r.epochs_run for r in together],
            "predictions": max(diff(a.prediction, b.prediction)
                               for a, b in zip(together, alone, strict=True)),
            "histories": max(diff(a.history["loss"], b.history["loss"])
                             for a, b in zip(together, alone, strict=True))}


def diverging_member(task, classes, kind):
    healthy = normalize_spec({"hidden_units": [8, 4], "epochs": 5, "batch_size": 16,
                              "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.5},
                             task, classes)
    diverging = {**healthy, "hidden_units": [6, 4], "learning_rate": 1e6}
    datas = []
    for rows, features in ((70, 5), (64, 4), (75, 5)):
        x, y = table(rows, kind, features)
        target = y[:, 0] * 10 if kind == "regression" else y.argmax(axis=1)
        datas.append(FoldData(x[:50], target[:50], x[50:], target[50:], np.arange(50, rows)))
    specs = [healthy, diverging, healthy]
    together = train_folds(datas, task=task, n_classes=classes, specs=specs, seeds=[1, 2, 3],
                           error_score=float("nan"))
    alone = [train_fold(datas[k], task=task, n_classes=classes, spec=healthy, seed=k + 1)
             for k in (0, 2)]
    return {"packed": [r.devices.get("packed") for r in together],
            "mates": max(diff(together[k].prediction, a.prediction)
                         / np.max(np.abs(a.prediction)) for k, a in zip((0, 2), alone,
                                                                        strict=True)),
            "fit_error": together[1].fit_error, "epochs_run": together[1].epochs_run,
            "losses": together[1].history.get("loss", []),
            "scores_nan": all(v != v for v in together[1].scores.values())}


def continued():
    """Members trained 2 epochs, saved, continued to 5 in a new pack, against 5 at once."""
    spec = normalize_spec({"hidden_units": [8], "epochs": 5, "batch_size": 16,
                           "dropout": 0.1}, "regression")
    tables = [table(70, "regression") for _ in range(3)]
    short = [mlp_member({**spec, "epochs": 2}, x, y, k, "regression", None)
             for k, (x, y) in enumerate(tables)]
    first = fit_members(short, keep_state=True)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for k, done in enumerate(first):
            paths.append(os.path.join(folder, f"{k}.npz"))
            save_state(done.state, paths[-1])
        states = [load_state(p) for p in paths]
    survivors = [0, 2]
    on = [mlp_member(spec, *tables[k], k, "regression", None, initial=states[k])
          for k in survivors]
    ends = fit_members(on, predict=[tables[k][0] for k in survivors])
    whole = fit_members([mlp_member(spec, *tables[k], k, "regression", None)
                         for k in survivors], predict=[tables[k][0] for k in survivors])
    wrong = None
    try:
        fit_members([mlp_member(spec, *tables[1], 1, "regression", None, initial=states[0])])
    except ValueError as err:
        wrong = str(err)
    return {"continued_from": [t.continued_from_epoch for t in ends],
            "outputs": max(diff(a.output, b.output) for a, b in zip(ends, whole, strict=True)),
            "histories": max(diff(a.history["loss"], b.history["loss"])
                             for a, b in zip(ends, whole, strict=True)),
            "epochs": [len(t.history["loss"]) for t in ends], "wrong": wrong}


def fewer_rows_than_a_batch():
    """Folds of 20 rows at batch 32: each epoch is one short step, as Keras' fit runs it."""
    spec = normalize_spec({"hidden_units": [4], "epochs": 2, "batch_size": 32},
                          "regression")
    x, y = table(20, "regression")
    packed = fit_members([mlp_member(spec, x, y, k, "regression", None) for k in range(2)],
                         predict=[x, x])
    seed_everything(0)
    model = build_model(spec, x.shape[1], "regression", None)
    for epoch in range(2):
        order = epoch_order(0, epoch, len(x))
        model.fit(x[order], y[order], batch_size=32, epochs=1, shuffle=False, verbose=0)
    return {"packed": [t.packed for t in packed],
            "outputs": diff(packed[0].output, model.predict(x, verbose=0))}


def resumed():
    """A checkpoint after 2 of 4 epochs, resumed, ends where an uninterrupted run does."""
    spec = normalize_spec({"hidden_units": [8, 4], "epochs": 4, "dropout": 0.2},
                          "regression")
    tables = [table(60, "regression", features) for features in (5, 4)]

    def members(epochs):
        return [mlp_member({**spec, "epochs": epochs, "hidden_units": [8 - 2 * k, 4]}, x, y,
                           k, "regression", None) for k, (x, y) in enumerate(tables)]

    with tempfile.TemporaryDirectory() as folder:
        fit_members(members(2), checkpoint_dir=folder)
        again = fit_members(members(4), predict=[x for x, _ in tables], checkpoint_dir=folder)
    whole = fit_members(members(4), predict=[x for x, _ in tables])
    return {"from": [t.resumed_from_epoch for t in again],
            "outputs": max(diff(a.output, b.output) for a, b in zip(again, whole, strict=True))}


def mixed_precision():
    spec = normalize_spec({"hidden_units": [8], "epochs": 3, "mixed_precision": True},
                          "classification", 3)
    x, y = table(80, "multiclass")
    labels = y.argmax(axis=1)
    data = FoldData(x[:60], labels[:60], x[60:], labels[60:], np.arange(60, 80))
    result = train_folds([data, data], task="classification", n_classes=3,
                         specs=[spec, spec], seeds=[0, 1])
    return {"devices": result[0].devices, "accuracy": result[0].scores["accuracy"],
            "dtype": str(result[0].model.layers[1].compute_dtype),
            "finite": bool(np.isfinite(result[0].prediction).all())}


TF_KERAS = '''
from tensorflow import keras
from tensorflow.keras import layers
import tensorflow as tf


def create_model(meta, hidden=8, dropout=0.1):
    model = tf.keras.Sequential([layers.Input((meta["n_features_in_"],)),
                                 layers.Dense(hidden, activation="relu"),
                                 layers.Dropout(dropout), layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model
'''

TF_OPERATION = '''
import tensorflow as tf


def pinball(y_true, y_pred):
    return tf.reduce_mean(tf.maximum(0.5 * (y_true - y_pred), -0.5 * (y_true - y_pred)))


def create_model(meta):
    model = tf.keras.Sequential([tf.keras.Input((meta["n_features_in_"],)),
                                 tf.keras.layers.Dense(4), tf.keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss=pinball)
    return model
'''


def tensorflow_builders():
    import hashlib

    from foldwise.components.core.models.builder_checks import tensorflow_operations

    def reference(source, name):
        return {"function": "create_model", "file": name, "source": source,
                "sha256": hashlib.sha256(source.encode()).hexdigest()}

    tf_keras = reference(TF_KERAS, "tf_keras.py")
    specs = [normalize_spec({"estimator": "keras_builder", "builder": tf_keras,
                             "dropout": dropout, "hidden": hidden, "epochs": 3}, "regression")
             for dropout, hidden in ((0.1, 8), (0.3, 8), (0.0, 8), (0.0, 16))]
    x, y = table(60, "regression")
    data = FoldData(x[:45], y[:45, 0], x[45:], y[45:, 0], np.arange(45, 60))
    results = train_folds([data] * 4, task="regression", n_classes=None, specs=specs,
                          seeds=[0] * 4)
    alone = [train_fold(data, task="regression", n_classes=None, spec=s, seed=0)
             for s in specs]
    schema = {"task": "regression", "numeric": ["a", "b", "c"], "categorical": [],
              "target": "y", "classes": None}
    configs = [{"config_id": "uses-keras", "params": specs[0]},
               {"config_id": "uses-tf", "params": normalize_spec(
                   {"estimator": "keras_builder", "builder": reference(TF_OPERATION, "op.py"),
                    "epochs": 3}, "regression")}]
    return {"devices": [r.devices for r in results], "errors": [r.fit_error for r in results],
            "alone": max(diff(a.prediction, b.prediction)
                         for a, b in zip(results, alone, strict=True)),
            "needs": tensorflow_operations(configs, schema, None)}


def main(out):
    results = {"backend": keras.backend.backend()}
    for kind, task, classes, settings in CASES:
        name = f"{kind}_{settings['optimizer']}_{settings.get('loss', 'default')}"
        results[f"epoch_{name}"] = one_epoch_against_keras_fit(kind, task, classes, settings)
    results["folds"] = folds_against_lone()
    results["diverging_regression"] = diverging_member("regression", None, "regression")
    results["continued"] = continued()
    results["resumed"] = resumed()
    results["short"] = fewer_rows_than_a_batch()
    results["mixed_precision"] = mixed_precision()
    results["tensorflow_builders"] = tensorflow_builders()
    results["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    results["error_pattern_ok"] = bool(re.fullmatch(
        r"diverged: non-finite loss at epoch [1-5]",
        results["diverging_regression"]["fit_error"]))
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
