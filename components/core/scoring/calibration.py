"""Whether a classifier's probabilities mean what they say: Brier, ECE, reliability curve.

From out-of-fold probabilities.

Two classes: the positive class's probability against how often the positive class occurs.
More classes: the top label's probability (the model's confidence) against how often the top
label is right. Rows are put in :data:`BINS` equal-width bins of that probability; the
expected calibration error (ECE) is the rows' share-weighted mean of |observed − predicted|
over the bins. The Brier score is scikit-learn's ``brier_score_loss`` (multi-class: the mean
over rows of the squared error summed over the classes).
"""

from __future__ import annotations

import numpy as np

from foldwise.components.core.jsonio import finite_float

BINS = 10


def calibration(y_true, proba, bins: int = BINS) -> dict:
    """The Brier score, the ECE and the reliability curve of ``proba``.

    Args:
        y_true: Each row's class, as its column in ``proba`` (0 .. k-1).
        proba: One probability per class per row.
        bins: Equal-width bins of the probability read.

    Returns:
        ``{"brier", "ece", "read": "positive class" | "top label", "bins": [{"predicted",
        "observed", "rows"}, ...]}``, empty bins left out; a row without finite
        probabilities is left out of all of it.
    """
    from sklearn.metrics import brier_score_loss

    y_true = np.asarray(y_true, dtype="int64")
    proba = np.asarray(proba, dtype="float64")
    keep = np.isfinite(proba).all(axis=1)
    y_true, proba = y_true[keep], proba[keep]
    if not len(y_true):
        return {"brier": None, "ece": None, "read": None, "bins": []}
    classes = proba.shape[1]
    if classes == 2:
        read, predicted, hit = "positive class", proba[:, 1], y_true == 1
        brier = brier_score_loss(y_true, predicted, labels=[0, 1])
    else:
        read = "top label"
        predicted, hit = proba.max(axis=1), proba.argmax(axis=1) == y_true
        brier = brier_score_loss(y_true, proba, labels=list(range(classes)))
    which = np.minimum((predicted * bins).astype("int64"), bins - 1)
    curve, ece = [], 0.0
    for index in range(bins):
        inside = which == index
        if not inside.any():
            continue
        mean_predicted, observed = float(predicted[inside].mean()), float(hit[inside].mean())
        curve.append({"predicted": mean_predicted, "observed": observed,
                      "rows": int(inside.sum())})
        ece += inside.mean() * abs(observed - mean_predicted)
    return {"brier": finite_float(brier), "ece": finite_float(ece), "read": read, "bins": curve}
