"""Scores with scikit-learn's scorer names and signs (greater is better)."""

from __future__ import annotations

import math

import numpy as np

REGRESSION_METRICS = ("r2", "neg_mean_squared_error", "neg_root_mean_squared_error",
                      "neg_mean_absolute_error")


def _skm():
    """scikit-learn's metrics, imported only when a score is computed.

    The import takes about a second per process; the steps that only name metrics (the
    aggregate step of a regression, say) never pay for it.
    """
    from sklearn import metrics

    return metrics


def metric_names(task: str, n_classes: int | None) -> tuple[str, ...]:
    """The metrics reported for a task, in scikit-learn scorer names."""
    if task == "regression":
        return REGRESSION_METRICS
    auc = "roc_auc" if n_classes == 2 else "roc_auc_ovr"
    return ("accuracy", "balanced_accuracy", "f1_macro", "neg_log_loss", auc)


def default_scoring(task: str) -> str:
    """The metric configurations are ranked by unless the user picks another."""
    return "r2" if task == "regression" else "accuracy"


def score(task: str, y_true: np.ndarray, prediction: np.ndarray,
          n_classes: int | None = None) -> dict[str, float]:
    """Score predictions of one validation fold.

    Args:
        task: ``regression`` or ``classification``.
        y_true: True values, or class indices ``0..n_classes-1``.
        prediction: Predicted values (regression) or class probabilities of shape
            ``(rows, n_classes)`` (classification).
        n_classes: Number of classes.

    Returns:
        Metric name → value; a metric undefined on this fold (e.g. ROC AUC when the fold lacks
        a class) is NaN.
    """
    skm = _skm()
    if task == "regression":
        error = prediction - y_true
        mse = float(np.mean(error**2))
        return {
            "r2": float(skm.r2_score(y_true, prediction)),
            "neg_mean_squared_error": -mse,
            "neg_root_mean_squared_error": -math.sqrt(mse),
            "neg_mean_absolute_error": -float(np.mean(np.abs(error))),
        }
    labels = list(range(n_classes))
    predicted = prediction.argmax(axis=1)
    scores = {
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, predicted)),
        "f1_macro": float(skm.f1_score(y_true, predicted, average="macro", labels=labels,
                                       zero_division=0)),
        "neg_log_loss": -float(skm.log_loss(y_true, prediction, labels=labels)),
    }
    present = len(np.unique(y_true))
    if n_classes == 2:
        scores["roc_auc"] = (float(skm.roc_auc_score(y_true, prediction[:, 1]))
                             if present == 2 else float("nan"))
    else:
        scores["roc_auc_ovr"] = (
            float(skm.roc_auc_score(y_true, prediction, multi_class="ovr", labels=labels))
            if present == n_classes else float("nan")
        )
    return scores


def confusion_matrix(y_true: np.ndarray, prediction: np.ndarray, n_classes: int) -> list:
    """Confusion matrix (rows: true class, columns: predicted) as nested lists of ints."""
    skm = _skm()
    predicted = prediction.argmax(axis=1)
    matrix = skm.confusion_matrix(y_true, predicted, labels=list(range(n_classes)))
    return matrix.astype(int).tolist()


def roc_curve(y_true: np.ndarray, score_positive: np.ndarray) -> tuple[list, list, list]:
    """ROC curve points as plain lists; the first threshold (infinite in scikit-learn) is 1."""
    skm = _skm()
    fpr, tpr, thresholds = skm.roc_curve(y_true, score_positive)
    thresholds = np.minimum(thresholds, 1.0)
    return fpr.tolist(), tpr.tolist(), thresholds.tolist()
