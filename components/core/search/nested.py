"""Staged searches inside the outer folds of a nested cross-validation.

A halving or Bayesian search runs in stages, each planned from the last one's scores
(``core.search.rungs``, ``core.search.rounds``). Inside nested cross-validation every outer fold
runs its own such search on its own inner folds; the stages of all of them advance together:
one plan holds each outer fold's plan under ``outer``, and its tasks are theirs one after
the other, so that each stage is still one flat loop of train tasks.
"""

from __future__ import annotations

from collections.abc import Callable

from foldwise.components.core.errors import FoldwiseError


def join(plans: list[dict]) -> dict:
    """One plan of every outer fold's inner search: their tasks, one after the other."""
    return {"outer": plans, "tasks": [task for plan in plans for task in plan["tasks"]],
            "results": results(plans)}


def results(plans: list[dict]) -> list[str]:
    """Every train result URI the outer folds' plans hold so far, each once, in order."""
    return list(dict.fromkeys(uri for plan in plans for uri in plan.get("results", [])))


def first(nested: dict, make_plan: Callable[[list[int]], dict]) -> dict:
    """The first stage of every outer fold's search: ``make_plan(its inner folds)`` each."""
    return join([make_plan([int(f) for f in folds]) for folds in nested["inner"]])


def advance(plan: dict, step: Callable[[dict], dict]) -> dict:
    """The next stage of every outer fold's search: ``step(its plan)`` each.

    Raises:
        FoldwiseError: ``plan`` is not a nested plan (the pipeline was built with stages for
            a search that has none).
    """
    if "outer" not in plan:
        raise FoldwiseError(
            "this nested-cv pipeline was built with stages for a halving or Bayesian inner "
            "search, but the run's inner search has none: compile it without --rungs")
    return join([step(outer) for outer in plan["outer"]])


def configurations(plan: dict) -> dict[str, dict]:
    """Every configuration a (nested) plan names, by id: its tasks' and its candidates'."""
    found: dict[str, dict] = {}
    for outer in plan.get("outer", []):
        found.update(configurations(outer))
    for config in plan.get("candidates", []):
        found.setdefault(config["config_id"], config)
    for task in plan.get("tasks", []):
        for config in task["configs"]:
            found.setdefault(config["config_id"], config)
    return found
