"""Successive halving and racing by folds or by epochs, planned rung by rung.

A halving search is one static DAG: a rung is a plan step (which candidates, which folds)
followed by a loop of train tasks. The plan is a JSON artifact that carries the search
forward: the schedule, the candidates still in, and the URIs of every result so far.

- ``resource="folds"``: rung ``r`` scores its survivors on folds ``n_resources[r-1] ..
  n_resources[r] - 1`` only: the folds a candidate was scored on before are kept, never
  trained again.
- ``resource="epochs"``: rung ``r`` trains its survivors on every fold to ``n_resources[r]``
  epochs, each model going on from the state the previous rung left it in
  (``core.training.vmapped``), so it ends as a run of all those epochs does.
"""

from __future__ import annotations

import json
import math

import numpy as np

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.estimators import role_of
from foldwise.components.core.models.spec import MODEL_DEFAULTS
from foldwise.components.core.search.halving import (
    ELIMINATIONS,
    RESOURCES,
    Schedule,
    halving_schedule,
    survivors,
)
from foldwise.components.core.search.packing import plan_trials

HALVING_KEYS = options.HALVING


def check_halving(settings: dict, folds: int, epochs: int | None = None) -> dict:
    """The halving settings, checked and completed.

    ``max_resources`` defaults to the folds, or (``resource="epochs"``) to ``epochs``, the
    candidates' epochs.

    Raises:
        FoldwiseError: An unknown setting or value (the message names it).
    """
    unknown = sorted(set(settings) - set(HALVING_KEYS))
    if unknown:
        raise FoldwiseError(f"unknown halving setting {unknown[0]!r} (known: "
                            f"{', '.join(HALVING_KEYS)})")
    resource = settings.get("resource") or "folds"
    if resource not in RESOURCES:
        raise FoldwiseError(f"resource must be one of {', '.join(RESOURCES)}, got {resource!r}")
    elimination = settings.get("elimination") or "halving"
    if elimination not in ELIMINATIONS:
        raise FoldwiseError(f"elimination must be one of {', '.join(ELIMINATIONS)}, got "
                            f"{elimination!r}")
    confidence = float(settings.get("confidence") or options.option("confidence").default)
    options.check_bounded("confidence", confidence)
    if resource == "folds":
        maximum = int(settings.get("max_resources") or folds)
        if not 1 <= maximum <= folds:
            raise FoldwiseError(f"max_resources is {maximum} folds but the run has {folds}: "
                                f"give at most {folds}, or more folds")
    else:
        maximum = int(settings.get("max_resources") or epochs or 0)
        if maximum < 1:
            raise FoldwiseError("resource='epochs' needs the epochs of the last rung: give "
                                "--epochs (or max_resources)")
    minimum = settings.get("min_resources") or ("smallest" if elimination == "racing"
                                                else "exhaust")
    if isinstance(minimum, str) and minimum.isdigit():
        minimum = int(minimum)
    if isinstance(minimum, float) and minimum.is_integer():
        minimum = int(minimum)
    if elimination == "racing" and resource == "folds" and minimum in ("smallest", "exhaust"):
        minimum = min(2, maximum)  # the paired test needs two folds
    if not (minimum in ("smallest", "exhaust") or isinstance(minimum, int)):
        raise FoldwiseError(f"min_resources must be a whole number, 'smallest' or 'exhaust', "
                            f"got {minimum!r}")
    factor = float(settings.get("factor") or 3)
    if factor.is_integer():
        factor = int(factor)
    return {"factor": factor, "resource": resource, "min_resources": minimum,
            "max_resources": maximum,
            "aggressive_elimination": bool(settings.get("aggressive_elimination", False)),
            "elimination": elimination, "confidence": confidence}


def schedule(settings: dict, n_candidates: int) -> Schedule:
    """The rungs of a search with these (checked) settings.

    Halving: scikit-learn's schedule. Racing: the same resources, always ending with every
    fold (``max_resources``), since it does not plan how many candidates are left.
    """
    planned = halving_schedule(n_candidates, settings["factor"], settings["min_resources"],
                               settings["max_resources"], settings["aggressive_elimination"])
    if settings["elimination"] == "halving":
        return planned
    resources, size = [], planned.min_resources
    while size < settings["max_resources"]:
        resources.append(size)
        size = max(size + 1, int(size * settings["factor"]))
    resources.append(settings["max_resources"])
    return Schedule(resources, [n_candidates] * len(resources), planned.min_resources,
                    planned.max_resources, len(resources), planned.n_required_iterations)


def first_rung(configs: list[dict], fold_ids: list, settings: dict, rungs: int,
               packing: str) -> dict:
    """The plan of rung 0: every candidate on its first ``n_resources[0]`` folds or epochs.

    By folds: the first folds only; by epochs: every fold, for that many epochs.

    Args:
        configs: The candidates (``core.search.grid.candidates``), in tie-breaking order.
        fold_ids: The run's folds.
        settings: The halving settings (:func:`check_halving`).
        rungs: How many rungs the pipeline was built with.
        packing: How trials are grouped into tasks (``core.search.packing.plan_trials``).

    Raises:
        FoldwiseError: The search needs another number of rungs than the pipeline has, or
            its candidates cannot be halved (a baseline; by epochs: a grid that varies
            epochs, early stopping).
    """
    folds = sorted(int(f) for f in fold_ids)
    check_no_baseline(configs)
    if settings.get("resource") == "epochs":
        check_epochs_candidates(configs)
    settings = check_halving(settings, len(folds), candidate_epochs(configs))
    planned = schedule(settings, len(configs))
    if planned.n_iterations != int(rungs):
        raise FoldwiseError(
            f"this search needs {planned.n_iterations} rungs ({len(configs)} candidates, "
            f"factor {settings['factor']}, resources {planned.n_resources}) but the pipeline "
            f"was built with {rungs}: compile it with --rungs {planned.n_iterations}")
    plan = {"settings": settings, "schedule": planned.as_dict(), "folds": folds,
            "candidates": configs, "alive": [c["config_id"] for c in configs],
            "rung": 0, "results": [], "history": []}
    return _with_tasks(plan, packing)


def _with_tasks(plan: dict, packing: str) -> dict:
    """The plan with the train tasks of its rung (``[]`` after the last)."""
    rung, resources = plan["rung"], plan["schedule"]["n_resources"]
    if rung >= len(resources):
        return {**plan, "tasks": []}
    alive = set(plan["alive"])
    configs = [c for c in plan["candidates"] if c["config_id"] in alive]
    tags = {"rung": rung, "n_resources": resources[rung]}
    if plan["settings"]["resource"] == "epochs":
        tasks = plan_trials(configs, plan["folds"], packing)
        tags.update(resource="epochs", epochs=resources[rung])
        states = plan.get("states", {})
        return {**plan, "tasks": [{**task, "tags": {**tags, "continue": {
            key: states[key] for key in (f"{c['config_id']}|{fold}" for c in task["configs"]
                                         for fold in task["folds"]) if key in states}}}
            for task in tasks]}
    start = resources[rung - 1] if rung else 0
    folds = plan["folds"][start:resources[rung]]
    tasks = plan_trials(configs, folds, packing)
    return {**plan, "tasks": [{**task, "tags": tags} for task in tasks]}


def candidate_epochs(configs: list[dict]) -> int | None:
    """The candidates' one number of epochs (``None`` if they differ)."""
    epochs = {c["params"].get("epochs") for c in configs}
    return int(epochs.pop()) if len(epochs) == 1 and None not in epochs else None


def check_epochs_candidates(configs: list[dict]) -> None:
    """Candidates that halving by epochs can train on from rung to rung.

    Raises:
        FoldwiseError: The grid varies epochs (the resource), or early stopping is on.
    """
    if candidate_epochs(configs) is None:
        raise FoldwiseError("resource='epochs' hands out the epochs: leave epochs out of the "
                            "grid and give --epochs (the last rung's)")
    if any(c["params"].get("early_stopping") for c in configs):
        raise FoldwiseError("resource='epochs' decides when training stops: leave "
                            "--early-stopping out")


def check_no_baseline(configs: list[dict]) -> None:
    """Halving races Keras configurations only: a baseline twin could knock them all out.

    Raises:
        FoldwiseError: A scikit-learn MLP baseline among the candidates.
    """
    if any(role_of(c["params"]) == "baseline" for c in configs):
        raise FoldwiseError("halving-search races Keras configurations only: leave --baseline "
                            "out (grid-search and cross-validation score the baseline)")


def next_rung(plan: dict, result_uris: list[str], read_bytes, scoring: str,
              packing: str) -> dict:
    """The plan of the rung after ``plan``'s, once its tasks' results are in.

    Args:
        plan: The previous rung's plan.
        result_uris: The URIs of that rung's train results.
        read_bytes: Reads the file a URI names.
        scoring: The metric that ranks candidates.
        packing: How trials are grouped into tasks.

    Returns:
        The new plan: the survivors, their next folds as tasks (none after the last rung),
        and every result URI so far under ``results``.
    """
    entries = [entry for uri in result_uris for entry in json.loads(read_bytes(uri))]
    rung = plan["rung"]
    settings, resources = plan["settings"], plan["schedule"]["n_resources"]
    by_epochs = settings["resource"] == "epochs"
    scored = plan["folds"] if by_epochs else plan["folds"][:resources[rung]]
    known = _scores(plan, entries, scoring)
    alive = plan["alive"]
    table = {cid: [known.get((cid, fold), math.nan) for fold in scored] for cid in alive}
    n_train = float(np.mean([e["n_train"] for e in entries])) if entries else 1.0
    n_test = float(np.mean([e["n_validation"] for e in entries])) if entries else 1.0
    kept = alive
    if rung + 1 < len(resources):
        kept = survivors(table, math.ceil(len(alive) / settings["factor"]),
                         elimination=settings["elimination"],
                         confidence=settings["confidence"], n_train=n_train, n_test=n_test)
        kept = kept or alive[:1]
    history = [*plan["history"], {"rung": rung, "n_resources": resources[rung],
                                  "candidates": alive, "kept": kept}]
    following = {**plan, "rung": rung + 1, "alive": kept, "history": history,
                 "results": [*plan["results"], *result_uris], "scores": {
                     f"{cid}|{fold}": value for (cid, fold), value in known.items()}}
    if by_epochs:  # where each model's state is, to go on from
        following["states"] = {f"{e['config_id']}|{int(e['fold'])}": e["state"]
                               for e in entries if e.get("state")}
    return _with_tasks(following, packing)


def finished(plan: dict) -> bool:
    """Whether every rung has run (the plan then holds every result's URI)."""
    return plan["rung"] >= len(plan["schedule"]["n_resources"])


def _scores(plan: dict, entries: list[dict], scoring: str) -> dict:
    """``{(config_id, fold): score}`` of every fold scored so far (NaN for a failure)."""
    known = {}
    for key, value in plan.get("scores", {}).items():
        cid, fold = key.rsplit("|", 1)
        known[(cid, int(fold))] = math.nan if value is None else float(value)
    for entry in entries:
        value = entry["scores"].get(scoring)
        failed = entry.get("fit_error") or value is None
        known[(entry["config_id"], int(entry["fold"]))] = math.nan if failed else float(value)
    return known


def fixed_epochs(model_spec: dict) -> int:
    """The epochs every candidate has unless the grid varies them."""
    return int(model_spec.get("epochs") or MODEL_DEFAULTS["epochs"])


def plan_schedule(halving: dict, folds: int, configs: list[dict]) -> tuple[dict, Schedule]:
    """The checked settings and the schedule of a halving search of these candidates."""
    settings = check_halving(halving, folds, candidate_epochs(configs))
    return settings, schedule(settings, len(configs))


def exhaust_candidates(settings: dict, folds: int, epochs: int | None = None) -> int:
    """``n_candidates="exhaust"``: ``max_resources // min_resources`` (scikit-learn's rule)."""
    checked = check_halving(settings, folds, epochs)
    minimum = checked["min_resources"]
    minimum = minimum if isinstance(minimum, int) else 1
    return max(1, checked["max_resources"] // minimum)
