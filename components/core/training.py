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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend, and ask TensorFlow for deterministic ops."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def train_fold(data: FoldData, *, task: str, n_classes: int | None, spec: dict,
               seed: int) -> FoldResult:
    """Fit a fresh model on ``data``'s training rows and score it on its validation rows.

    Regression targets are standardized with the training rows' mean and standard deviation
    and predictions mapped back before scoring, like scikit-learn's
    ``TransformedTargetRegressor`` (``spec["target_scaling"] == "none"`` turns it off). With
    ``early_stopping``, a seeded ``validation_fraction`` of the training rows (stratified for
    classification) is held out to stop on, and the best epoch's weights are kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    seed_everything(seed)
    kind = output_kind(task, n_classes)
    target_state = None
    y_fit = data.y_train.astype("float32")
    if kind == "regression" and spec["target_scaling"] == "standard":
        mean, std = float(np.mean(data.y_train)), float(np.std(data.y_train))
        std = std if std > 0 else 1.0
        target_state = {"method": "standard", "mean": mean, "scale": std}
        y_fit = ((data.y_train - mean) / std).astype("float32")
    elif kind == "multiclass":
        y_fit = keras.utils.to_categorical(data.y_train, n_classes).astype("float32")

    x_fit, x_stop, y_stop = data.x_train, None, None
    callbacks = []
    if spec["early_stopping"]:
        fit_index, stop_index = _early_stopping_split(data.y_train, kind, spec, seed)
        x_fit, x_stop = data.x_train[fit_index], data.x_train[stop_index]
        y_fit, y_stop = y_fit[fit_index], y_fit[stop_index]
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=spec["patience"], restore_best_weights=True))

    model = build_model(spec, data.x_train.shape[1], task, n_classes)
    started = time.perf_counter()
    history = model.fit(
        x_fit, y_fit, epochs=spec["epochs"], batch_size=spec["batch_size"], shuffle=True,
        validation_data=None if x_stop is None else (x_stop, y_stop),
        callbacks=callbacks, verbose=0,
    )
    fit_time = time.perf_counter() - started

    started = time.perf_counter()
    prediction = predict_array(model, data.x_validation, kind, target_state)
    scores = metrics.score(task, data.y_validation, prediction, n_classes)
    score_time = time.perf_counter() - started
    history_lists = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return FoldResult(model, history_lists, prediction, scores, fit_time, score_time,
                      len(history_lists.get("loss", [])), target_state)


def predict_array(model, x: np.ndarray, kind: str, target_state: dict | None) -> np.ndarray:
    """Model output as user-facing values: regression values or class probabilities."""
    raw = np.asarray(model.predict(x, batch_size=1024, verbose=0), dtype="float64")
    if kind == "regression":
        values = raw[:, 0]
        if target_state is not None:
            values = values * target_state["scale"] + target_state["mean"]
        return values
    if kind == "binary":
        positive = np.clip(raw[:, 0], 0.0, 1.0)
        return np.column_stack([1.0 - positive, positive])
    return raw / raw.sum(axis=1, keepdims=True)  # float32 softmax, renormalized in float64


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
