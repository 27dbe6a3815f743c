"""The estimators foldwise trains, registered under the name a spec's ``estimator`` gives.

Each :class:`Estimator` says how to fit one fresh model on a fold's training rows, how to
predict user-facing values with it (regression values with the target scaling undone, or one
probability column per class), how to save it into a folder, and how its regression target is
scaled while it learns. Training looks an estimator up here by name and never inspects a
model to guess what it is. Adding one (a user's own Keras builder, say) is one
:func:`register` call; :func:`~foldwise.components.core.models.spec.normalize_spec` must accept its
name too.

- ``keras``: foldwise's Keras MLP (``core.models.keras_model.build_model``).
- ``sklearn_mlp``: scikit-learn's ``MLPRegressor``/``MLPClassifier``, the baseline twin.
- ``keras_builder``: a user's own Keras model from the builder function its spec references
  (``core.models.builder_keras``).

The Keras ones (those with ``prepare``) train in the one engine, ``core.training.vmapped``, under
Keras' JAX backend; ``fit`` (Keras' own, under TensorFlow's distribution strategy) trains
them only in a TensorFlow process: a user's builder that runs TensorFlow operations.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.data.table import suggest
from foldwise.components.core.devices import training_devices
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.builder_code import load_builder
from foldwise.components.core.models.builder_keras import (
    BuildContext,
    build,
    loss_form,
    output_units,
)
from foldwise.components.core.models.keras_model import (
    MLP_ACTIVATIONS,
    build_model,
    seed_everything,
)
from foldwise.components.core.models.targets import TargetForm
from foldwise.components.core.models.tensorflow_standin import keras_as_tensorflow

# Keras' fit runs this many training steps per graph call (a model compiled with its own
# ``steps_per_execution`` keeps it): the same steps, without a Python round trip each.
STEPS_PER_EXECUTION = 32



@dataclass(frozen=True)
class Fitted:
    """What fitting one model produced."""

    model: object
    history: dict[str, list[float]]  # per-epoch ``loss`` (and ``val_loss``/``val_score``)
    fit_time: float
    devices: dict  # device, strategy, replicas and precision the model was trained with


@dataclass(frozen=True)
class Estimator:
    """One kind of model foldwise can train, cross-validate and save.

    Attributes:
        name: The spec's ``estimator`` value.
        fit: ``fit(data, kind, n_classes, spec, seed, target_state, backup_dir) -> Fitted``:
            a fresh model trained on ``data``'s training rows; ``backup_dir`` (or ``None``)
            is where it may keep state to resume from when its task is retried.
        predict: ``predict(model, x, kind, n_classes, target_state) -> array``: regression
            values (target scaling undone) or class probabilities, shape ``(rows,
            n_classes)``.
        save: ``save(model, folder)``: the model's files into an existing folder.
        target_scaling: ``target_scaling(y_train, kind, spec) -> dict | None``: the state
            that maps regression targets to what the model learns (``None``: as they are).
        prepare: ``prepare(data, kind, n_classes, spec, seed, target_state) -> Prepared``:
            a fresh Keras model and its rows for the one training engine; ``None`` for an
            estimator the engine does not train (``fit`` trains it).
        role: ``mlp`` (foldwise's own Keras MLP: its options are the model options, it
            has a scikit-learn twin), ``user`` (a user's Keras model: its options are
            the builder's own, checked by building it; its module is loaded wherever
            the model is) or ``baseline`` (a comparison twin: scored beside the Keras
            configurations, never chosen, refitted or raced).
    """

    name: str
    fit: Callable[..., Fitted]
    predict: Callable[..., np.ndarray]
    save: Callable[[object, str], None]
    target_scaling: Callable[[np.ndarray, str, dict], dict | None]
    prepare: Callable[..., Prepared] | None = None
    role: str = "mlp"

    @property
    def keras(self) -> bool:
        """A Keras model: a candidate for the best configuration, refit and export."""
        return self.role != "baseline"


@dataclass(frozen=True)
class Prepared:
    """A fresh Keras model with its rows, ready for the one engine (``core.training.vmapped``).

    Attributes:
        model: The compiled model, built from its seed.
        rows: ``(x_fit, y_fit, x_stop, y_stop)``, targets in the loss' form (no stop rows
            without early stopping).
        test: The fold's validation rows and their targets in the loss' form, or ``None``.
        user_values: Turns the model's raw outputs into regression values (target scaling
            undone) or class probabilities.
    """

    model: object
    rows: tuple
    test: tuple | None
    user_values: Callable[[np.ndarray], np.ndarray]


_REGISTRY: dict[str, Estimator] = {}


def register(estimator: Estimator) -> Estimator:
    """Make ``estimator`` trainable under its name; a name registered twice is refused."""
    if estimator.name in _REGISTRY:
        raise ValueError(f"estimator {estimator.name!r} is registered already")
    _REGISTRY[estimator.name] = estimator
    return estimator


def get_estimator(name: str) -> Estimator:
    """The registered estimator called ``name``.

    Raises:
        FoldwiseError: No estimator has that name (the known ones are listed).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        known = sorted(_REGISTRY)
        raise FoldwiseError(f"unknown estimator {name!r}{suggest(str(name), known)} (known: "
                            f"{', '.join(known)})") from None


def estimator_names() -> list[str]:
    """Names of the registered estimators, in registration order."""
    return list(_REGISTRY)


def named(role: str) -> tuple[str, ...]:
    """The names of the estimators of ``role`` (``mlp``, ``user``, ``baseline``)."""
    return tuple(name for name, e in _REGISTRY.items() if e.role == role)


def keras_names() -> tuple[str, ...]:
    """The names of the Keras estimators (every role but ``baseline``)."""
    return tuple(name for name, e in _REGISTRY.items() if e.keras)


def role_of(spec: dict) -> str:
    """The role of a configuration's estimator (foldwise's MLP's when it names none)."""
    return get_estimator(spec.get("estimator") or "keras").role


# ----- target handling ------------------------------------------------------------------------
def standard_target_scaling(y: np.ndarray, kind: str, spec: dict) -> dict | None:
    """Standardize regression targets with the training rows' mean and standard deviation.

    Like scikit-learn's ``TransformedTargetRegressor``; ``spec["target_scaling"] == "none"``
    and classification targets get ``None`` (learned as they are).
    """
    if kind != "regression" or spec["target_scaling"] != "standard":
        return None
    mean, std = float(np.mean(y)), float(np.std(y))
    return {"method": "standard", "mean": mean, "scale": std if std > 0 else 1.0}


# ----- keras ----------------------------------------------------------------------------------
def keras_fit_rows(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
                   target_state: dict | None):
    """``(x_fit, y_fit, x_stop, y_stop)`` for a Keras model, early-stopping rows held out.

    Targets are in the loss' form: scaled, one column; or one-hot. Without early stopping the
    stop rows are ``None``. The one engine (``core.training.vmapped``) takes the same rows.
    """
    y = TargetForm.of_mlp(kind, n_classes, target_state).loss_targets(data.y_train)
    if not spec["early_stopping"]:
        return data.x_train, y, None, None
    fit_index, stop_index = early_stopping_split(data.y_train, kind, spec, seed)
    return (data.x_train[fit_index], y[fit_index], data.x_train[stop_index],
            y[stop_index])


def keras_test_rows(data: FoldData, kind: str, n_classes: int | None,
                    target_state: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The fold's validation rows with targets in the loss' form (what ``fit`` trains on)."""
    y = TargetForm.of_mlp(kind, n_classes, target_state).loss_targets(data.y_validation)
    return np.asarray(data.x_validation, dtype="float32"), y


def early_stopping_split(y: np.ndarray, kind: str, spec: dict,
                         seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices to fit on and to stop on: a seeded ``validation_fraction`` held out.

    Stratified for classification when every class can give a row to both sides.
    """
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


def keras_user_values(raw: np.ndarray, kind: str, target_state: dict | None) -> np.ndarray:
    """Foldwise's MLP's raw output as regression values or probabilities (:class:`TargetForm`)."""
    return TargetForm.of_mlp(kind, None, target_state).user_values(raw)


def _fit_keras(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
               target_state: dict | None, backup_dir: str | None = None) -> Fitted:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


    seed_everything(seed)
    rows = keras_fit_rows(data, kind, n_classes, spec, seed, target_state)
    task = "regression" if kind == "regression" else "classification"
    with training_devices(spec["mixed_precision"]) as (strategy, plan):
        with strategy.scope():
            model = build_model(spec, data.x_train.shape[1], task, n_classes)
        test = (keras_test_rows(data, kind, n_classes, target_state)
                if len(data.y_validation) else None)
        history, fit_time = _keras_fit(model, rows, spec, backup_dir, test)
    return Fitted(model, history, fit_time, plan)


def _keras_fit(model, rows: tuple, spec: dict, backup_dir: str | None,
               test: tuple | None = None):
    """Keras ``fit`` on ``(x_fit, y_fit, x_stop, y_stop)``: ``(history lists, seconds)``.

    ``test``: the fold's validation rows (targets in the loss' form), evaluated after every
    epoch into the history's ``test_loss``, as the packed trainers record it.
    """
    import keras

    x_fit, y_fit, x_stop, y_stop = rows
    # A non-finite loss ends the fit at once: the epoch is recorded as diverged, and a
    # diverging configuration does not hold its task for the remaining epochs.
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if test is not None:
        callbacks.insert(0, _test_loss_callback()(*test, spec["batch_size"]))
    if spec["early_stopping"]:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=spec["patience"], restore_best_weights=True))
    if backup_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir))
    if model.steps_per_execution == 1:  # the same steps, a graph call per 32 of them
        model.steps_per_execution = STEPS_PER_EXECUTION
    started = time.perf_counter()
    history = model.fit(
        x_fit, y_fit, epochs=spec["epochs"], batch_size=spec["batch_size"], shuffle=True,
        validation_data=None if x_stop is None else (x_stop, y_stop),
        callbacks=callbacks, verbose=0,
    )
    fit_time = time.perf_counter() - started
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}, fit_time


def _prepare_keras(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
                   target_state: dict | None) -> Prepared:
    task = "regression" if kind == "regression" else "classification"
    seed_everything(seed)
    model = build_model(spec, data.x_train.shape[1], task, n_classes)
    rows = keras_fit_rows(data, kind, n_classes, spec, seed, target_state)
    test = (keras_test_rows(data, kind, n_classes, target_state)
            if len(data.y_validation) else None)
    return Prepared(model, rows, test,
                    lambda raw: keras_user_values(raw, kind, target_state))


def _test_loss_callback():
    """The callback class that records ``test_loss`` (made once Keras is imported)."""
    import keras

    class TestLoss(keras.callbacks.Callback):
        """Puts the loss on the fold's validation rows into each epoch's logs."""

        def __init__(self, x, y, batch_size: int):
            super().__init__()
            self.x, self.y, self.batch_size = x, y, batch_size

        def on_epoch_end(self, epoch, logs=None):  # noqa: D102 - Keras' hook
            if logs is not None:
                logs["test_loss"] = float(self.model.evaluate(
                    self.x, self.y, batch_size=max(self.batch_size, 256), verbose=0,
                    return_dict=True)["loss"])

    return TestLoss


def _predict_keras(model, x: np.ndarray, kind: str, n_classes: int | None,
                   target_state: dict | None) -> np.ndarray:
    del n_classes  # the output layer has a column per class already
    return keras_user_values(model.predict(x, batch_size=1024, verbose=0), kind, target_state)


def _save_keras(model, folder: str) -> None:
    model.save(os.path.join(folder, "model.keras"))


# ----- scikit-learn's MLP ---------------------------------------------------------------------
def _fit_sklearn_mlp(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
                     target_state: dict | None, backup_dir: str | None = None) -> Fitted:
    """scikit-learn's MLP with the spec's layers, activation, Adam, batch size and epochs."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    del backup_dir, n_classes  # it trains in seconds: a retried task simply starts it over
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
    y_fit = (TargetForm.of_mlp(kind, None, target_state).scaled(data.y_train)
             if kind == "regression" else data.y_train)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.x_train, y_fit)
    fit_time = time.perf_counter() - started
    devices = {"device": "cpu", "strategy": "scikit-learn", "replicas": 1,
               "precision": "float64"}
    history = {"loss": [float(v) for v in model.loss_curve_]}
    if spec["early_stopping"]:
        history["val_score"] = [float(v) for v in model.validation_scores_]
    return Fitted(model, history, fit_time, devices)


def _predict_sklearn_mlp(model, x: np.ndarray, kind: str, n_classes: int | None,
                         target_state: dict | None) -> np.ndarray:
    if kind == "regression":
        return TargetForm.of_mlp(kind, n_classes, target_state).unscaled(
            np.asarray(model.predict(x), dtype="float64").reshape(-1))
    # Columns for every class, also those absent from this fold's training rows.
    proba = np.zeros((len(x), n_classes))
    proba[:, model.classes_] = model.predict_proba(x)
    return proba / proba.sum(axis=1, keepdims=True)  # computed in float32: renormalize


def _save_sklearn_mlp(model, folder: str) -> None:
    """The weights as ``mlp.json``: plain JSON, never pickle."""
    weights = {"coefs": [c.tolist() for c in model.coefs_],
               "intercepts": [b.tolist() for b in model.intercepts_],
               "activation": model.activation, "out_activation": model.out_activation_,
               "classes": getattr(model, "classes_", np.array([])).tolist()}
    with open(os.path.join(folder, "mlp.json"), "w", encoding="utf-8") as handle:
        json.dump(weights, handle)


# ----- a user's Keras builder -----------------------------------------------------------------
def builder_context(data: FoldData, kind: str, n_classes: int | None,
                    target_state: dict | None):
    """The fold as a user's builder sees it (``core.models.builder_keras.BuildContext``)."""
    y = (data.y_train if kind != "regression"
         else TargetForm.of_mlp(kind, n_classes, target_state).scaled(data.y_train))
    return BuildContext(data.x_train, y, "regression" if kind == "regression" else
                        "classification", n_classes, data.target, data.classes,
                        data.features, data.raw_columns)


def prepare_builder(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
                    target_state: dict | None):
    """A fresh model from the user's builder and its rows: ``(model, loss form, rows)``.

    ``rows`` is ``(x_fit, y_fit, x_stop, y_stop)`` with targets in the form the model's loss
    takes; the stop rows are ``None`` without early stopping. Call it inside the
    distribution strategy's scope where there is one.
    """
    builder = load_builder(spec["builder"])
    seed_everything(seed)
    context = builder_context(data, kind, n_classes, target_state)
    model = build(builder, spec, context, seed)
    form = loss_form(model, kind, n_classes, output_units(model, data.x_train))
    y = form.targets(n_classes, target_state).loss_targets(data.y_train)
    rows = (data.x_train, y, None, None)
    if spec["early_stopping"]:
        fit_index, stop_index = early_stopping_split(data.y_train, kind, spec, seed)
        rows = (data.x_train[fit_index], y[fit_index], data.x_train[stop_index],
                y[stop_index])
    return model, form, rows


def _prepare_builder(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
                     target_state: dict | None) -> Prepared:
    """A user's builder's model for the engine, ``tensorflow.keras`` answered by Keras.

    Built, and its loss computed once on a few rows, with the TensorFlow stand-in active
    (``core.models.tensorflow_standin``): a builder that runs a TensorFlow operation raises
    ``NeedsTensorFlow`` here, naming it.
    """
    with keras_as_tensorflow():
        model, form, rows = prepare_builder(data, kind, n_classes, spec, seed, target_state)
        probe = rows[0][:2].astype("float32")
        model.compute_loss(x=probe, y=rows[1][:2], y_pred=model(probe, training=False))
    targets = form.targets(n_classes, target_state)
    test = None
    if len(data.y_validation):
        test = (np.asarray(data.x_validation, dtype="float32"),
                targets.loss_targets(data.y_validation))
    return Prepared(model, rows, test, targets.user_values)


def _fit_builder(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
                 target_state: dict | None, backup_dir: str | None = None) -> Fitted:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


    with training_devices(spec["mixed_precision"]) as (strategy, plan):
        with strategy.scope():
            model, form, rows = prepare_builder(data, kind, n_classes, spec, seed,
                                                target_state)
        test = None
        if len(data.y_validation):
            test = (data.x_validation,
                    form.targets(n_classes, target_state).loss_targets(data.y_validation))
        history, fit_time = _keras_fit(model, rows, spec, backup_dir, test)
    return Fitted(model, history, fit_time, plan)


def _predict_builder(model, x: np.ndarray, kind: str, n_classes: int | None,
                     target_state: dict | None) -> np.ndarray:

    raw = model.predict(x, batch_size=1024, verbose=0)
    form = loss_form(model, kind, n_classes, int(np.shape(raw)[1]))
    return form.targets(n_classes, target_state).user_values(raw)


KERAS = register(Estimator("keras", _fit_keras, _predict_keras, _save_keras,
                           standard_target_scaling, _prepare_keras))


SKLEARN_MLP = register(Estimator("sklearn_mlp", _fit_sklearn_mlp, _predict_sklearn_mlp,
                                 _save_sklearn_mlp, standard_target_scaling,
                                 role="baseline"))


KERAS_BUILDER = register(Estimator("keras_builder", _fit_builder, _predict_builder, _save_keras,
                                   standard_target_scaling, _prepare_builder, role="user"))


def load_trained(path: str, spec: dict):
    """A trained model saved as ``model.keras`` (a user's builder registered first)."""
    import keras

    if role_of(spec) == "user":  # registers the builder's own objects
        load_builder(spec["builder"])
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception:  # a loss or metric that does not load: the network is what is needed
        return keras.saving.load_model(path, safe_mode=True, compile=False)
