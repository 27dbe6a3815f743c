"""Random search: parameter distributions written as data, sampled like scikit-learn's.

A search space is a mapping of parameter → list of values or distribution (or a list of such
mappings), as scikit-learn's ``param_distributions``. In YAML (and wherever it travels: a
pipeline parameter is JSON) a distribution is a one-key mapping::

    learning_rate: {loguniform: [1.0e-4, 1.0e-1]}   # scipy.stats.loguniform(a, b)
    dropout: {uniform: [0.0, 0.5]}                   # between low and high
    units: {randint: [16, 129]}                      # low included, high excluded
    activation: {choice: [relu, gelu]}               # the same as a plain list

From Python, scipy.stats frozen distributions of those families are turned into that form
(:func:`from_python`), so a compiled pipeline samples them where it runs, in its plan step.
Sampling is :class:`sklearn.model_selection.ParameterSampler` itself, fed the same
distributions and seed: the same configurations as scikit-learn's ``RandomizedSearchCV``
(without replacement when every parameter is a list).
"""

from __future__ import annotations

import math
from typing import Any

from foldwise.components.core.errors import FoldwiseError

FAMILIES = ("loguniform", "uniform", "randint", "choice")


def is_distribution(value: Any) -> bool:
    """Whether ``value`` is a distribution as data (``{"loguniform": [a, b]}``)."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in FAMILIES


def has_distributions(space: list[dict]) -> bool:
    """Whether any parameter of the space is a distribution rather than a list."""
    return any(is_distribution(v) for part in space for v in part.values())


def from_python(space, where: str = "param_distributions") -> list[dict]:
    """A Python search space (scipy.stats objects, lists) as data.

    Raises:
        FoldwiseError: A distribution of another family, or a value that is neither.
    """
    if isinstance(space, dict):
        space = [space]
    if not isinstance(space, list) or not space or not all(isinstance(p, dict) for p in space):
        raise FoldwiseError(f"{where} must be a mapping of parameter → list of values or "
                            "scipy.stats distribution (or a list of such mappings), e.g. "
                            "{'learning_rate': loguniform(1e-4, 1e-1)}")
    return [{key: _as_data(key, value, where) for key, value in part.items()} for part in space]


def _as_data(key: str, value, where: str):
    if not hasattr(value, "rvs"):
        return list(value) if isinstance(value, tuple) else value
    dist = getattr(value, "dist", None)
    name = getattr(dist, "name", type(value).__name__)
    args = dict(zip(_arg_names(name), value.args, strict=False)) | dict(getattr(value, "kwds", {}))
    loc, scale = float(args.get("loc", 0.0)), float(args.get("scale", 1.0))
    if name in ("loguniform", "reciprocal") and loc == 0.0 and scale == 1.0:
        return {"loguniform": [float(args["a"]), float(args["b"])]}
    if name == "uniform":
        return {"uniform": [loc, loc + scale]}
    if name == "randint" and loc == 0.0:
        return {"randint": [int(args["low"]), int(args["high"])]}
    raise FoldwiseError(
        f"{where}: {key} is a scipy.stats {name} distribution; a search that runs as a "
        "pipeline takes loguniform(a, b), uniform(loc, scale), randint(low, high) or a list "
        "of values")


def _arg_names(name: str) -> tuple[str, ...]:
    return {"loguniform": ("a", "b", "loc", "scale"), "reciprocal": ("a", "b", "loc", "scale"),
            "uniform": ("loc", "scale"), "randint": ("low", "high", "loc")}.get(name, ())


def check_space(space: Any, where: str = "the search space") -> list[dict]:
    """The space as a list of mappings of parameter → non-empty list or checked distribution.

    Raises:
        FoldwiseError: Naming the parameter and what a distribution takes.
    """
    parts = mappings(space, where, "list of values or distribution",
                     "{learning_rate: {loguniform: [1.0e-4, 1.0e-1]}, "
                     "hidden_units: [[64], [128, 64]]}", nonempty=True)
    return [{key: _checked(where, key, value) for key, value in part.items()} for part in parts]


def mappings(value: Any, where: str, takes: str, example: str,
             nonempty: bool = False) -> list[dict]:
    """A grid's or a space's entries: one mapping, or a non-empty list of mappings.

    Raises:
        FoldwiseError: Neither, saying what each parameter takes (``takes``) with an example.
    """
    parts = [value] if isinstance(value, dict) else value
    if not isinstance(parts, list) or not parts:
        raise FoldwiseError(f"{where} must be a mapping of parameter → {takes}, e.g. {example}")
    for part in parts:
        if not isinstance(part, dict) or (nonempty and not part):
            raise FoldwiseError(f"{where}: each entry must be a {'non-empty ' * nonempty}"
                                f"mapping, got {part!r}")
    return parts


def _checked(where: str, key: str, value):
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in FAMILIES:
            raise FoldwiseError(f"{where}: {key} must be a list of values or one of "
                                f"{{{' | '.join(FAMILIES)}: [...]}}, got {value!r}")
        family, bounds = next(iter(value.items()))
        if family == "choice":
            return _checked(where, key, bounds)
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b)
                for b in bounds)):
            raise FoldwiseError(f"{where}: {key}: {family} takes two numbers [low, high], "
                                f"got {bounds!r}")
        low, high = bounds
        if family == "loguniform" and not 0 < low < high:
            raise FoldwiseError(f"{where}: {key}: loguniform needs 0 < low < high, got "
                                f"{bounds!r}")
        if family == "uniform" and not low < high:
            raise FoldwiseError(f"{where}: {key}: uniform needs low < high, got {bounds!r}")
        if family == "randint":
            if not (float(low).is_integer() and float(high).is_integer() and low < high):
                raise FoldwiseError(f"{where}: {key}: randint takes whole numbers low < high "
                                    f"(high excluded), got {bounds!r}")
            return {family: [int(low), int(high)]}
        return {family: [float(low), float(high)]}
    if not isinstance(value, list) or not value:
        raise FoldwiseError(f"{where}: {key} must be a non-empty list of values or a "
                            f"distribution such as {{uniform: [0.0, 0.5]}}, got {value!r}")
    return value


def _scipy(value):
    """A distribution as data → the scipy.stats object; a list stays a list."""
    if not isinstance(value, dict):
        return value
    from scipy import stats

    (family, (low, high)), = value.items()
    if family == "loguniform":
        return stats.loguniform(low, high)
    if family == "uniform":
        return stats.uniform(low, high - low)
    return stats.randint(int(low), int(high))


def sample(space: list[dict], n_iter: int, seed: int) -> list[dict]:
    """``n_iter`` points of the space, as ``ParameterSampler(space, n_iter, random_state=seed)``.

    Values come back as plain Python (``float``/``int``/lists), ready to be JSON.
    Without replacement when every parameter is a list (then at most the grid's size).

    Raises:
        FoldwiseError: ``n_iter`` below 1, or a bad space.
    """
    import warnings

    from sklearn.model_selection import ParameterSampler

    if int(n_iter) < 1:
        raise FoldwiseError(f"n_iter must be at least 1, got {n_iter!r}")
    space = check_space(space)
    scipy_space = [{key: _scipy(value) for key, value in part.items()} for part in space]
    with warnings.catch_warnings():  # a grid smaller than n_iter: all of it, as documented
        warnings.simplefilter("ignore", UserWarning)
        points = list(ParameterSampler(scipy_space, int(n_iter), random_state=int(seed)))
    return [{key: _plain(value) for key, value in point.items()} for point in points]


def _plain(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def points_as_grid(points: list[dict]) -> list[dict]:
    """Sampled points as a grid of one value per parameter each (what ``candidates`` expands)."""
    return [{key: [value] for key, value in point.items()} for point in points]
