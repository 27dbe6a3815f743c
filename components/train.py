"""KFP component: train fresh models for configurations × folds, packed where they stack."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from foldwise.components.image import component


@component
def train(
    fold_data: Input[Dataset],
    schema: Input[Artifact],
    configs: list,
    folds: list,
    model: Output[Model],
    history: Output[Artifact],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    seed: int = 0,
) -> str:
    """Fit a fresh model per (configuration, fold) on the other folds' rows; score the fold.

    Models that stack (``core.packed``) are trained at once as one stacked model: the same
    models as one task each. The state after each finished epoch is kept under the ``model``
    output, so a task that was killed (a pre-empted node) and retried resumes from its last
    epoch and ends with the same models.

    Args:
        fold_data: Folder of per-fold model-ready tables (``fold-<k>.parquet``).
        schema: The preprocess step's schema.
        configs: ``[{"config_id", "params"}, ...]``: model, optimizer and training parameters
            (see ``core.model``); each id is checked against its parameters.
        folds: Validation folds; each checked against the fold recorded in its table.
        model: Folder with ``<config_id>/fold-<k>/`` per model, holding ``model.keras`` (or
            ``mlp.json`` for the scikit-learn baseline) and ``target_scaling.json``.
        history: JSON ``{config_id: {fold: per-epoch losses}}``.
        predictions: Parquet out-of-fold predictions: ``config_id``, ``row``, ``fold``,
            ``y_true`` and ``prediction`` (regression) or ``proba_<class>`` columns.
        metrics: Each model's scores (``<config_id>_fold<k>_<metric>``) for the KFP UI.
        classification_metrics: Confusion matrix of the first configuration over these folds
            (classification only).
        seed: Seed of weights, shuffling and dropout.

    Returns:
        JSON list, one entry per (configuration, fold): ``config_id``, ``params``, ``fold``,
        ``scores``, ``fit_time``, ``score_time``, ``epochs_run``, ``n_train``,
        ``n_validation``, ``devices`` and the URIs of ``predictions`` and ``history`` (the
        aggregate step reads the best configuration's part).
    """
    import json
    import os
    import shutil

    import numpy as np
    import pandas as pd

    from foldwise.components.core import metrics as scoring
    from foldwise.components.core.fold_data import fold_file, read_fold_table
    from foldwise.components.core.jsonio import class_count, read_json, write_json
    from foldwise.components.core.training import (
        check_trial,
        predictions_frame,
        save_model,
        split_fold,
        train_folds,
    )

    described = read_json(schema.path)
    task, target, classes = described["task"], described["target"], described["classes"]
    n_classes = class_count(described)
    folds = [int(fold) for fold in folds]  # KFP hands list items over as floats
    tables = {fold: read_fold_table(fold_file(fold_data.path, fold)) for fold in folds}
    trials, datas, specs = [], [], []
    for config in configs:
        for fold in folds:
            table, table_fold, features = tables[fold]
            specs.append(check_trial(config["config_id"], fold, config["params"], table_fold,
                                     task, n_classes))
            datas.append(split_fold(table, fold, target, features))
            trials.append((config["config_id"], fold))
    checkpoint = os.path.join(model.path, "checkpoint")
    results = train_folds(datas, task=task, n_classes=n_classes, specs=specs,
                          seeds=[seed] * len(trials), checkpoint_dir=checkpoint)

    histories: dict = {}
    frames, summaries = [], []
    for (config_id, fold), data, spec, result in zip(trials, datas, specs, results,
                                                     strict=True):
        save_model(result, os.path.join(model.path, config_id, f"fold-{fold}"))
        histories.setdefault(config_id, {})[str(fold)] = result.history
        frame = predictions_frame(data, fold, result.prediction, classes)
        frame.insert(0, "config_id", config_id)
        frames.append(frame)
        for name, value in result.scores.items():
            metrics.log_metric(f"{config_id}_fold{fold}_{name}", value)
        summaries.append({
            "config_id": config_id, "params": spec, "fold": fold, "scores": result.scores,
            "fit_time": result.fit_time, "score_time": result.score_time,
            "epochs_run": result.epochs_run, "n_train": int(len(data.y_train)),
            "n_validation": int(len(data.y_validation)), "devices": result.devices,
            "predictions": predictions.uri, "history": history.uri,
        })
    write_json(history.path, histories)
    pd.concat(frames, ignore_index=True).to_parquet(predictions.path, index=False)
    shutil.rmtree(checkpoint, ignore_errors=True)  # every output is written
    metrics.metadata["trained_on"] = results[0].devices
    if task == "classification":
        first = [i for i, (config_id, _) in enumerate(trials) if config_id == trials[0][0]]
        classification_metrics.log_confusion_matrix(
            [str(c) for c in classes],
            scoring.confusion_matrix(np.concatenate([datas[i].y_validation for i in first]),
                                     np.concatenate([results[i].prediction for i in first]),
                                     n_classes))
    return json.dumps(summaries)
