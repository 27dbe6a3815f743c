"""Choosing among configurations: halving schedules, racing, and how sure the choice is.

- :func:`halving_schedule`: the rungs of scikit-learn's ``Halving*SearchCV`` (resources and
  candidates per iteration) for the same numbers, with folds (or epochs) as the resource.
- :func:`survivors`: who goes on to the next rung: the best ``ceil(n / factor)`` (halving), or
  everyone a paired test over the folds scored so far does not call worse than the leader
  (racing).
- :func:`corrected_ttest`: Nadeau and Bengio's corrected resampled t-test of two
  configurations' per-fold scores: K-fold scores share training rows, so the plain paired
  t-test's variance is too small; it is inflated by ``1/K + n_test/n_train``.
- :func:`one_standard_error`: the simplest configuration whose mean score is within one
  standard error of the best's (Breiman et al.'s rule for choosing among CV estimates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.scoring.stats import _mean, corrected_ttest

RESOURCES = options.choices("resource")
ELIMINATIONS = options.choices("elimination")


@dataclass(frozen=True)
class Schedule:
    """A successive-halving run's rungs, as scikit-learn's fitted attributes name them.

    Attributes:
        n_resources: Resources (folds, or epochs) of each rung.
        n_candidates: Candidates each rung starts with (racing may keep more than planned;
            the later rungs' numbers are then the most there can be).
        min_resources: ``min_resources_``.
        max_resources: ``max_resources_``.
        n_possible_iterations: Rungs the resources allow.
        n_required_iterations: Rungs needed to end with one candidate.
    """

    n_resources: list[int]
    n_candidates: list[int]
    min_resources: int
    max_resources: int
    n_possible_iterations: int
    n_required_iterations: int

    @property
    def n_iterations(self) -> int:
        """``n_iterations_``: the number of rungs."""
        return len(self.n_resources)

    def as_dict(self) -> dict:
        """JSON of the schedule (what the plan and the summary record)."""
        return {"n_resources": self.n_resources, "n_candidates": self.n_candidates,
                "min_resources": self.min_resources, "max_resources": self.max_resources,
                "n_possible_iterations": self.n_possible_iterations,
                "n_required_iterations": self.n_required_iterations,
                "n_iterations": self.n_iterations}


def halving_schedule(n_candidates: int, factor: float, min_resources: int | str,
                     max_resources: int, aggressive_elimination: bool = False) -> Schedule:
    """The rungs scikit-learn's ``HalvingGridSearchCV`` runs for these numbers.

    Args:
        n_candidates: Candidates of the first rung.
        factor: Each rung keeps ``ceil(n / factor)`` candidates and gives them ``factor``
            times the resources.
        min_resources: Resources of the first rung, or ``"exhaust"`` (the largest that
            still lets the last rung use close to ``max_resources``) or ``"smallest"`` (1).
        max_resources: The most any candidate gets (the folds; the epochs).
        aggressive_elimination: Rerun the first rung's resources until few enough candidates
            are left to end with one.

    Raises:
        FoldwiseError: Numbers the schedule cannot use (the message names them).
    """
    if not (isinstance(factor, (int, float)) and factor > 1):
        raise FoldwiseError(f"factor must be a number above 1, got {factor!r}")
    if int(n_candidates) < 1:
        raise FoldwiseError("successive halving needs at least one candidate")
    max_resources = int(max_resources)
    smallest = 1
    if min_resources in ("smallest", "exhaust"):
        minimum = smallest
    else:
        minimum = int(min_resources)
        if minimum < 1:
            raise FoldwiseError(f"min_resources must be at least 1, got {min_resources!r}")
    if minimum > max_resources:
        raise FoldwiseError(f"min_resources ({minimum}) is above max_resources "
                            f"({max_resources}): lower it or raise max_resources")
    n_required = 1 + int(math.floor(math.log(int(n_candidates), factor)))  # as scikit-learn
    if min_resources == "exhaust":
        minimum = max(minimum, int(max_resources // factor ** (n_required - 1)))
    n_possible = 1 + int(math.floor(math.log(max_resources // minimum, factor)))
    n_iterations = n_required if aggressive_elimination else min(n_possible, n_required)
    resources, candidates, remaining = [], [], int(n_candidates)
    for rung in range(n_iterations):
        power = max(0, rung - n_required + n_possible) if aggressive_elimination else rung
        resources.append(min(int(factor ** power * minimum), max_resources))
        candidates.append(remaining)
        remaining = math.ceil(remaining / factor)
    return Schedule(resources, candidates, minimum, max_resources, n_possible, n_required)


def survivors(scores: dict[str, list[float]], keep: int, higher_is_better: bool = True, *,
              elimination: str = "halving", confidence: float = 0.95, n_train: float = 1.0,
              n_test: float = 1.0) -> list[str]:
    """The candidates that go on to the next rung, in the order given.

    Args:
        scores: Candidate id → its scores on the folds scored so far, the same folds for
            every candidate, in one order (NaN where it failed).
        keep: How many halving keeps (``ceil(n / factor)``).
        higher_is_better: Whether a larger score is better (a loss is negated beforehand).
        elimination: ``halving``: the ``keep`` best by mean score (ties to the one listed
            first; a failed candidate is last); ``racing``: every candidate the corrected
            t-test does not find worse than the leader at ``confidence``.
        confidence: Racing's confidence that a dropped candidate is worse than the leader.
        n_train: Training rows per fold (racing).
        n_test: Validation rows per fold (racing).
    """
    ids = list(scores)
    sign = 1.0 if higher_is_better else -1.0
    means = {cid: _mean(scores[cid]) * sign for cid in ids}
    order = sorted(ids, key=lambda cid: -means[cid] if math.isfinite(means[cid]) else math.inf)
    if elimination == "halving":
        kept = set(order[:max(1, keep)])
        return [cid for cid in ids if cid in kept]
    if elimination != "racing":
        raise FoldwiseError(f"elimination must be one of {', '.join(ELIMINATIONS)}, got "
                            f"{elimination!r}")
    leader = order[0]
    kept = []
    for cid in ids:
        if not math.isfinite(means[cid]):
            continue  # a failed candidate never goes on
        if cid == leader:
            kept.append(cid)
            continue
        diffs = sign * (np.asarray(scores[leader], float) - np.asarray(scores[cid], float))
        _, p = corrected_ttest(diffs, n_train, n_test)
        if not (math.isfinite(p) and p < 1.0 - confidence):
            kept.append(cid)
    return kept

