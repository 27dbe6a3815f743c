"""KFP component: train fresh Keras models for one configuration on one or more folds."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from foldwise.components.image import component


@component
def train(
    fold_data: Input[Dataset],
    schema: Input[Artifact],
    config_id: str,
    folds: list,
    params: dict,
    model: Output[Model],
    history: Output[Artifact],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    seed: int = 0,
) -> str:
    """Fit a fresh model per fold in ``folds`` on the other folds' rows; score the fold's rows.

    Several folds are trained at once as one stacked model (``core.packed``): the same
    models as one task per fold. The state after each finished epoch is kept under the
    ``model`` output, so a task that was killed (a pre-empted node) and retried resumes from
    its last epoch and ends with the same models.

    Args:
        fold_data: Folder of per-fold model-ready tables (``fold-<k>.parquet``).
        schema: The preprocess step's schema.
        config_id: The configuration's id; checked against ``params``.
        folds: Validation folds; each checked against the fold recorded in its table.
        params: Model, optimizer and training parameters (see ``core.model``).
        model: Folder with one ``fold-<k>/`` per fold holding ``model.keras`` (or
            ``mlp.json`` for the scikit-learn baseline) and ``target_scaling.json``.
        history: JSON ``{fold: per-epoch losses}``.
        predictions: Parquet out-of-fold predictions: ``row``, ``fold``, ``y_true`` and
            ``prediction`` (regression) or ``proba_<class>`` columns (classification).
        metrics: Scores of each fold (``fold<k>_<metric>``) for the KFP UI.
        classification_metrics: Confusion matrix over these folds (classification only).
        seed: Seed of weights, shuffling and dropout.

    Returns:
        JSON list, one entry per fold: ``config_id``, ``params``, ``fold``, ``scores``,
        ``fit_time``, ``score_time``, ``epochs_run``, ``n_train``, ``n_validation``,
        ``devices`` and the URIs of ``predictions`` and ``history`` (the aggregate step reads
        the best configuration's).
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
    datas, specs = [], []
    for fold in folds:
        table, table_fold, features = read_fold_table(fold_file(fold_data.path, fold))
        specs.append(check_trial(config_id, fold, params, table_fold, task, n_classes))
        datas.append(split_fold(table, fold, target, features))
    checkpoint = os.path.join(model.path, "checkpoint")
    results = train_folds(datas, task=task, n_classes=n_classes, specs=specs,
                          seeds=[seed] * len(folds), checkpoint_dir=checkpoint)

    write_json(history.path, {str(fold): r.history for fold, r in zip(folds, results,
                                                                        strict=True)})
    frames, summaries = [], []
    for fold, data, spec, result in zip(folds, datas, specs, results, strict=True):
        save_model(result, os.path.join(model.path, f"fold-{fold}"))
        frames.append(predictions_frame(data, fold, result.prediction, classes))
        for name, value in result.scores.items():
            metrics.log_metric(f"fold{fold}_{name}", value)
        summaries.append({
            "config_id": config_id, "params": spec, "fold": fold, "scores": result.scores,
            "fit_time": result.fit_time, "score_time": result.score_time,
            "epochs_run": result.epochs_run, "n_train": int(len(data.y_train)),
            "n_validation": int(len(data.y_validation)), "devices": result.devices,
            "predictions": predictions.uri, "history": history.uri,
        })
    pd.concat(frames, ignore_index=True).to_parquet(predictions.path, index=False)
    shutil.rmtree(checkpoint, ignore_errors=True)  # every output is written
    metrics.metadata["trained_on"] = results[0].devices
    if task == "classification":
        classification_metrics.log_confusion_matrix(
            [str(c) for c in classes],
            scoring.confusion_matrix(np.concatenate([d.y_validation for d in datas]),
                                     np.concatenate([r.prediction for r in results]),
                                     n_classes))
    return json.dumps(summaries)
