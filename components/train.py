"""KFP component: train a fresh Keras model on one fold and score it on that fold."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from foldwise.components.image import component


@component
def train(
    encoded: Input[Dataset],
    schema: Input[Artifact],
    fold: int,
    model_spec: dict,
    model: Output[Model],
    history: Output[Artifact],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    seed: int = 0,
) -> str:
    """Fit a fresh model on rows outside ``fold``, predict and score the rows of ``fold``.

    Args:
        encoded: The fold's model-ready table.
        schema: The preprocess step's schema.
        fold: Validation fold.
        model_spec: Model, optimizer and training parameters (see ``core.model``).
        model: Folder holding ``model.keras`` and ``target_scaling.json``.
        history: JSON per-epoch losses.
        predictions: Parquet out-of-fold predictions: ``row``, ``fold``, ``y_true`` and
            ``prediction`` (regression) or ``proba_<class>`` columns (classification).
        metrics: Scores of this fold for the KFP UI.
        classification_metrics: Confusion matrix of this fold (classification only).
        seed: Seed of weights, shuffling and dropout.

    Returns:
        JSON with ``config_id``, ``params``, ``fold``, ``scores``, ``fit_time``,
        ``score_time``, ``epochs_run``, ``n_train`` and ``n_validation``.
    """
    import json
    import os

    import pandas as pd

    from foldwise.components.core import metrics as scoring
    from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
    from foldwise.components.core.model import config_id, normalize_spec
    from foldwise.components.core.training import split_fold, train_fold

    with open(schema.path, encoding="utf-8") as handle:
        described = json.load(handle)
    task, target, classes = described["task"], described["target"], described["classes"]
    n_classes = len(classes) if classes else None
    spec = normalize_spec(model_spec, task, n_classes)
    table = pd.read_parquet(encoded.path)
    features = [c for c in table.columns if c not in (target, ROW_COLUMN, FOLD_COLUMN)]
    data = split_fold(table, fold, target, features)
    result = train_fold(data, task=task, n_classes=n_classes, spec=spec, seed=seed)

    os.makedirs(model.path, exist_ok=True)
    result.model.save(os.path.join(model.path, "model.keras"))
    with open(os.path.join(model.path, "target_scaling.json"), "w", encoding="utf-8") as handle:
        json.dump(result.target_scaling, handle)
    with open(history.path, "w", encoding="utf-8") as handle:
        json.dump(result.history, handle)
    out = pd.DataFrame({"row": data.rows_validation, "fold": fold, "y_true": data.y_validation})
    if task == "regression":
        out["prediction"] = result.prediction
    else:
        for index, label in enumerate(classes):
            out[f"proba_{label}"] = result.prediction[:, index]
    out.to_parquet(predictions.path, index=False)

    for name, value in result.scores.items():
        metrics.log_metric(name, value)
    if task == "classification":
        classification_metrics.log_confusion_matrix(
            [str(c) for c in classes],
            scoring.confusion_matrix(data.y_validation, result.prediction, n_classes))
    return json.dumps({
        "config_id": config_id(spec), "params": spec, "fold": fold, "scores": result.scores,
        "fit_time": result.fit_time, "score_time": result.score_time,
        "epochs_run": result.epochs_run, "n_train": int(len(data.y_train)),
        "n_validation": int(len(data.y_validation)),
    })
