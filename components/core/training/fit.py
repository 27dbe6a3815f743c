"""Train a fresh model on one fold's training rows and score it on its validation rows."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foldwise.components.core.data.fold_data import FoldData
from foldwise.components.core.devices import training_devices
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.estimators import Fitted, get_estimator
from foldwise.components.core.models.keras_model import output_kind

# Re-exported: seeding belongs to the estimators now; callers still import it from here.
from foldwise.components.core.models.keras_model import seed_everything as seed_everything
from foldwise.components.core.models.spec import config_id, normalize_spec
from foldwise.components.core.scoring import metrics
from foldwise.components.core.training.vmapped import (
    ENGINE,
    Member,
    architecture_key,
    fit_members,
    ready,
)


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
    """What training one fold produced.

    A trial that failed (its training raised, or diverged: see :func:`divergence`) has a
    ``fit_error`` and every score equal to the ``error_score`` it was trained with (NaN),
    like scikit-learn's ``cross_validate(error_score=np.nan)``. A diverged trial keeps its
    model and predictions as training left them; one whose training raised has no model
    (``None``), no history and NaN predictions.
    """

    model: object | None
    history: dict
    prediction: np.ndarray  # regression: values; classification: class probabilities
    scores: dict
    fit_time: float
    score_time: float
    epochs_run: int
    target_scaling: dict | None
    devices: dict  # device, strategy, replicas and precision the model was trained with
    estimator: str = "keras"  # the spec's estimator (``core.models.estimators``)
    fit_error: str = ""  # why the trial failed; empty when it did not
    state: dict | None = None  # to continue training from (``core.training.vmapped.save_state``)

    @property
    def failed(self) -> bool:
        """Whether training raised or diverged."""
        return bool(self.fit_error)


def train_fold(data: FoldData, *, task: str, n_classes: int | None, spec: dict,
               seed: int, checkpoint_dir: str | None = None,
               error_score: str | float = "raise") -> FoldResult:
    """Fit a fresh model on ``data``'s training rows and score it on its validation rows.

    The spec's ``estimator`` (``core.models.estimators``) says what is trained: foldwise's Keras MLP
    or scikit-learn's MLP baseline. Regression targets are standardized with the training
    rows' mean and standard deviation and predictions mapped back before scoring, like
    scikit-learn's ``TransformedTargetRegressor`` (``spec["target_scaling"] == "none"`` turns
    it off). With ``early_stopping``, a seeded ``validation_fraction`` of the training rows
    (stratified for classification) is held out to stop on, and the best epoch's weights are
    kept. ``checkpoint_dir`` keeps the last finished epoch's state, so that a killed and
    retried run resumes there and ends with the same model.

    Args:
        data: The fold's rows.
        task: ``classification`` or ``regression``.
        n_classes: Number of classes (classification).
        spec: A normalized model spec (``core.models.spec.normalize_spec``).
        seed: Seed of weights, row order and dropout.
        checkpoint_dir: Where to keep state to resume from, or ``None``.
        error_score: ``"raise"``: a training error propagates, and a diverged model raises
            :class:`FoldwiseError`. A number (``float("nan")``): the trial is returned as
            failed with that score instead (see :class:`FoldResult`).
    """
    return train_folds([data], task=task, n_classes=n_classes, specs=[spec], seeds=[seed],
                       checkpoint_dir=checkpoint_dir, error_score=error_score)[0]


def train_folds(datas: list[FoldData], *, task: str, n_classes: int | None, specs: list[dict],
                seeds: list[int], checkpoint_dir: str | None = None,
                error_score: str | float = "raise",
                continue_from: list[dict | None] | None = None,
                keep_state: bool = False) -> list[FoldResult]:
    """Train one fresh model per ``(data, spec, seed)``, each as :func:`train_fold` would.

    How each model trains is decided in one place, :func:`engine_for`: every Keras model
    (foldwise's MLP and users' builders) in the one engine, ``core.training.vmapped``, under Keras'
    JAX backend, packed with ``jax.vmap``: members of one program train as one computation,
    the same models as separate runs at a fraction of the per-step cost. scikit-learn's MLP
    trains through its own ``fit``; so does a Keras model in a TensorFlow process (a user's
    builder that runs TensorFlow operations), through Keras' ``fit``.

    With a numeric ``error_score`` one failing model never stops the others: a diverging
    member is recorded as failed while its mates train on (members share no weights,
    gradients, optimizer state or reductions), and a pack whose training raises as a whole
    is trained again member by member, each failure recorded on its own.

    ``continue_from`` gives a model its state after some epochs (``FoldResult.state`` of an
    earlier run with ``keep_state``): it trains on from there to the spec's ``epochs``,
    ending as a run of all those epochs does. A model trained through ``fit`` trains them
    all from the start, which ends the same way at the cost of the epochs run before.
    """
    continue_from = continue_from or [None] * len(datas)
    _check_error_score(error_score)
    kind = output_kind(task, n_classes)
    results: list[FoldResult | None] = [None] * len(datas)
    engines = [engine_for(spec) for spec in specs]
    for index, spec in enumerate(specs):
        if engines[index] == ENGINE:
            continue
        backup = None if checkpoint_dir is None else os.path.join(checkpoint_dir, str(index))
        results[index] = _recorded(
            lambda d=datas[index], s=spec, seed=seeds[index], b=backup: _train_alone(
                d, kind, task, n_classes, s, seed, b, error_score),
            datas[index], task, n_classes, spec, error_score)
    by_precision: dict[bool, list[int]] = {}
    for index, spec in enumerate(specs):
        if engines[index] == ENGINE:
            by_precision.setdefault(bool(spec.get("mixed_precision")), []).append(index)
    for mixed, indices in by_precision.items():
        folder = None if checkpoint_dir is None else os.path.join(
            checkpoint_dir, "vmapped" + ("-mixed" if mixed else ""))
        for index, result in zip(indices, _train_vectorized(
                [datas[i] for i in indices], [specs[i] for i in indices],
                [seeds[i] for i in indices], kind, task, n_classes, folder, error_score,
                [continue_from[i] for i in indices], keep_state, mixed), strict=True):
            results[index] = result
    return results


def engine_for(spec: dict) -> str:
    """How a model of ``spec`` trains in this process: the one place that decides.

    ``"jax.vmap"`` (``core.training.vmapped``) for an estimator the engine trains
    (``Estimator.prepare``) when Keras runs on JAX; otherwise the estimator's own ``fit``:
    ``"keras.fit"`` or ``"scikit-learn"``.
    """
    estimator = get_estimator(spec["estimator"])
    if estimator.prepare is None:
        return "scikit-learn"
    return ENGINE if ready() else "keras.fit"


def divergence(history: dict, prediction: np.ndarray) -> str:
    """Why a trained model counts as diverged; empty when it does not.

    Diverged: a non-finite training loss in any epoch (the first is named), or non-finite
    predictions.
    """
    losses = np.asarray(history.get("loss", []), dtype="float64")
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        return f"diverged: non-finite loss at epoch {int(bad[0]) + 1}"
    if not np.all(np.isfinite(prediction)):
        return "diverged: non-finite predictions"
    return ""


def describe_error(err: BaseException, limit: int = 500) -> str:
    """An exception as one line: ``Type: message``, whitespace collapsed, at most ``limit``."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def failed_result(data: FoldData, task: str, n_classes: int | None, spec: dict, message: str,
                  fit_time: float, error_score: float) -> FoldResult:
    """The result of a trial whose training raised: no model, NaN predictions, error scores."""
    rows = len(data.y_validation)
    shape = (rows,) if task == "regression" else (rows, n_classes)
    return FoldResult(None, {}, np.full(shape, np.nan), _error_scores(task, n_classes,
                                                                      error_score),
                      fit_time, 0.0, 0, None, {}, spec.get("estimator", "keras"), message)


def _check_error_score(error_score: str | float) -> None:
    if error_score != "raise" and (isinstance(error_score, bool)
                                   or not isinstance(error_score, (int, float))):
        raise ValueError(f"error_score must be 'raise' or a number, got {error_score!r}")


def _error_scores(task: str, n_classes: int | None, error_score: float) -> dict:
    return {name: float(error_score) for name in metrics.metric_names(task, n_classes)}


def _recorded(train, data: FoldData, task: str, n_classes: int | None, spec: dict,
              error_score: str | float) -> FoldResult:
    """``train()``'s result; a failed one when it raises and ``error_score`` is a number."""
    started = time.perf_counter()
    try:
        return train()
    except Exception as err:
        if error_score == "raise":
            raise
        return failed_result(data, task, n_classes, spec, describe_error(err),
                             time.perf_counter() - started, error_score)


def _train_vectorized(datas, specs, seeds, kind, task, n_classes, checkpoint_dir,
                      error_score, initial, keep_state, mixed) -> list[FoldResult]:
    """Keras models in the one engine (``core.training.vmapped``), failures kept apart.

    A model whose building fails is recorded as failed; when training them together
    raises, each is built and trained again on its own, its failure recorded alone.
    """
    results: list[FoldResult | None] = [None] * len(datas)
    with training_devices(mixed, distribute=False) as (_, plan):
        prepared = []
        for index, (data, spec, seed) in enumerate(zip(datas, specs, seeds, strict=True)):
            try:
                prepared.append((index, _member(data, kind, n_classes, spec, seed,
                                                initial[index])))
            except Exception as err:
                if error_score == "raise":
                    raise
                results[index] = failed_result(data, task, n_classes, spec,
                                               describe_error(err), 0.0, error_score)
        if len(prepared) > 1:
            try:
                for (index, _), result in zip(prepared, _fit_vectorized(
                        [m for _, m in prepared], [datas[i] for i, _ in prepared],
                        [specs[i] for i, _ in prepared], task, n_classes, checkpoint_dir,
                        error_score, keep_state, plan), strict=True):
                    results[index] = result
                return results
            except Exception as err:
                if error_score == "raise":
                    raise
                logging.getLogger(__name__).warning(
                    "training %d models packed failed (%s): training them one by one",
                    len(prepared), describe_error(err))
                prepared = [(i, _member(datas[i], kind, n_classes, specs[i], seeds[i],
                                        initial[i])) for i, _ in prepared]
        for index, member in prepared:
            folder = None if checkpoint_dir is None else os.path.join(checkpoint_dir,
                                                                       str(index))
            results[index] = _recorded(
                lambda m=member, i=index, f=folder: _fit_vectorized(
                    [m], [datas[i]], [specs[i]], task, n_classes, f, error_score,
                    keep_state, plan)[0],
                datas[index], task, n_classes, specs[index], error_score)
    return results


def _member(data: FoldData, kind: str, n_classes: int | None, spec: dict, seed: int,
            initial: dict | None):
    """A fresh model and its rows for the one engine, with what turns outputs to values."""
    import json


    estimator = get_estimator(spec["estimator"])
    target_state = estimator.target_scaling(data.y_train, kind, spec)
    prepared = estimator.prepare(data, kind, n_classes, spec, seed, target_state)
    x_fit, y_fit, x_stop, y_stop = prepared.rows
    config = json.dumps({k: v for k, v in spec.items() if k != "builder"}, sort_keys=True,
                        default=str)
    x_test, y_test = prepared.test if prepared.test is not None else (None, None)
    def rows(x):  # no copy where they are float32 already: members of a fold share them
        return None if x is None else np.asarray(x, dtype="float32")

    member = Member(prepared.model, rows(x_fit), y_fit, rows(x_stop), y_stop, seed, spec,
                    architecture_key(prepared.model, spec, config), rows(x_test), y_test,
                    initial)
    return member, prepared.user_values, target_state


def _fit_vectorized(prepared, datas, specs, task, n_classes, checkpoint_dir, error_score,
                    keep_state, plan) -> list[FoldResult]:

    trained = fit_members([member for member, _, _ in prepared],
                          predict=[np.asarray(data.x_validation, dtype="float32")
                                   for data in datas],
                          checkpoint_dir=checkpoint_dir, keep_state=keep_state)
    results = []
    for (member, to_user, target_state), data, spec, done in zip(prepared, datas, specs,
                                                                  trained, strict=True):
        devices = {"device": plan["device"], "strategy": ENGINE, "replicas": plan["replicas"],
                   "precision": plan["precision"], "backend": "jax", "packed": done.packed}
        if done.program:
            devices["program"] = done.program
        if done.spread:
            devices["spread"] = done.spread
        if done.resumed_from_epoch:
            devices["resumed_from_epoch"] = done.resumed_from_epoch
        if done.continued_from_epoch:
            devices["continued_from_epoch"] = done.continued_from_epoch
        result = _scored(data, task, n_classes, spec,
                         Fitted(member.model, done.history, done.fit_time, devices),
                         target_state, to_user(done.output), 0.0, error_score)
        result.state = done.state
        results.append(result)
    return results


def _train_alone(data: FoldData, kind: str, task: str, n_classes: int | None, spec: dict,
                 seed: int, backup_dir: str | None, error_score: str | float) -> FoldResult:
    estimator = get_estimator(spec["estimator"])
    target_state = estimator.target_scaling(data.y_train, kind, spec)
    fitted = estimator.fit(data, kind, n_classes, spec, seed, target_state, backup_dir)
    started = time.perf_counter()
    prediction = estimator.predict(fitted.model, data.x_validation, kind, n_classes,
                                   target_state)
    return _scored(data, task, n_classes, spec, fitted, target_state, prediction,
                   time.perf_counter() - started, error_score)


def _scored(data: FoldData, task: str, n_classes: int | None, spec: dict, fitted: Fitted,
            target_state: dict | None, prediction: np.ndarray, predict_time: float,
            error_score: str | float) -> FoldResult:
    started = time.perf_counter()
    problem = divergence(fitted.history, prediction)
    if problem and error_score == "raise":
        raise FoldwiseError(f"training {problem.replace(': ', ' (', 1)}): a smaller "
                            "learning_rate (or scaled inputs) usually helps")
    scores = (_error_scores(task, n_classes, error_score) if problem else
              metrics.score(task, data.y_validation, prediction, n_classes))
    score_time = time.perf_counter() - started + predict_time
    return FoldResult(fitted.model, fitted.history, prediction, scores, fitted.fit_time,
                      score_time, len(fitted.history.get("loss", [])), target_state,
                      fitted.devices, spec["estimator"], problem)


def save_model(result: FoldResult, folder: str) -> None:
    """Save a trained model and its target scaling into ``folder``.

    The estimator's own files (``model.keras`` for Keras; the scikit-learn baseline's weights
    as ``mlp.json``, plain JSON, never pickle) plus ``target_scaling.json``. A failed trial's
    folder also holds ``fit_error.txt``: a diverged model is saved as training left it (to be
    inspected, never served), a trial whose training raised has no model to save.
    """
    import json

    os.makedirs(folder, exist_ok=True)
    if result.fit_error:
        with open(os.path.join(folder, "fit_error.txt"), "w", encoding="utf-8") as handle:
            handle.write(result.fit_error + "\n")
    if result.model is None:
        return
    get_estimator(result.estimator).save(result.model, folder)
    with open(os.path.join(folder, "target_scaling.json"), "w", encoding="utf-8") as handle:
        json.dump(result.target_scaling, handle)

