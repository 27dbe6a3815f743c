"""Comparing configurations over folds.

The Nadeau-Bengio corrected paired t-test and the one-standard-error rule.
"""

from __future__ import annotations

import math

import numpy as np

from foldwise.components.core.errors import FoldwiseError


def corrected_ttest(differences, n_train: float, n_test: float) -> tuple[float, float]:
    """Nadeau and Bengio's corrected resampled t-test of per-fold score differences.

    Args:
        differences: ``score_a - score_b`` on each fold both were scored on.
        n_train: Training rows per fold (mean over the folds).
        n_test: Validation rows per fold (mean over the folds).

    Returns:
        ``(t, p)``: the statistic and the one-sided p-value that ``a`` is no better than
        ``b`` (small ``p``: ``a`` is better), with ``K - 1`` degrees of freedom. NaN when it
        cannot be computed: fewer than two folds, or identical differences on every fold.
    """
    from scipy import special  # Student's t CDF; scipy.stats would take 0.6 s to import

    diffs = np.asarray(differences, dtype="float64")
    diffs = diffs[np.isfinite(diffs)]
    k = len(diffs)
    if k < 2 or n_train <= 0:
        return math.nan, math.nan
    variance = float(np.var(diffs, ddof=1))
    corrected = variance * (1.0 / k + n_test / n_train)
    if not corrected > 0:
        return math.nan, math.nan
    t = float(np.mean(diffs)) / math.sqrt(corrected)
    return t, float(special.stdtr(k - 1, -t))  # the survival function at t


def _mean(values) -> float:
    array = np.asarray(values, dtype="float64")
    return float(np.mean(array)) if len(array) and np.all(np.isfinite(array)) else math.nan


def one_standard_error(means, stds, folds: int, complexity, higher_is_better: bool = True,
                       correction: float = 0.0) -> int:
    """The simplest configuration within one standard error of the best (Breiman's rule).

    Args:
        means: Each configuration's mean score (NaN for a failed one).
        stds: Their standard deviations over the folds, as ``std_test_*`` holds them
            (``ddof=0``).
        folds: Number of folds the means are over. The standard error of the best mean is
            its folds' sample standard deviation over ``sqrt(K)``: ``std / sqrt(K - 1)``.
        complexity: Sort keys, simplest first (among equally simple configurations, the
            higher mean; then the one listed first).
        higher_is_better: Whether a larger score is better.
        correction: Nadeau and Bengio's ``n_test / n_train`` where the folds' scores are not
            independent enough for ``1 / K`` alone: repeated K-fold, whose ``K * R`` scores
            share their rows. The standard error is then the sample standard deviation times
            ``sqrt(1 / (K * R) + n_test / n_train)``, as :func:`corrected_ttest` weighs it.

    Returns:
        The chosen configuration's position.

    Raises:
        FoldwiseError: No configuration has a finite mean.
    """
    sign = 1.0 if higher_is_better else -1.0
    means = np.asarray(means, dtype="float64") * sign
    within = within_one_standard_error(means, stds, folds, correction)
    return min(within, key=lambda i: (complexity[i], -means[i], i))


def within_one_standard_error(means, stds, folds: int, correction: float = 0.0) -> list[int]:
    """The positions whose mean is at least the best mean minus the best's standard error.

    Greater is better; the standard error is ``std / sqrt(K - 1)`` (as
    :func:`one_standard_error` reads it), with ``correction`` the sample standard deviation
    times ``sqrt(1 / K + correction)``.

    Raises:
        FoldwiseError: No configuration has a finite mean.
    """
    means = np.asarray(means, dtype="float64")
    finite = np.isfinite(means)
    if not finite.any():
        raise FoldwiseError("no configuration has a finite mean score to choose from")
    best = int(np.nanargmax(np.where(finite, means, -np.inf)))
    std = float(np.asarray(stds, dtype="float64")[best])
    sample_std = std * math.sqrt(folds / max(1, folds - 1))  # std_test_* is ddof=0
    threshold = means[best] - sample_std * math.sqrt(1.0 / max(1, folds) + correction)
    return [i for i in range(len(means)) if finite[i] and means[i] >= threshold - 1e-12]

