"""KFP component: the next stage of every outer fold's halving or Bayesian inner search."""

from typing import List

from kfp.dsl import Artifact, Input, Output

from foldwise.components.image import component


@component
def nested_stage(
    schema: Input[Artifact],
    previous: Input[Artifact],
    fold_results: List[str],
    plan: Output[Artifact],
    model_spec: dict = {},  # noqa: B006 - KFP reads defaults from the signature
    seed: int = 0,
    scoring: str = "",
    packing: str = "none",
) -> list:
    """Plan each outer fold's next rung (halving) or stage (Bayesian search), all at once.

    Each outer fold's search goes on from its own plan and its own inner folds' scores, as
    ``next_rung`` and ``next_round`` plan one search's (``core.search.nested``).

    Args:
        schema: The preprocess step's schema (the task, for the default scoring).
        previous: The plan of the stage that just ran (every outer fold's).
        fold_results: The URIs of that stage's train results.
        plan: JSON: the next stage's plan (no tasks after the last stage).
        model_spec: Model options fixed for every configuration the space does not vary.
        seed: The run's seed.
        scoring: The metric that ranks; empty for ``r2`` / ``accuracy``.
        packing: How trials are grouped into tasks (``core.search.packing.plan_trials``).

    Returns:
        The next stage's train tasks' numbers (the items of its loop); after the last stage,
        the URIs of every inner train result (what nested_choose collects).
    """
    import functools

    from foldwise.components import storage
    from foldwise.components.core.jsonio import read_json, write_json
    from foldwise.components.core.scoring.metrics import default_scoring
    from foldwise.components.core.search import nested, rounds, rungs
    from foldwise.components.core.training.vmapped import select_backend

    select_backend()  # JAX, where models train: a user's builder is tried here as there
    described = read_json(schema.path)
    scoring = scoring or default_scoring(described["task"])
    uris = list(fold_results)
    make_configs = rounds.configurations(model_spec, described, seed)
    read_once = functools.lru_cache(maxsize=None)(storage.read_bytes)  # every outer fold's plan
    # reads the stage's results (each keeps its own folds' scores): fetch each file once

    def step(outer: dict) -> dict:
        if "study" in outer:  # a Bayesian search
            return rounds.next_stage(outer, uris, read_once, scoring, packing, make_configs)
        return rungs.next_rung(outer, uris, read_once, scoring, packing)

    planned = nested.advance(read_json(previous.path), step)
    write_json(plan.path, planned)
    plan.metadata.update({"tasks": len(planned["tasks"])})
    if all((rounds if "study" in outer else rungs).finished(outer)
           for outer in planned["outer"]):
        return planned["results"]
    return list(range(len(planned["tasks"])))
