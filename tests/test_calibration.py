"""Calibration of out-of-fold probabilities: Brier score, expected calibration error, bins."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from foldwise.components.core.scoring.calibration import calibration


def draws(rows=20000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=rows)
    return p, (rng.uniform(size=rows) < p).astype(int)


def test_calibrated_probabilities_have_a_small_error_and_overconfident_ones_a_large_one():
    p, y = draws()
    honest = calibration(y, np.column_stack([1 - p, p]))
    assert honest["read"] == "positive class" and honest["ece"] < 0.02
    assert honest["brier"] == pytest.approx(brier_score_loss(y, p))
    for point in honest["bins"]:  # on the diagonal, within sampling noise
        assert abs(point["observed"] - point["predicted"]) < 0.05
    sharp = np.clip((p - 0.5) * 2 + 0.5, 0, 1)  # says 0 or 1 far more often than it is
    assert calibration(y, np.column_stack([1 - sharp, sharp]))["ece"] > 0.1


def test_several_classes_are_read_by_the_top_label():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1, 1, 1], size=4000)
    y = np.array([rng.choice(3, p=row) for row in proba])
    found = calibration(y, proba)
    assert found["read"] == "top label" and found["ece"] < 0.05
    assert found["brier"] == pytest.approx(
        np.mean(np.sum((proba - np.eye(3)[y]) ** 2, axis=1)))
    assert sum(b["rows"] for b in found["bins"]) == 4000
    assert all(b["predicted"] >= 1 / 3 - 1e-9 for b in found["bins"])  # a top label's


def test_rows_without_probabilities_are_left_out():
    proba = np.array([[0.2, 0.8], [np.nan, np.nan], [0.9, 0.1]])
    found = calibration([1, 0, 0], proba, bins=2)
    assert [b["rows"] for b in found["bins"]] == [1, 1]
    assert found["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.2)
    assert calibration([0], np.array([[np.nan, np.nan]])) == {
        "brier": None, "ece": None, "read": None, "bins": []}
