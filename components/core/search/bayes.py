"""Model-based search: Optuna's TPE asked for a round's batch, told what earlier rounds scored.

The optimizer's whole state is the *study*, plain data: the space, the seed, the direction
(or directions: a score and costs, ``core.scoring.pareto``) and every configuration asked
so far with what it scored. Each round rebuilds an Optuna study
from it (its told trials added as finished, pruned or failed trials), asks the round's batch
and records it; so the state travels between a compiled pipeline's stages as one artifact,
the way the halving plan travels, and the same study asks the same batch wherever it runs.

The space is random search's (:mod:`~foldwise.components.core.search.sampling`: lists,
``loguniform``, ``uniform``, ``randint``, ``choice``; one mapping), and a parameter may exist
only for some values of parameters before it::

    layers: [1, 2, 3]
    dropout: {uniform: [0.0, 0.5], when: {layers: [2, 3]}}

A list's values may be anything JSON holds (``hidden_units: [[64], [128, 64]]``): Optuna
sees each as its JSON text. Optuna's TPE sampler is used as it recommends for batches:
multivariate, grouped (conditional spaces), with the constant liar for the batch's pending
points.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.search.sampling import check_space
from foldwise.components.core.search.sampling import from_python as scipy_space

DIRECTIONS = ("maximize", "minimize")
FINISHED, PRUNED, FAILED = "finished", "pruned", "failed"
CONDITION = "when"
ATTEMPTS = 20  # asks for a configuration the study has not asked yet, before taking a repeat


@dataclass(frozen=True)
class Parameter:
    """One parameter of a space: a distribution or a list of values, maybe conditional."""

    name: str
    family: str  # loguniform, uniform, randint or choice
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()  # a choice's values as JSON text
    when: tuple = ()  # ((parameter, (allowed value as JSON text, ...)), ...)

    def applies(self, point: dict) -> bool:
        """Whether the parameter exists for a point with these earlier values."""
        return all(name in point and json.dumps(point[name], sort_keys=True) in allowed
                   for name, allowed in self.when)

    def distribution(self):
        """The Optuna distribution of the parameter."""
        import optuna

        if self.family == "loguniform":
            return optuna.distributions.FloatDistribution(self.low, self.high, log=True)
        if self.family == "uniform":
            return optuna.distributions.FloatDistribution(self.low, self.high)
        if self.family == "randint":  # high excluded, as scipy's randint
            return optuna.distributions.IntDistribution(int(self.low), int(self.high) - 1)
        return optuna.distributions.CategoricalDistribution(self.choices)

    def suggest(self, trial) -> Any:
        """The trial's value of the parameter, as a configuration holds it."""
        if self.family == "choice":
            return json.loads(trial.suggest_categorical(self.name, self.choices))
        if self.family == "randint":
            return int(trial.suggest_int(self.name, int(self.low), int(self.high) - 1))
        return float(trial.suggest_float(self.name, self.low, self.high,
                                         log=self.family == "loguniform"))

    def encode(self, value: Any):
        """A configuration's value as the study holds it."""
        return json.dumps(value, sort_keys=True) if self.family == "choice" else value

    def decode(self, value: Any):
        """The study's value as a configuration holds it."""
        if self.family == "choice":
            return json.loads(value)
        return int(value) if self.family == "randint" else float(value)


def parameters(space: Any, where: str = "the Bayesian search space") -> list[Parameter]:
    """The space's parameters in one order whatever the mapping's, conditions checked.

    By name, except that a conditional parameter comes after those its condition names (a
    pipeline parameter's mapping comes back with its keys in any order: the study asks the
    same points either way).

    Raises:
        FoldwiseError: A bad distribution or list, a condition on an unknown or later
            parameter, or a condition value the parameter cannot take.
    """
    if isinstance(space, list):
        if len(space) != 1:
            raise FoldwiseError(f"{where} must be one mapping of parameter → list of values or "
                                "distribution (a list of spaces is for random search)")
        space = space[0]
    if not isinstance(space, dict) or not space:
        raise FoldwiseError(f"{where} must be a mapping of parameter → list of values or "
                            "distribution, e.g. {learning_rate: {loguniform: [1.0e-4, 0.1]}}")
    conditions = {}
    plain = {}
    for name, value in space.items():
        if isinstance(value, dict) and CONDITION in value:
            conditions[name] = value[CONDITION]
            value = {k: v for k, v in value.items() if k != CONDITION}
            if list(value) == ["choice"]:
                value = value["choice"]
        plain[name] = value
    (checked,) = check_space(plain, where)
    found: list[Parameter] = []
    for name in _order(where, sorted(checked), conditions):
        value = checked[name]
        if isinstance(value, list):
            head = Parameter(name, "choice", choices=tuple(
                json.dumps(v, sort_keys=True) for v in value))
        else:
            (family, (low, high)), = value.items()
            head = Parameter(name, family, float(low), float(high))
        when = conditions.get(name)
        if when is not None:
            head = Parameter(head.name, head.family, head.low, head.high, head.choices,
                             _condition(where, name, when, found))
        found.append(head)
    return found


def _order(where: str, names: list[str], conditions: dict) -> list[str]:
    """``names`` with each conditional one after the parameters its condition names.

    Raises:
        FoldwiseError: A condition names an unknown parameter, or conditions form a cycle.
    """
    placed: list[str] = []
    waiting = list(names)
    while waiting:
        for name in waiting:
            when = conditions.get(name)
            parents = list(when) if isinstance(when, dict) else []
            unknown = [p for p in parents if p not in names or p == name]
            if unknown:
                raise FoldwiseError(f"{where}: {name}: {CONDITION} names {unknown[0]!r}, which "
                                    "is not another parameter of the space")
            if all(p in placed for p in parents):
                placed.append(name)
                waiting.remove(name)
                break
        else:
            raise FoldwiseError(f"{where}: the conditions of {', '.join(waiting)} name each "
                                "other in a cycle: a parameter's condition may name only "
                                "parameters that exist without it")
    return placed


def checked_space(space: Any, where: str = "the Bayesian search space") -> list[dict]:
    """The space as one mapping in a list (what a pipeline parameter holds), checked.

    Distributions are written as :func:`~foldwise.components.core.search.sampling.check_space`
    writes them; a conditional parameter keeps its ``when``.

    Raises:
        FoldwiseError: What :func:`parameters` raises.
    """
    found = parameters(space, where)
    mapping = space[0] if isinstance(space, list) else space
    checked = {}
    for parameter in found:
        if parameter.family == "choice":
            value: Any = [json.loads(c) for c in parameter.choices]
        else:
            bounds = [parameter.low, parameter.high]
            if parameter.family == "randint":
                bounds = [int(parameter.low), int(parameter.high)]
            value = {parameter.family: bounds}
        if parameter.when:
            when = mapping[parameter.name][CONDITION]
            value = {**(value if isinstance(value, dict) else {"choice": value}),
                     CONDITION: when}
        checked[parameter.name] = value
    return [checked]


def from_python(space: Any, where: str = "search_spaces") -> list[dict]:
    """A Python space as data, read as scikit-optimize's ``BayesSearchCV`` reads one.

    scikit-optimize's ``Real(low, high, prior)``, ``Integer(low, high)`` (high included) and
    ``Categorical(categories)`` (recognized by their attributes; scikit-optimize itself is
    not needed), its tuples ``(low, high)`` and ``(low, high, "log-uniform")`` (whole numbers:
    integers, high included), lists of values, scipy.stats distributions as
    :class:`~foldwise.pipelines.api.RandomizedSearchCV` takes them, and the data form
    (``{"uniform": [0.0, 0.5], "when": {"layers": [2, 3]}}``) as they are.

    Raises:
        FoldwiseError: Anything else, named.
    """
    if isinstance(space, list) and len(space) == 1:
        space = space[0]
    if not isinstance(space, dict) or not space:
        raise FoldwiseError(f"{where} must be one mapping of parameter → values, range or "
                            "distribution, e.g. {'learning_rate': (1e-4, 1e-1, 'log-uniform'), "
                            "'units': (16, 256)}")
    converted = {}
    for name, value in space.items():
        kind = type(value).__name__
        if kind == "Categorical" and hasattr(value, "categories"):
            value = list(value.categories)
        elif kind in ("Real", "Integer") and hasattr(value, "low") and hasattr(value, "high"):
            value = _range(where, name, (value.low, value.high, getattr(value, "prior", None)),
                           whole=kind == "Integer")
        elif isinstance(value, tuple):
            whole = all(isinstance(v, int) and not isinstance(v, bool) for v in value[:2])
            value = _range(where, name, value, whole)
        elif hasattr(value, "rvs"):
            value = scipy_space({name: value}, where)[0][name]
        converted[name] = value
    return [converted]


def _range(where: str, name: str, value: tuple, whole: bool) -> dict:
    """scikit-optimize's ``(low, high[, prior])`` as a distribution."""
    if not 2 <= len(value) <= 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2]):
        raise FoldwiseError(f"{where}: {name} is a range written (low, high) or (low, high, "
                            f"'log-uniform'), got {value!r}")
    prior = value[2] if len(value) == 3 else None
    if prior not in (None, "uniform", "log-uniform"):
        raise FoldwiseError(f"{where}: {name}: the prior is 'uniform' or 'log-uniform', got "
                            f"{prior!r}")
    low, high = value[0], value[1]
    if whole:
        if prior == "log-uniform":
            raise FoldwiseError(f"{where}: {name}: a log-uniform range of whole numbers is not "
                                "supported: give a list of values or a float range")
        return {"randint": [int(low), int(high) + 1]}  # scikit-optimize's high is included
    return {"loguniform" if prior == "log-uniform" else "uniform": [float(low), float(high)]}


def _condition(where: str, name: str, when: Any, earlier: list[Parameter]) -> tuple:
    by_name = {p.name: p for p in earlier}
    if not isinstance(when, dict) or not when:
        raise FoldwiseError(f"{where}: {name}: {CONDITION} must map other parameters to the "
                            f"values they take for {name} to exist, e.g. {{layers: [2, 3]}}, "
                            f"got {when!r}")
    result = []
    for other, allowed in when.items():
        parent = by_name[other]
        if parent.family != "choice":
            raise FoldwiseError(f"{where}: {name}: {CONDITION} needs {other!r} to be a list "
                                "of values (a condition on a distribution is not supported)")
        values = allowed if isinstance(allowed, list) else [allowed]
        texts = tuple(json.dumps(v, sort_keys=True) for v in values)
        unknown = [v for v, t in zip(values, texts, strict=True) if t not in parent.choices]
        if unknown or not texts:
            raise FoldwiseError(f"{where}: {name}: {other} never takes {unknown or values!r} "
                                f"(its values: {[json.loads(c) for c in parent.choices]})")
        result.append((other, texts))
    return tuple(result)


def new_study(space: Any, seed: int, direction: str = "maximize",
              costs: int = 0) -> dict:
    """An empty study of ``space`` (checked now, so a bad space fails before any round).

    With ``costs``, the study has several objectives: the score in ``direction``, then that
    many costs to minimize (``core.scoring.pareto``); Optuna's TPE then runs multi-objective.
    """
    if direction not in DIRECTIONS:
        raise FoldwiseError(f"direction must be one of {', '.join(DIRECTIONS)}, got "
                            f"{direction!r}")
    parameters(space)
    study = {"space": space, "seed": int(seed), "direction": direction, "trials": []}
    if int(costs):
        study["directions"] = [direction, *["minimize"] * int(costs)]
    return study


def ask(study: dict, n: int, round_: int) -> list[dict]:
    """The round's ``n`` configurations (searched parameters only), recorded in the study.

    Each asked configuration is a trial of the study with ``state`` ``None`` (pending) until
    :func:`tell` records its result. A configuration asked before in this study is asked
    again only when a few more asks find nothing new (a small list space).

    Raises:
        FoldwiseError: ``n`` below 1.
    """
    if int(n) < 1:
        raise FoldwiseError(f"a round asks at least 1 configuration, got {n!r}")
    space = parameters(study["space"])
    optuna_study = _rebuilt(study, space, round_)
    import optuna

    seen = {json.dumps(t["params"], sort_keys=True) for t in study["trials"]}
    asked = []
    for _ in range(int(n)):
        for attempt in range(ATTEMPTS):
            trial = optuna_study.ask()
            point: dict = {}
            for parameter in space:
                if parameter.applies(point):
                    point[parameter.name] = parameter.suggest(trial)
            key = json.dumps(point, sort_keys=True)
            if key not in seen or attempt == ATTEMPTS - 1:
                break
            optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)  # asked already
        seen.add(key)
        record = {"number": len(study["trials"]), "round": int(round_), "params": point,
                  "state": None, "value": None}
        study["trials"].append(record)
        asked.append(point)
    return asked


def project(study: dict, params: dict) -> dict | None:
    """``params`` (a complete configuration) as a point of the study's space, or ``None``.

    ``None`` when a parameter the point needs is missing or lies outside the space (an
    earlier search of another space).
    """
    point: dict = {}
    for parameter in parameters(study["space"]):
        if not parameter.applies(point):
            continue
        if parameter.name not in params:
            return None
        value = params[parameter.name]
        if parameter.family == "choice":
            if json.dumps(value, sort_keys=True) not in parameter.choices:
                return None
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                parameter.low <= value <= (parameter.high - 1 if parameter.family == "randint"
                                           else parameter.high)):
            return None
        elif parameter.family == "randint" and not float(value).is_integer():
            return None
        point[parameter.name] = parameter.decode(parameter.encode(value))
    return point


def tell_earlier(study: dict, point: dict, value: float | None, state: str,
                 costs: list | None = None) -> int:
    """Record a configuration an earlier run scored (round ``-1``); returns its number."""
    number = len(study["trials"])
    study["trials"].append({"number": number, "round": -1, "params": point, "state": None,
                            "value": None})
    tell(study, number, value, state, costs)
    return number


def tell(study: dict, number: int, value: float | None, state: str = FINISHED,
         costs: list | None = None) -> None:
    """Record what a trial came to: a score, a raced-out (``pruned``) score, or a failure.

    A pruned trial's ``value`` is its score on the folds it was trained on, which the sampler
    reads as Optuna reads a pruned trial's last intermediate value: never as a finished
    score. A failed one (or a non-finite score) tells the sampler nothing but its failure.
    A study of several objectives is told a finished trial's ``costs`` too (its
    ``values``: the score, then the costs); one whose costs were not all measured is told
    pruned, a censored result, as is a raced-out one (Optuna's multi-objective TPE reads no
    intermediate value).

    Raises:
        FoldwiseError: An unknown trial, a state that is not one of finished, pruned, failed.
    """
    if state not in (FINISHED, PRUNED, FAILED):
        raise FoldwiseError(f"a trial ends {FINISHED}, {PRUNED} or {FAILED}, got {state!r}")
    trials = study["trials"]
    if not 0 <= int(number) < len(trials):
        raise FoldwiseError(f"the study has no trial {number}")
    finite = value is not None and math.isfinite(float(value))
    state = state if finite or state == FAILED else FAILED
    trials[int(number)].update(state=state, value=float(value) if finite else None)
    if "directions" in study and state == FINISHED:
        measured = [float(c) for c in costs or [] if c is not None and math.isfinite(float(c))]
        if len(measured) == len(study["directions"]) - 1:
            trials[int(number)]["values"] = [float(value), *measured]
        else:
            trials[int(number)]["state"] = PRUNED


def best(study: dict) -> dict | None:
    """The finished trial with the best value, or ``None``."""
    done = [t for t in study["trials"] if t["state"] == FINISHED]
    if not done:
        return None
    pick = max if study["direction"] == "maximize" else min
    return pick(done, key=lambda t: t["value"])


def _rebuilt(study: dict, space: list[Parameter], round_: int):
    """An in-memory Optuna study holding the study's trials (pending ones as running)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # multivariate and group are marked experimental
        warnings.simplefilter("ignore")
        sampler = optuna.samplers.TPESampler(
            seed=int(study["seed"]) * 1009 + int(round_), multivariate=True, group=True,
            constant_liar=True, n_startup_trials=max(4, len(space) + 1))
        several = "directions" in study
        created = (optuna.create_study(directions=study["directions"], sampler=sampler)
                   if several else optuna.create_study(direction=study["direction"],
                                                       sampler=sampler))
    by_name = {p.name: p for p in space}
    state = optuna.trial.TrialState
    for trial in study["trials"]:
        params = {name: by_name[name].encode(value) for name, value in trial["params"].items()
                  if name in by_name}
        distributions = {name: by_name[name].distribution() for name in params}
        if trial["state"] == FINISHED:
            frozen = optuna.trial.create_trial(
                params=params, distributions=distributions,
                **({"values": trial["values"]} if several else {"value": trial["value"]}))
        elif trial["state"] == PRUNED:
            frozen = optuna.trial.create_trial(
                params=params, distributions=distributions, state=state.PRUNED,
                intermediate_values={} if several or trial["value"] is None
                else {0: trial["value"]})
        elif trial["state"] == FAILED:
            frozen = optuna.trial.create_trial(params=params, distributions=distributions,
                                               state=state.FAIL)
        else:  # asked in an earlier round and never told: pending, as the liar sees it
            frozen = optuna.trial.create_trial(params=params, distributions=distributions,
                                               state=state.RUNNING)
        created.add_trial(frozen)
    return created
