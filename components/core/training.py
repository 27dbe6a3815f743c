"""Train a fresh Keras model on one fold's training rows and score it on its validation rows."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foldwise.components.core import metrics
from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.encoding import feature_matrix
from foldwise.components.core.model import build_model, config_id, normalize_spec, output_kind


@dataclass
class FoldData:
    """One fold's arrays: features in model input order and targets."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    rows_validation: np.ndarray


def split_fold(encoded: pd.DataFrame, fold: int, target: str, features: list[str]) -> FoldData:
    """Cut an encoded table into the fold's training rows (other folds) and validation rows."""
    validation = encoded[FOLD_COLUMN].to_numpy() == fold
    x = feature_matrix(encoded, features)
    y = encoded[target].to_numpy()
    return FoldData(x[~validation], y[~validation], x[validation], y[validation],
                    encoded[ROW_COLUMN].to_numpy()[validation])


def check_trial(expected_config_id: str, fold: int, params: dict, table_fold: int, task: str,
                n_classes: int | None) -> dict:
    """Normalize a trial's parameters and make sure it got what it was promised.

    A table fitted for another fold, or parameters that hash to another configuration, mean
    the orchestrator mixed up inputs: training on them would report wrong scores silently.

    Returns:
        The normalized model spec.

    Raises:
        RuntimeError: The fold or the configuration does not match.
    """
    if int(table_fold) != int(fold):
        raise RuntimeError(f"trial for fold {fold} was handed the table of fold {table_fold}")
    spec = normalize_spec(params, task, n_classes)
    if config_id(spec) != expected_config_id:
        raise RuntimeError(
            f"trial {expected_config_id} was handed the parameters of {config_id(spec)}")
    return spec


def predictions_frame(data: FoldData, fold: int, prediction: np.ndarray,
                      classes: list | None) -> pd.DataFrame:
    """Out-of-fold predictions of one fold.

    Columns: ``row``, ``fold``, ``y_true`` and ``prediction`` (regression) or one
    ``proba_<class>`` column per class.
    """
    out = pd.DataFrame({"row": data.rows_validation, "fold": int(fold),
                        "y_true": data.y_validation})
    if classes is None:
        out["prediction"] = prediction
    else:
        for index, label in enumerate(classes):
            out[f"proba_{label}"] = prediction[:, index]
    return out


@dataclass
class FoldResult:
    """What training one fold produced."""

    model: object
    history: dict
    prediction: np.ndarray  # regression: values; classification: class probabilities
    scores: dict
    fit_time: float
    score_time: float
    epochs_run: int
    target_scaling: dict | None
    devices: dict  # device, strategy, replicas and precision the model was trained with


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend, and ask TensorFlow for deterministic ops."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def train_fold(data: FoldData, *, task: str, n_classes: int | None, spec: dict,
               seed: int, checkpoint_dir: str | None = None) -> FoldResult:
    """Fit a fresh model on ``data``'s training rows and score it on its validation rows.

    Regression targets are standardized with the training rows' mean and standard deviation
    and predictions mapped back before scoring, like scikit-learn's
    ``TransformedTargetRegressor`` (``spec["target_scaling"] == "none"`` turns it off). With
    ``early_stopping``, a seeded ``validation_fraction`` of the training rows (stratified for
    classification) is held out to stop on, and the best epoch's weights are kept. A spec with
    ``estimator == "sklearn_mlp"`` trains scikit-learn's MLP baseline instead of Keras.
    ``checkpoint_dir`` keeps the last finished epoch's state, so that a killed and retried
    run resumes there and ends with the same model.
    """
    return train_folds([data], task=task, n_classes=n_classes, specs=[spec], seeds=[seed],
                       checkpoint_dir=checkpoint_dir)[0]


def train_folds(datas: list[FoldData], *, task: str, n_classes: int | None, specs: list[dict],
                seeds: list[int], checkpoint_dir: str | None = None) -> list[FoldResult]:
    """Train one fresh model per ``(data, spec, seed)``, each as :func:`train_fold` would.

    Keras models that :func:`~foldwise.components.core.packed.pack_key` can pack are trained
    together, one stacked model per pack key (see ``core.packed``): the same models as
    separate runs, at a fraction of the per-step cost. On several GPUs or a TPU, and for
    mixed precision or custom losses, each model trains through Keras' ``fit`` under the
    distribution strategy (``core.devices``), resumable through Keras' ``BackupAndRestore``.
    """
    from foldwise.components.core.packed import pack_key

    kind = output_kind(task, n_classes)
    results: list[FoldResult | None] = [None] * len(datas)
    packs: dict[tuple, list[int]] = {}
    single_device = None
    for index, spec in enumerate(specs):
        key = pack_key(spec)
        if key is not None and single_device is None:
            single_device = _single_device_plan()
        if key is not None and single_device is not None:
            packs.setdefault(key, []).append(index)
            continue
        data, seed = datas[index], seeds[index]
        target_state = _target_scaling(data.y_train, kind, spec)
        fit = _fit_sklearn_mlp if spec.get("estimator") == "sklearn_mlp" else _fit_keras
        backup = None if checkpoint_dir is None else os.path.join(checkpoint_dir, str(index))
        model, history, fit_time, devices = fit(data, kind, n_classes, spec, seed, target_state,
                                                backup)
        results[index] = _scored(data, kind, task, n_classes, model, history, fit_time,
                                 target_state, devices)
    for number, members in enumerate(packs.values()):
        folder = None if checkpoint_dir is None else os.path.join(checkpoint_dir,
                                                                   f"pack-{number}")
        for index, result in zip(members, _train_pack(
                [datas[i] for i in members], [specs[i] for i in members],
                [seeds[i] for i in members], kind, task, n_classes, single_device, folder),
                strict=True):
            results[index] = result
    return results


def _single_device_plan() -> dict | None:
    """The device plan when training runs on one device (CPU or one GPU), else ``None``.

    The stacked trainer is written for TensorFlow: under another Keras backend, ``None``.
    """
    import keras

    from foldwise.components.core.devices import describe_devices

    if keras.backend.backend() != "tensorflow":
        return None

    plan = describe_devices(mixed_precision=False)
    return plan if plan["strategy"] in ("default", "one_device") else None


def _train_pack(datas, specs, seeds, kind, task, n_classes, plan, checkpoint_dir):
    from foldwise.components.core.packed import Stream, fit_packed

    streams, states = [], []
    for data, spec, seed in zip(datas, specs, seeds, strict=True):
        target_state = _target_scaling(data.y_train, kind, spec)
        x_fit, y_fit, x_stop, y_stop = _fit_rows(data, kind, n_classes, spec, seed,
                                                 target_state)
        streams.append(Stream(x_fit.astype("float32"), y_fit, None if x_stop is None else
                              x_stop.astype("float32"), y_stop, seed, spec))
        states.append(target_state)
    packed = fit_packed(streams, task=task, n_classes=n_classes, checkpoint_dir=checkpoint_dir,
                        predict=[data.x_validation for data in datas])
    predicted = packed.predict_time / len(streams)  # the pack's times, shared out evenly
    devices = {**plan, "packed": len(streams)}
    if packed.resumed_from_epoch:
        devices["resumed_from_epoch"] = packed.resumed_from_epoch
    share = packed.fit_time / len(streams)
    return [_scored(data, kind, task, n_classes, model, history, share, state, devices,
                    user_values(raw, kind, state), predicted)
            for data, model, history, state, raw in zip(
                datas, packed.models, packed.histories, states, packed.outputs, strict=True)]


def _scored(data, kind, task, n_classes, model, history, fit_time, target_state,
            devices, prediction=None, predict_time=0.0) -> FoldResult:
    started = time.perf_counter()
    if prediction is None:
        prediction = predict_array(model, data.x_validation, kind, target_state)
    scores = metrics.score(task, data.y_validation, prediction, n_classes)
    score_time = time.perf_counter() - started + predict_time
    return FoldResult(model, history, prediction, scores, fit_time, score_time,
                      len(history.get("loss", [])), target_state, devices)


def _target_scaling(y: np.ndarray, kind: str, spec: dict) -> dict | None:
    if kind != "regression" or spec["target_scaling"] != "standard":
        return None
    mean, std = float(np.mean(y)), float(np.std(y))
    return {"method": "standard", "mean": mean, "scale": std if std > 0 else 1.0}


def _scaled_target(y: np.ndarray, target_state: dict | None) -> np.ndarray:
    if target_state is None:
        return y.astype("float32")
    return ((y - target_state["mean"]) / target_state["scale"]).astype("float32")


def _fit_keras(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
               target_state: dict | None, backup_dir: str | None = None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    seed_everything(seed)
    x_fit, y_fit, x_stop, y_stop = _fit_rows(data, kind, n_classes, spec, seed, target_state)
    callbacks = []
    if spec["early_stopping"]:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=spec["patience"], restore_best_weights=True))
    if backup_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir))

    from foldwise.components.core.devices import training_devices

    task = "regression" if kind == "regression" else "classification"
    with training_devices(spec["mixed_precision"]) as (strategy, plan):
        with strategy.scope():
            model = build_model(spec, data.x_train.shape[1], task, n_classes)
        started = time.perf_counter()
        history = model.fit(
            x_fit, y_fit, epochs=spec["epochs"], batch_size=spec["batch_size"], shuffle=True,
            validation_data=None if x_stop is None else (x_stop, y_stop),
            callbacks=callbacks, verbose=0,
        )
        fit_time = time.perf_counter() - started
    history_lists = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return model, history_lists, fit_time, plan


def _fit_rows(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
              target_state: dict | None):
    """``(x_fit, y_fit, x_stop, y_stop)`` for a Keras model, early-stopping rows held out.

    Targets are in the loss' form: scaled, one column; or one-hot. Without early stopping the
    stop rows are ``None``.
    """
    y = _scaled_target(data.y_train, target_state).reshape(-1, 1)
    if kind == "multiclass":
        import keras

        y = keras.utils.to_categorical(data.y_train, n_classes).astype("float32")
    if not spec["early_stopping"]:
        return data.x_train, y, None, None
    fit_index, stop_index = _early_stopping_split(data.y_train, kind, spec, seed)
    return (data.x_train[fit_index], y[fit_index], data.x_train[stop_index],
            y[stop_index])


def _fit_sklearn_mlp(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
                     target_state: dict | None, backup_dir: str | None = None):
    """scikit-learn's MLP with the spec's layers, activation, Adam, batch size and epochs."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    del backup_dir  # it trains in seconds: a retried task simply starts it over
    from foldwise.components.core.model import MLP_ACTIVATIONS

    estimator = MLPRegressor if kind == "regression" else MLPClassifier
    model = estimator(
        hidden_layer_sizes=tuple(spec["hidden_units"]),
        activation=MLP_ACTIVATIONS[spec["activation"]], solver="adam", alpha=spec["l2"],
        batch_size=spec["batch_size"], learning_rate_init=spec["learning_rate"],
        beta_1=spec["beta_1"], beta_2=spec["beta_2"], epsilon=spec["epsilon"],
        max_iter=spec["epochs"], shuffle=True, random_state=seed,
        early_stopping=spec["early_stopping"], validation_fraction=spec["validation_fraction"],
        # Without early stopping, train exactly `epochs` epochs as Keras does.
        n_iter_no_change=spec["patience"] if spec["early_stopping"] else spec["epochs"] + 1,
        tol=1e-4 if spec["early_stopping"] else 0.0,
    )
    y_fit = (_scaled_target(data.y_train, target_state) if kind == "regression"
             else data.y_train)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.x_train, y_fit)
    fit_time = time.perf_counter() - started
    model.n_classes_total_ = n_classes
    devices = {"device": "cpu", "strategy": "scikit-learn", "replicas": 1,
               "precision": "float64"}
    history = {"loss": [float(v) for v in model.loss_curve_]}
    if spec["early_stopping"]:
        history["val_score"] = [float(v) for v in model.validation_scores_]
    return model, history, fit_time, devices


def save_model(result: FoldResult, folder: str) -> None:
    """Save a trained model and its target scaling into ``folder``.

    Keras models as ``model.keras``; the scikit-learn baseline's weights as ``mlp.json``
    (plain JSON, never pickle); plus ``target_scaling.json``.
    """
    import json

    os.makedirs(folder, exist_ok=True)
    if hasattr(result.model, "coefs_"):
        mlp = result.model
        weights = {"coefs": [c.tolist() for c in mlp.coefs_],
                   "intercepts": [b.tolist() for b in mlp.intercepts_],
                   "activation": mlp.activation, "out_activation": mlp.out_activation_,
                   "classes": getattr(mlp, "classes_", np.array([])).tolist()}
        with open(os.path.join(folder, "mlp.json"), "w", encoding="utf-8") as handle:
            json.dump(weights, handle)
    else:
        result.model.save(os.path.join(folder, "model.keras"))
    with open(os.path.join(folder, "target_scaling.json"), "w", encoding="utf-8") as handle:
        json.dump(result.target_scaling, handle)


def predict_array(model, x: np.ndarray, kind: str, target_state: dict | None) -> np.ndarray:
    """Model output as user-facing values: regression values or class probabilities."""
    if hasattr(model, "coefs_"):  # the scikit-learn MLP baseline
        return _predict_sklearn_mlp(model, x, kind, target_state)
    return user_values(model.predict(x, batch_size=1024, verbose=0), kind, target_state)


def user_values(raw: np.ndarray, kind: str, target_state: dict | None) -> np.ndarray:
    """A Keras model's raw output as regression values (target scaling undone) or probabilities."""
    raw = np.asarray(raw, dtype="float64")
    if kind == "regression":
        values = raw[:, 0]
        if target_state is not None:
            values = values * target_state["scale"] + target_state["mean"]
        return values
    if kind == "binary":
        positive = np.clip(raw[:, 0], 0.0, 1.0)
        return np.column_stack([1.0 - positive, positive])
    return raw / raw.sum(axis=1, keepdims=True)  # float32 softmax, renormalized in float64


def _predict_sklearn_mlp(model, x: np.ndarray, kind: str,
                         target_state: dict | None) -> np.ndarray:
    if kind == "regression":
        values = np.asarray(model.predict(x), dtype="float64").reshape(-1)
        if target_state is not None:
            values = values * target_state["scale"] + target_state["mean"]
        return values
    # Columns for every class, also those absent from this fold's training rows.
    proba = np.zeros((len(x), model.n_classes_total_))
    proba[:, model.classes_] = model.predict_proba(x)
    return proba / proba.sum(axis=1, keepdims=True)  # computed in float32: renormalize


def _early_stopping_split(y: np.ndarray, kind: str, spec: dict,
                          seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    stratify = None
    if kind != "regression":
        counts = np.bincount(y.astype(int))
        stop_rows = int(np.ceil(spec["validation_fraction"] * len(y)))
        if counts[counts > 0].min() >= 2 and stop_rows >= len(counts):
            stratify = y
    fit_index, stop_index = train_test_split(
        index, test_size=spec["validation_fraction"], random_state=seed, stratify=stratify)
    return np.sort(fit_index), np.sort(stop_index)
