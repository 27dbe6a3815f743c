"""KFP component: after a rung of successive halving, plan the next one."""

from typing import List

from kfp.dsl import Artifact, Input, Output

from foldwise.components.image import component


@component
def next_rung(
    schema: Input[Artifact],
    previous: Input[Artifact],
    fold_results: List[str],
    plan: Output[Artifact],
    scoring: str = "",
    packing: str = "none",
) -> list:
    """Keep the candidates that go on, and plan their next folds.

    Halving keeps the best ``ceil(n / factor)`` by mean score over the folds scored so far;
    racing keeps every candidate that a corrected paired t-test does not find worse than the
    leader (``core.search.rungs``). The survivors are trained on the next folds only: what the
    earlier rungs scored is kept.

    Args:
        schema: The preprocess step's schema (the task, for the default scoring).
        previous: The plan of the rung that just ran.
        fold_results: The URIs of that rung's train results.
        plan: JSON: the next rung's plan (``{"tasks": [], ...}`` after the last rung).
        scoring: The metric that ranks candidates; empty for ``r2`` / ``accuracy``.
        packing: How trials are grouped into tasks (``core.search.packing.plan_trials``).

    Returns:
        The next rung's train tasks' numbers (the items of its loop); after the last rung,
        the URIs of every train result (what aggregate collects). One plain list: kfp.local
        loops only over a task's single return value.
    """
    from foldwise.components import storage
    from foldwise.components.core.jsonio import read_json, write_json
    from foldwise.components.core.scoring.metrics import default_scoring
    from foldwise.components.core.search.rungs import finished
    from foldwise.components.core.search.rungs import next_rung as plan_next

    described = read_json(schema.path)
    planned = plan_next(read_json(previous.path), list(fold_results), storage.read_bytes,
                        scoring or default_scoring(described["task"]), packing)
    write_json(plan.path, planned)
    plan.metadata.update({"rung": planned["rung"], "candidates": len(planned["alive"]),
                          "tasks": len(planned["tasks"])})
    if finished(planned):
        return planned["results"]
    return list(range(len(planned["tasks"])))
