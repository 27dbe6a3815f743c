"""A train task's trials: each of its configurations on each of its folds, trained and saved.

The ``train`` component resolves its artifacts, calls :func:`run_trials` and writes what it
returns. A trial that fails (its training raises or diverges) is data, not a crash: it is
recorded with NaN scores and its ``fit_error``, and the task goes on, so the retry policy of
training steps (meant for lost nodes) never retries a deterministic failure. A fold table
handed over for another fold, or parameters of another configuration, still raise: the
orchestrator mixed up inputs.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from foldwise.components.core.data.fold_data import fold_file, read_fold_table, split_fold
from foldwise.components.core.data.table import file_sha256
from foldwise.components.core.jsonio import class_count
from foldwise.components.core.models.builder_code import lean, with_source
from foldwise.components.core.scoring import metrics as scoring
from foldwise.components.core.training import resume
from foldwise.components.core.training.fit import (
    check_trial,
    predictions_frame,
    save_model,
    train_folds,
)
from foldwise.components.core.training.vmapped import load_state, save_state, select_backend

CHECKPOINT_FOLDER = "checkpoint"
STATE_FILE = "state.npz"  # a model's state to train on from (halving by epochs)
SUMMARY_TAGS = ("rung", "round", "n_resources", "resource")


@dataclass
class TrialsOutput:
    """What a train task writes and logs.

    Attributes:
        summaries: One entry per (configuration, fold), in that order: ``config_id``,
            ``params``, ``fold``, ``scores`` (NaN where the trial failed), ``fit_error``
            (empty when none), ``fit_time``, ``score_time``, ``epochs_run``, ``n_train``,
            ``n_validation``, ``devices``, ``predictions`` and ``history`` (the URIs given)
            and ``model`` (the URI of its model's folder).
        histories: ``{config_id: {fold: per-epoch losses}}`` (``{}`` for a trial that raised).
        predictions: Out-of-fold predictions: ``config_id``, ``row``, ``fold``, ``y_true``
            and ``prediction`` or ``proba_<class>`` columns (NaN where a trial failed).
        metrics: Finite scores by ``<config_id>_fold<k>_<metric>``, for the KFP UI.
        devices: What the first trial that trained was trained on (``{}`` if none did).
        class_labels: The classes as strings (classification), else ``None``.
        confusion_matrix: Over these folds, of the first configuration that trained on every
            one of them (classification); ``None`` otherwise.
        records: This task's trials by reuse key (``core.training.resume``): the caller writes them
            with ``resume.write_record`` only once the history and predictions are written,
            so a run stopped in between leaves no record pointing at missing files.
    """

    summaries: list[dict]
    histories: dict
    predictions: pd.DataFrame
    metrics: dict[str, float]
    devices: dict
    class_labels: list[str] | None
    confusion_matrix: list | None
    records: dict = field(default_factory=dict)


def checkpoint_dir(model_dir: str) -> str:
    """Where a task keeps the state of unfinished training under its model folder."""
    return os.path.join(model_dir, CHECKPOINT_FOLDER)


def run_trials(fold_data: str, schema: dict, configs: list[dict], folds: list, *, seed: int,
               model_dir: str, predictions_uri: str = "", history_uri: str = "",
               builder: dict | None = None, tags: dict | None = None, model_uri: str = "",
               read_bytes=None, tensorflow: bool = False) -> TrialsOutput:
    """Train a fresh model per (configuration, fold), save each, and summarize them.

    Args:
        fold_data: Folder of per-fold model-ready tables (``fold-<k>.parquet``).
        schema: The preprocess step's schema.
        configs: ``[{"config_id", "params", "searched"}, ...]``; each id is checked against
            its params; ``searched`` (the grid's values, optional) is passed on.
        folds: Validation folds (whole floats accepted, as KFP hands list items over); each
            is checked against the fold recorded in its table.
        seed: Seed of weights, shuffling and dropout.
        model_dir: Folder receiving ``<config_id>/fold-<k>/`` per model (see
            :func:`~foldwise.components.core.training.fit.save_model`) and, while training, the
            checkpoint (:func:`checkpoint_dir`; remove it once the outputs are written).
        predictions_uri: Where the predictions will be, recorded in each summary.
        history_uri: Where the histories will be, recorded in each summary.
        builder: A user's builder with its source (the run's fixed model options carry it;
            configurations carry its reference only: ``core.models.builder_code.with_source``).
        tags: A halving rung's: ``rung``, ``n_resources`` and ``resource`` are added to every
            summary; with ``resource="epochs"``, ``epochs`` replaces each configuration's,
            ``continue`` maps ``"<config_id>|<fold>"`` to the URI of the state to train on
            from (read with ``read_bytes``), and each model's state is saved beside it
            (:data:`STATE_FILE`), its URI under ``model_uri`` in the summary's ``state``.
        model_uri: The URI of ``model_dir`` (where the next rung finds the states).
        read_bytes: Reads the file a URI names (local path or ``gs://``).
        tensorflow: Train under Keras' TensorFlow backend, through Keras' ``fit`` (the plan
            found that a configuration's builder runs TensorFlow operations); otherwise
            every Keras model trains in the one engine under JAX, and TensorFlow is never
            imported.

    Raises:
        RuntimeError: A table of another fold, or parameters of another configuration.
    """
    # Before Keras is first imported: JAX, the one engine's, unless the plan found that a
    # user's builder runs TensorFlow operations (``core.models.tensorflow_standin``).
    select_backend(tensorflow=bool(tensorflow))
    task, target, classes = schema["task"], schema["target"], schema["classes"]
    n_classes = class_count(schema)
    folds = [int(fold) for fold in folds]
    tags = tags or {}
    by_epochs = tags.get("resource") == "epochs"
    split, table_folds = {}, {}  # each fold split once, its rows shared by configurations
    for fold in folds:  # one table in memory at a time
        table, table_folds[fold], features = read_fold_table(fold_file(fold_data, fold))
        split[fold] = split_fold(table, fold, target, features, schema)
        del table
    trials, datas, specs = [], [], []
    for config in configs:
        for fold in folds:
            params = with_source(config["params"], builder)
            spec = check_trial(config["config_id"], fold, params, table_folds[fold], task,
                               n_classes)
            specs.append({**spec, "epochs": int(tags["epochs"])} if by_epochs else spec)
            datas.append(split[fold])
            trials.append((config["config_id"], fold))
    continue_from = [_state(tags.get("continue", {}).get(f"{cid}|{fold}"), read_bytes)
                     for cid, fold in trials] if by_epochs else None

    digests = {fold: file_sha256(fold_file(fold_data, fold)) for fold in folds}  # once each
    keys = [resume.trial_key(spec, seed, fold, digests[fold])
            for spec, (_, fold) in zip(specs, trials, strict=True)]
    previous = (resume.previous_trials(model_dir)
                if resume.resuming() or resume.warm_roots() else {})
    if resume.resuming():  # a pack stopped mid-training goes on from its last epoch
        resume.take_over_checkpoint(model_dir, CHECKPOINT_FOLDER)
    todo = [index for index, key in enumerate(keys) if key not in previous]
    results: list = [None] * len(trials)
    for index, result in zip(todo, train_folds(
            [datas[i] for i in todo], task=task, n_classes=n_classes,
            specs=[specs[i] for i in todo], seeds=[seed] * len(todo),
            checkpoint_dir=checkpoint_dir(model_dir), error_score=float("nan"),
            continue_from=None if continue_from is None else [continue_from[i] for i in todo],
            keep_state=by_epochs), strict=True):
        results[index] = result
    for index, key in enumerate(keys):
        if results[index] is None:  # finished by an earlier run of this run folder
            results[index] = resume.taken_over(previous[key], datas[index].rows_validation,
                                              classes)

    histories: dict = {}
    frames, summaries, logged = [], [], {}
    searched = {c["config_id"]: c.get("searched", {}) for c in configs}
    records = {}
    for (config_id, fold), data, spec, result, key in zip(trials, datas, specs, results, keys,
                                                          strict=True):
        folder = os.path.join(model_dir, config_id, f"fold-{fold}")
        if key in previous and result.devices.get("resumed"):
            shutil.copytree(resume.model_folder(previous[key]), folder, dirs_exist_ok=True)
        else:
            save_model(result, folder)
        state_uri = ""
        if result.state is not None:
            save_state(result.state, os.path.join(folder, STATE_FILE))
            state_uri = f"{model_uri.rstrip('/')}/{config_id}/fold-{fold}/{STATE_FILE}"
        histories.setdefault(config_id, {})[str(fold)] = result.history
        frame = predictions_frame(data, fold, result.prediction, classes)
        frame.insert(0, "config_id", config_id)
        frames.append(frame)
        logged.update({f"{config_id}_fold{fold}_{name}": float(value)
                       for name, value in result.scores.items() if math.isfinite(value)})
        summaries.append({
            "config_id": config_id, "params": lean(spec),
            # the grid's values in their checked form (KFP hands every number over as float)
            "searched": {k: spec.get(k, v) for k, v in searched[config_id].items()},
            "fold": fold, "scores": result.scores,
            "fit_error": result.fit_error, "fit_time": result.fit_time,
            "score_time": result.score_time, "epochs_run": result.epochs_run,
            "n_train": int(len(data.y_train)), "n_validation": int(len(data.y_validation)),
            "devices": result.devices, "predictions": predictions_uri, "history": history_uri,
            "model": f"{(model_uri or model_dir).rstrip('/')}/{config_id}/fold-{fold}",
            "n_parameters": _parameter_count(result.model),
            **{k: tags[k] for k in SUMMARY_TAGS if k in tags},
            **({"state": state_uri} if state_uri else {}),
        })
        records[key] = {**{k: summaries[-1][k] for k in (
            "config_id", "fold", "scores", "fit_error", "fit_time", "score_time",
            "epochs_run", "devices")}, "estimator": result.estimator,
            "folder": f"{config_id}/fold-{fold}"}
    loaded = sys.modules.get("tensorflow") is not None  # TensorFlow imported by this task
    operations = {c["config_id"]: c["tensorflow"] for c in configs if c.get("tensorflow")}
    for summary in summaries:
        summary["devices"] = {**summary["devices"], "tensorflow_loaded": loaded}
        if summary["config_id"] in operations:  # why it trained through TensorFlow's fit
            summary["devices"]["tensorflow_operation"] = operations[summary["config_id"]]
    trained = [result.devices for result in results if result.devices]
    matrix = None
    if task == "classification":
        matrix = _first_confusion_matrix(trials, datas, results, n_classes)
    return TrialsOutput(summaries, histories, pd.concat(frames, ignore_index=True), logged,
                        trained[0] if trained else {},
                        [str(c) for c in classes] if classes else None, matrix, records)


def _state(uri: str | None, read_bytes) -> dict | None:
    """The model state at ``uri`` (``core.training.vmapped.load_state``), or ``None``."""
    if not uri:
        return None
    import io


    return load_state(io.BytesIO(read_bytes(uri) if read_bytes else Path(uri).read_bytes()))


def _parameter_count(model) -> int | None:
    """A Keras model's trainable weights (what the one-standard-error rule calls simpler)."""
    try:
        return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    except (AttributeError, TypeError):
        return None  # no model (the trial raised), or scikit-learn's MLP


def _first_confusion_matrix(trials, datas, results, n_classes) -> list | None:
    """The confusion matrix of the first configuration with no failed fold, over its folds."""
    by_config: dict[str, list[int]] = {}
    for index, (config_id, _) in enumerate(trials):
        by_config.setdefault(config_id, []).append(index)
    for indices in by_config.values():
        if any(results[i].failed for i in indices):
            continue
        return scoring.confusion_matrix(
            np.concatenate([datas[i].y_validation for i in indices]),
            np.concatenate([results[i].prediction for i in indices]), n_classes)
    return None
