"""KFP component: train a fresh Keras model for one (configuration, fold) trial."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from foldwise.components.image import component


@component
def train(
    fold_data: Input[Dataset],
    schema: Input[Artifact],
    config_id: str,
    fold: int,
    params: dict,
    model: Output[Model],
    history: Output[Artifact],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    seed: int = 0,
) -> str:
    """Fit a fresh model on rows outside ``fold``, predict and score the rows of ``fold``.

    Args:
        fold_data: Folder of per-fold model-ready tables (``fold-<k>.parquet``).
        schema: The preprocess step's schema.
        config_id: The configuration's id; checked against ``params``.
        fold: Validation fold; checked against the fold recorded in its table.
        params: Model, optimizer and training parameters (see ``core.model``).
        model: Folder holding ``model.keras`` (or ``mlp.json`` for the scikit-learn
            baseline) and ``target_scaling.json``.
        history: JSON per-epoch losses.
        predictions: Parquet out-of-fold predictions: ``row``, ``fold``, ``y_true`` and
            ``prediction`` (regression) or ``proba_<class>`` columns (classification).
        metrics: Scores of this trial for the KFP UI.
        classification_metrics: Confusion matrix of this trial (classification only).
        seed: Seed of weights, shuffling and dropout.

    Returns:
        JSON with ``config_id``, ``params``, ``fold``, ``scores``, ``fit_time``,
        ``score_time``, ``epochs_run``, ``n_train``, ``n_validation`` and the URIs of
        ``predictions`` and ``history`` (the aggregate step reads the best config's).
    """
    import json

    from foldwise.components.core import metrics as scoring
    from foldwise.components.core.fold_data import fold_file, read_fold_table
    from foldwise.components.core.jsonio import class_count, read_json, write_json
    from foldwise.components.core.training import (
        check_trial,
        predictions_frame,
        save_model,
        split_fold,
        train_fold,
    )

    described = read_json(schema.path)
    task, target, classes = described["task"], described["target"], described["classes"]
    n_classes = class_count(described)
    table, table_fold, features = read_fold_table(fold_file(fold_data.path, fold))
    spec = check_trial(config_id, fold, params, table_fold, task, n_classes)
    data = split_fold(table, fold, target, features)
    result = train_fold(data, task=task, n_classes=n_classes, spec=spec, seed=seed)

    save_model(result, model.path)
    write_json(history.path, result.history)
    predictions_frame(data, fold, result.prediction, classes).to_parquet(predictions.path,
                                                                         index=False)
    for name, value in result.scores.items():
        metrics.log_metric(name, value)
    metrics.metadata["trained_on"] = result.devices
    if task == "classification":
        classification_metrics.log_confusion_matrix(
            [str(c) for c in classes],
            scoring.confusion_matrix(data.y_validation, result.prediction, n_classes))
    return json.dumps({
        "config_id": config_id, "params": spec, "fold": fold, "scores": result.scores,
        "fit_time": result.fit_time, "score_time": result.score_time,
        "epochs_run": result.epochs_run, "n_train": int(len(data.y_train)),
        "n_validation": int(len(data.y_validation)), "devices": result.devices,
        "predictions": predictions.uri,
        "history": history.uri,
    })
