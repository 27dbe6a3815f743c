"""Train a fresh model on one fold's training rows and score it on its validation rows."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foldwise.components.core import metrics
from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.encoding import feature_matrix, raw_column_indices
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.estimators import (
    KERAS,
    Fitted,
    get_estimator,
    keras_fit_rows,
    keras_test_rows,
    keras_user_values,
)

# Re-exported: seeding belongs to the estimators now; callers still import it from here.
from foldwise.components.core.estimators import seed_everything as seed_everything
from foldwise.components.core.model import config_id, normalize_spec, output_kind


@dataclass
class FoldData:
    """One fold's arrays: features in model input order and targets.

    ``features``, ``raw_columns``, ``target`` and ``classes`` describe the columns for a
    user's model builder (``core.builders``): model-ready column names, the indices of each
    raw column's model-ready columns, the target's name and the class labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    rows_validation: np.ndarray
    features: list[str] | None = None
    raw_columns: dict[str, list[int]] | None = None
    target: str = ""
    classes: list | None = None


def split_fold(encoded: pd.DataFrame, fold: int, target: str, features: list[str],
               schema: dict | None = None) -> FoldData:
    """Cut an encoded table into the fold's training rows (other folds) and validation rows.

    With the preprocess step's ``schema``, the fold also knows its raw columns and classes.
    """
    validation = encoded[FOLD_COLUMN].to_numpy() == fold
    x = feature_matrix(encoded, features)
    y = encoded[target].to_numpy()
    raw_columns, classes = None, None
    if schema is not None:
        raw_columns = raw_column_indices(features, schema.get("categorical", []),
                                         schema.get("numeric", []))
        classes = schema.get("classes")
    return FoldData(x[~validation], y[~validation], x[validation], y[validation],
                    encoded[ROW_COLUMN].to_numpy()[validation], list(features), raw_columns,
                    target, classes)


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
    estimator: str = "keras"  # the spec's estimator (``core.estimators``)
    fit_error: str = ""  # why the trial failed; empty when it did not
    state: dict | None = None  # to continue training from (``core.packed.member_state``)

    @property
    def failed(self) -> bool:
        """Whether training raised or diverged."""
        return bool(self.fit_error)


def train_fold(data: FoldData, *, task: str, n_classes: int | None, spec: dict,
               seed: int, checkpoint_dir: str | None = None,
               error_score: str | float = "raise") -> FoldResult:
    """Fit a fresh model on ``data``'s training rows and score it on its validation rows.

    The spec's ``estimator`` (``core.estimators``) says what is trained: foldwise's Keras MLP
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
        spec: A normalized model spec (``core.model.normalize_spec``).
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

    Keras models that :func:`~foldwise.components.core.packed.pack_key` can pack are trained
    together, one stacked model per pack key (see ``core.packed``): the same models as
    separate runs, at a fraction of the per-step cost. Under Keras' JAX backend, models of
    users' builders of one architecture train as one vectorized computation
    (``core.vmapped``), equal to Keras' own ``fit`` on the same data order. On several GPUs
    or a TPU, and for mixed precision or custom losses, each model trains through Keras'
    ``fit`` under the distribution strategy (``core.devices``), resumable through Keras'
    ``BackupAndRestore``.

    With a numeric ``error_score`` one failing model never stops the others: a diverging
    pack member is recorded as failed while its mates train on (sub-models share no weights,
    gradients, optimizer state or reductions), and a pack whose training raises as a whole
    is trained again member by member, each failure recorded on its own.

    ``continue_from`` gives a model its state after some epochs (``FoldResult.state`` of an
    earlier run with ``keep_state``): packed models train on from there to the spec's
    ``epochs``, ending as a run of all those epochs does; a model the packed trainer does not
    train (several GPUs, a TPU, mixed precision, a custom loss, a user's builder) trains them
    all from the start, which ends the same way at the cost of the epochs run before.
    """
    from foldwise.components.core.packed import pack_key

    _small_steps_single_threaded(specs, datas)
    continue_from = continue_from or [None] * len(datas)
    _check_error_score(error_score)
    kind = output_kind(task, n_classes)
    results: list[FoldResult | None] = [None] * len(datas)
    packs: dict[tuple, list[int]] = {}
    single_device = None
    vectorized = [i for i, spec in enumerate(specs) if _vectorizable(spec)]
    if vectorized and not _jax_backend():
        vectorized = []
    for index, spec in enumerate(specs):
        if index in vectorized:
            continue
        key = pack_key(spec)
        if key is not None and single_device is None:
            single_device = _single_device_plan()
        if key is not None and single_device is not None:
            packs.setdefault(key, []).append(index)
            continue
        backup = None if checkpoint_dir is None else os.path.join(checkpoint_dir, str(index))
        results[index] = _recorded(
            lambda d=datas[index], s=spec, seed=seeds[index], b=backup: _train_alone(
                d, kind, task, n_classes, s, seed, b, error_score),
            datas[index], task, n_classes, spec, error_score)
    for number, members in enumerate(packs.values()):
        folder = None if checkpoint_dir is None else os.path.join(checkpoint_dir,
                                                                   f"pack-{number}")
        for index, result in zip(members, _train_pack(
                [datas[i] for i in members], [specs[i] for i in members],
                [seeds[i] for i in members], kind, task, n_classes, single_device, folder,
                error_score, [continue_from[i] for i in members], keep_state), strict=True):
            results[index] = result
    folder = None if checkpoint_dir is None else os.path.join(checkpoint_dir, "vmapped")
    for index, result in zip(vectorized, _train_vectorized(
            [datas[i] for i in vectorized], [specs[i] for i in vectorized],
            [seeds[i] for i in vectorized], kind, task, n_classes, folder, error_score),
            strict=True):
        results[index] = result
    return results


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


# Stacked steps below this many multiply-adds (all members' batches) run faster on one thread.
SMALL_STEP_MACS = 5e7


def _small_steps_single_threaded(specs: list[dict], datas: list[FoldData]) -> None:
    """Give TensorFlow one thread per op when every model packs and their steps are small.

    A small stacked step (32 rows of a few narrow layers per member) is over before a second
    thread has picked up its share: measured on the 2-core reference machine, a pack of 15
    models of two 128-unit layers trained in 10.3 s on one thread against 12.9 s on two, and
    two such tasks side by side (as kfp.local runs them) finished 10% sooner. Set through
    TensorFlow's own variables before it starts, only where they are not set already.
    """
    import sys

    from foldwise.components.core.costs import padded_widths, step_macs
    from foldwise.components.core.packed import pack_key

    if "tensorflow" in sys.modules or not specs or any(pack_key(s) is None for s in specs):
        return
    features = max(data.x_train.shape[1] for data in datas)
    macs = step_macs(len(specs), max(int(s["batch_size"]) for s in specs),
                     padded_widths(specs), features)
    if macs < SMALL_STEP_MACS:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


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


def _vectorizable(spec: dict) -> bool:
    return spec.get("estimator") == "keras_builder" and not spec.get("mixed_precision")


def _jax_backend() -> bool:
    from foldwise.components.core.vmapped import ready

    return ready()


def _train_vectorized(datas, specs, seeds, kind, task, n_classes, checkpoint_dir,
                      error_score) -> list[FoldResult]:
    """Users' builders' models under ``jax.vmap`` (``core.vmapped``), failures kept apart.

    A model whose building fails is recorded as failed; when training them together
    raises, each is built and trained again on its own, its failure recorded alone.
    """
    results: list[FoldResult | None] = [None] * len(datas)
    prepared = []
    for index, (data, spec, seed) in enumerate(zip(datas, specs, seeds, strict=True)):
        try:
            prepared.append((index, _vectorized_member(data, kind, n_classes, spec, seed)))
        except Exception as err:
            if error_score == "raise":
                raise
            results[index] = failed_result(data, task, n_classes, spec, describe_error(err),
                                           0.0, error_score)
    if len(prepared) > 1:
        try:
            for (index, _), result in zip(prepared, _fit_vectorized(
                    [m for _, m in prepared], [datas[i] for i, _ in prepared],
                    [specs[i] for i, _ in prepared], kind, task, n_classes, checkpoint_dir,
                    error_score), strict=True):
                results[index] = result
            return results
        except Exception as err:
            if error_score == "raise":
                raise
            logging.getLogger(__name__).warning(
                "training %d models vectorized failed (%s): training them one by one",
                len(prepared), describe_error(err))
            prepared = [(i, _vectorized_member(datas[i], kind, n_classes, specs[i], seeds[i]))
                        for i, _ in prepared]
    for index, member in prepared:
        folder = None if checkpoint_dir is None else os.path.join(checkpoint_dir, str(index))
        results[index] = _recorded(
            lambda m=member, i=index, f=folder: _fit_vectorized(
                [m], [datas[i]], [specs[i]], kind, task, n_classes, f, error_score)[0],
            datas[index], task, n_classes, specs[index], error_score)
    return results


def _vectorized_member(data: FoldData, kind: str, n_classes: int | None, spec: dict,
                       seed: int):
    """A built model and its rows, ready for ``core.vmapped`` (with its target handling)."""
    import json

    from foldwise.components.core.estimators import KERAS_BUILDER, prepare_builder
    from foldwise.components.core.vmapped import Member, architecture_key

    target_state = KERAS_BUILDER.target_scaling(data.y_train, kind, spec)
    model, form, (x_fit, y_fit, x_stop, y_stop) = prepare_builder(
        data, kind, n_classes, spec, seed, target_state)
    config = json.dumps({k: v for k, v in spec.items() if k != "builder"}, sort_keys=True,
                        default=str)
    from foldwise.components.core.builders import fit_targets

    x_test = y_test = None
    if len(data.y_validation):
        x_test = data.x_validation.astype("float32")
        y_test = fit_targets(data.y_validation, form, n_classes, target_state)
    member = Member(model, x_fit.astype("float32"), y_fit,
                    None if x_stop is None else x_stop.astype("float32"), y_stop, seed, spec,
                    architecture_key(model, spec, config), x_test, y_test)
    return member, form, target_state


def _fit_vectorized(prepared, datas, specs, kind, task, n_classes, checkpoint_dir,
                    error_score) -> list[FoldResult]:
    import jax

    from foldwise.components.core.builders import user_values
    from foldwise.components.core.vmapped import ENGINE, fit_members

    trained = fit_members([member for member, _, _ in prepared],
                          predict=[data.x_validation.astype("float32") for data in datas],
                          checkpoint_dir=checkpoint_dir)
    results = []
    for (member, form, target_state), data, spec, done in zip(prepared, datas, specs, trained,
                                                               strict=True):
        devices = {"device": jax.default_backend(), "strategy": ENGINE, "replicas": 1,
                   "precision": "float32", "backend": "jax", "packed": done.packed}
        if done.resumed_from_epoch:
            devices["resumed_from_epoch"] = done.resumed_from_epoch
        results.append(_scored(data, task, n_classes, spec,
                               Fitted(member.model, done.history, done.fit_time, devices),
                               target_state, user_values(done.output, form, target_state),
                               0.0, error_score))
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


def _train_pack(datas, specs, seeds, kind, task, n_classes, plan, checkpoint_dir,
                error_score, initial=None, keep_state=False) -> list[FoldResult]:
    """A pack's results; member by member when the pack as a whole raises (failures kept)."""
    initial = initial or [None] * len(datas)
    if len(datas) > 1:
        try:
            return _fit_pack(datas, specs, seeds, kind, task, n_classes, plan, checkpoint_dir,
                             error_score, initial, keep_state)
        except Exception as err:
            if error_score == "raise":
                raise
            logging.getLogger(__name__).warning(
                "training %d models packed failed (%s): training them one by one",
                len(datas), describe_error(err))
    results = []
    for index, (data, spec, seed) in enumerate(zip(datas, specs, seeds, strict=True)):
        folder = checkpoint_dir
        if checkpoint_dir is not None and len(datas) > 1:
            folder = os.path.join(checkpoint_dir, f"member-{index}")
        results.append(_recorded(
            lambda d=data, s=spec, seed=seed, f=folder, i=initial[index]: _fit_pack(
                [d], [s], [seed], kind, task, n_classes, plan, f, error_score, [i],
                keep_state)[0],
            data, task, n_classes, spec, error_score))
    return results


def _fit_pack(datas, specs, seeds, kind, task, n_classes, plan, checkpoint_dir,
              error_score, initial=None, keep_state=False) -> list[FoldResult]:
    from foldwise.components.core.packed import Stream, fit_packed

    streams, states = [], []
    for data, spec, seed in zip(datas, specs, seeds, strict=True):
        target_state = KERAS.target_scaling(data.y_train, kind, spec)
        x_fit, y_fit, x_stop, y_stop = keras_fit_rows(data, kind, n_classes, spec, seed,
                                                      target_state)
        x_test, y_test = (keras_test_rows(data, kind, n_classes, target_state)
                          if len(data.y_validation) else (None, None))
        streams.append(Stream(x_fit.astype("float32"), y_fit, None if x_stop is None else
                              x_stop.astype("float32"), y_stop, seed, spec, x_test, y_test))
        states.append(target_state)
    given = initial if initial and all(s is not None for s in initial) else None
    packed = fit_packed(streams, task=task, n_classes=n_classes, checkpoint_dir=checkpoint_dir,
                        predict=[data.x_validation for data in datas], initial=given,
                        keep_state=keep_state)
    predicted = packed.predict_time / len(streams)  # the pack's times, shared out evenly
    devices = {**plan, "packed": len(streams)}
    if packed.resumed_from_epoch:
        devices["resumed_from_epoch"] = packed.resumed_from_epoch
    if given:
        devices["continued_from_epoch"] = int(given[0]["epochs"])
    share = packed.fit_time / len(streams)
    results = [_scored(data, task, n_classes, spec, Fitted(model, history, share, devices),
                       state, keras_user_values(raw, kind, state), predicted, error_score)
               for data, spec, model, history, state, raw in zip(
                   datas, specs, packed.models, packed.histories, states, packed.outputs,
                   strict=True)]
    for result, member in zip(results, packed.states, strict=False):
        result.state = member
    return results


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
