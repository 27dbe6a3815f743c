"""KFP component: after a stage of a Bayesian search, plan the next one."""

from typing import List

from kfp.dsl import Artifact, Dataset, Input, Output

from foldwise.components.image import component


@component
def next_round(
    schema: Input[Artifact],
    previous: Input[Artifact],
    fold_results: List[str],
    plan: Output[Artifact],
    model_spec: dict = {},  # noqa: B006 - KFP reads defaults from the signature
    seed: int = 0,
    scoring: str = "",
    packing: str = "none",
    prepared: Input[Dataset] = None,
    scaler_state: Input[Artifact] = None,
    encoder_state: Input[Artifact] = None,
) -> list:
    """Race the round's configurations, or tell the study the round and ask the next.

    Within a round (``core.search.rounds``), a configuration that a corrected paired t-test
    over the folds scored so far finds worse than the incumbent takes no more folds, and the
    study is told it was pruned. After a round's last stage, the study is told every
    survivor's mean score and asks the next round's batch, planned on the first folds.

    Args:
        schema: The preprocess step's schema (the task, for the default scoring).
        previous: The plan of the stage that just ran.
        fold_results: The URIs of that stage's train results.
        plan: JSON: the next stage's plan (``{"tasks": [], ...}`` after the last stage).
        model_spec: Model options fixed for every configuration the space does not vary.
        seed: The run's seed (a user's builder is tried with it).
        scoring: The metric the study optimizes; empty for ``r2`` / ``accuracy``.
        packing: How trials are grouped into tasks (``core.search.packing.plan_trials``).
        prepared: The preprocessed table (raw columns): with serving costs among the
            study's objectives, the stage's configurations are timed on its rows, here, one
            after another (``core.serving.costs``), before racing and telling.
        scaler_state: The ``scale_folds`` step's states (each fold's).
        encoder_state: The ``one_hot_encode_folds`` step's states (each fold's).

    Returns:
        The next stage's train tasks' numbers (the items of its loop); after the last stage,
        the URIs of every train result (what aggregate collects).
    """
    from foldwise.components import storage
    from foldwise.components.core.jsonio import read_json, write_json
    from foldwise.components.core.scoring.metrics import default_scoring
    from foldwise.components.core.search import rounds
    from foldwise.components.core.training.vmapped import select_backend

    select_backend()  # JAX, where models train: a user's builder is tried here as there
    described = read_json(schema.path)

    def measure(entries: list, skip: set) -> dict:
        from foldwise.components.core.data.whole_table import fold_serving_states
        from foldwise.components.core.serving.costs import measure_configs

        return measure_configs(entries, storage.read_bytes, prepared.path, fold_serving_states(
            described, read_json(scaler_state.path), read_json(encoder_state.path)),
            described, model_spec.get("builder"), skip)

    planned = rounds.next_stage(read_json(previous.path), list(fold_results),
                                storage.read_bytes,
                                scoring or default_scoring(described["task"]), packing,
                                rounds.configurations(model_spec, described, seed),
                                measure if prepared is not None else None)
    write_json(plan.path, planned)
    plan.metadata.update({"round": planned["round"], "stage": planned["stage"],
                          "candidates": len(planned["alive"]), "tasks": len(planned["tasks"])})
    if rounds.finished(planned):
        return planned["results"]
    return list(range(len(planned["tasks"])))
