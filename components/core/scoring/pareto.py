"""Several objectives: a score against what the model costs to serve, and its Pareto front.

``--objectives r2,latency`` asks for the score (one of the task's metrics; the run's
``scoring``) and costs to weigh against it, each smaller-is-better:

- ``latency``: milliseconds the exported model (preprocessing folded in) takes to answer
  1,000 raw rows, measured the same way for every configuration
  (:mod:`~foldwise.components.core.serving.costs`), with its spread over repeats;
- ``n_parameters``: the network's trainable weights;
- ``model_bytes``: the size of the saved serving model (``model.keras``).

A configuration is on the front when no other is at least as good on every objective and
better on one. ``refit="pareto:<cost>"`` picks the configuration with the lowest cost whose
mean score is within one standard error of the best (as the one-standard-error rule reads
"close enough"): e.g. ``pareto:latency``, the fastest model that scores as well as the best
within fold noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.scoring.stats import (
    one_standard_error,
    within_one_standard_error,
)

# cost → its cv_results column
COSTS = {"latency": "latency_ms", "n_parameters": "n_parameters", "model_bytes": "model_bytes"}
PARETO = "pareto:"
PARETO_RULES = tuple(f"{PARETO}{cost}" for cost in COSTS)
# what the serving measurement records besides the costs' columns
SPREAD_COLUMN = "latency_iqr_ms"


@dataclass(frozen=True)
class Objectives:
    """A run's objectives: the score to maximize, then costs to minimize (maybe none)."""

    score: str
    costs: tuple[str, ...] = ()

    @property
    def several(self) -> bool:
        """Whether there is anything to weigh the score against."""
        return bool(self.costs)

    @property
    def names(self) -> list[str]:
        """Every objective, the score first."""
        return [self.score, *self.costs]

    @property
    def directions(self) -> list[str]:
        """Optuna's direction of each objective, in order."""
        return ["maximize", *["minimize"] * len(self.costs)]


def parse(text: str | list, scoring: str, metrics: tuple[str, ...] | list[str]) -> Objectives:
    """The objectives ``text`` names (``"r2,latency"``), checked against the run's metrics.

    Args:
        text: Comma-separated names (or a list): at most one of ``metrics``, and any of
            :data:`COSTS`; empty for the score alone.
        scoring: The run's ``scoring`` (already resolved: never empty).
        metrics: The task's metrics (``core.scoring.metrics.metric_names``).

    Raises:
        FoldwiseError: An unknown or repeated name, two scores, or a score other than the
            run's ``scoring``.
    """
    names = ([n.strip() for n in text.split(",")] if isinstance(text, str)
             else [str(n).strip() for n in text])
    names = [n for n in names if n]
    known = [*metrics, *COSTS]
    for name in names:
        if name not in known:
            raise FoldwiseError(
                f"objectives: unknown objective {name!r}; use one of this task's metrics "
                f"({', '.join(metrics)}) and any of {', '.join(COSTS)}, e.g. "
                f"{scoring},latency")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FoldwiseError(f"objectives: {', '.join(repeated)} given twice")
    scores = [n for n in names if n in metrics]
    if len(scores) > 1:
        raise FoldwiseError(
            f"objectives: one score at a time ({', '.join(scores)} given); the others are "
            "in cv_results anyway")
    if scores and scores[0] != scoring:
        raise FoldwiseError(
            f"objectives name {scores[0]} but the run is scored by {scoring}: pass "
            f"--scoring {scores[0]} (scoring= in Python) or name {scoring} in objectives")
    return Objectives(scoring, tuple(n for n in names if n in COSTS))


SERVED = ("latency", "model_bytes")  # costs measured on the serving model (the others: training)


def costs_named(text: str) -> tuple[str, ...]:
    """The costs objectives ``text`` names, in its order (its score left out)."""
    return tuple(name.strip() for name in str(text).split(",") if name.strip() in COSTS)


def served(text: str, refit: str = "best") -> bool:
    """Whether objectives ``text`` (or a ``pareto:`` refit) needs the serving model measured."""
    return any(name in SERVED for name in (*costs_named(text), refit.removeprefix(PARETO)))


def measured(objectives: Objectives, refit: str = "best") -> tuple[str, ...]:
    """The costs a run measures: its objectives' and the one a ``pareto:`` refit needs."""
    costs = list(objectives.costs)
    if refit.startswith(PARETO) and refit[len(PARETO):] not in costs:
        costs.append(refit[len(PARETO):])
    return tuple(costs)


def front(scores, costs) -> np.ndarray:
    """Which points are on the Pareto front (score up, every cost down).

    Args:
        scores: One score per point (NaN: not on the front).
        costs: One row of costs per point (``(n, k)``; NaN: not on the front).

    Returns:
        A boolean mask. Points equal on every objective are all on the front.
    """
    scores = np.asarray(scores, dtype="float64")
    costs = np.asarray(costs, dtype="float64").reshape(len(scores), -1)
    points = np.column_stack([-scores, costs])  # everything smaller-is-better
    valid = np.isfinite(points).all(axis=1)
    on = valid.copy()
    for i in np.flatnonzero(valid):
        others = points[valid]
        dominated = (others <= points[i]).all(axis=1) & (others < points[i]).any(axis=1)
        on[i] = not dominated.any()
    return on


def pick(means, stds, costs, folds: int, slack=None, correction: float = 0.0) -> int:
    """The lowest-cost point whose mean is within one standard error of the best mean.

    The band is :func:`~foldwise.components.core.scoring.stats.one_standard_error`'s (the
    best's folds' sample standard deviation over ``sqrt(K)``); an unmeasured cost counts as
    the highest. A cost measured with noise (a latency) is the lowest only by more than its
    spread: every point of the band within ``slack`` (the lowest's) of the lowest cost ties
    with it, and of those the higher mean wins, then the first listed.

    Raises:
        FoldwiseError: No point has a finite mean.
    """
    means = np.asarray(means, dtype="float64")
    costs = np.array([float(c) if math.isfinite(float(c)) else math.inf
                      for c in np.asarray(costs, dtype="float64")])
    lowest = one_standard_error(means, np.asarray(stds, dtype="float64"), folds, list(costs),
                                correction=correction)
    if slack is None or not math.isfinite(costs[lowest]):
        return lowest
    spread = float(np.asarray(slack, dtype="float64")[lowest])
    spread = spread if math.isfinite(spread) else 0.0
    tied = [i for i in within_one_standard_error(means, stds, folds, correction)
            if costs[i] <= costs[lowest] + spread]
    return min(tied, key=lambda i: (-means[i], i))
