"""KFP component: after every inner search of a nested cross-validation, choose per outer fold."""

from typing import List

from kfp.dsl import Artifact, Dataset, Input, Output

from foldwise.components.image import component


@component
def nested_choose(
    schema: Input[Artifact],
    inner_plan: Input[Artifact],
    fold_results: List[str],
    plan: Output[Artifact],
    chosen: Output[Artifact],
    cv_results: Output[Dataset],
    scoring: str = "",
    refit: str = "best",
) -> list:
    """Rank the configurations on each outer fold's inner folds; plan the chosen ones' training.

    Each outer fold's choice reads its own inner folds' scores only (``core.results.nested``),
    as scikit-learn's ``GridSearchCV`` inside ``cross_validate`` does; the chosen
    configuration then trains on the outer fold's training rows (one task per configuration
    and the outer folds that chose it).

    Args:
        schema: The preprocess step's schema (``nested``: which fold is which).
        inner_plan: The inner search's last plan (plan_trials', or its last stage's: every
            configuration, as trained).
        fold_results: The URIs of the inner train results.
        plan: JSON: the outer folds' train tasks.
        chosen: JSON ``{"choices": [per outer fold], "scoring", "refit", "inner_search"}``
            (``grid``, ``halving`` or ``bayes``).
        cv_results: CSV: each outer fold's inner search in scikit-learn's ``cv_results_``
            shape, ``outer_fold`` first (``split<i>``: its inner fold ``i``).
        scoring: The metric that ranks; empty for ``r2`` / ``accuracy``.
        refit: ``best`` or ``one_standard_error``: each inner search's rule.

    Returns:
        The outer train tasks' numbers (the items of their loop).
    """
    from foldwise.components import storage
    from foldwise.components.core.jsonio import class_count, read_json, write_json
    from foldwise.components.core.results.aggregate import read_fold_results
    from foldwise.components.core.results.nested import choices
    from foldwise.components.core.scoring.metrics import default_scoring, metric_names
    from foldwise.components.core.search.nested import configurations
    from foldwise.components.core.search.packing import plan_trials

    described = read_json(schema.path)
    scoring = scoring or default_scoring(described["task"])
    results = read_fold_results([storage.read_bytes(uri).decode() for uri in fold_results])
    names = list(metric_names(described["task"], class_count(described)))
    tables, picked = choices(results, described, names, scoring, refit)
    last = read_json(inner_plan.path)
    configs = configurations(last)
    outer_plans = last.get("outer", [])
    inner = ("bayes" if any("study" in p for p in outer_plans) else
             "halving" if any("schedule" in p for p in outer_plans) else "grid")
    tasks = []
    for config_id in dict.fromkeys(p["config_id"] for p in picked if p["config_id"]):
        folds = [p["fold"] for p in picked if p["config_id"] == config_id]
        tasks += plan_trials([configs[config_id]], folds, "folds")
    if not tasks:  # every outer fold's search failed: a loop may not be empty
        tasks = [{"configs": [], "folds": []}]
    write_json(plan.path, {"tasks": tasks})
    write_json(chosen.path, {"choices": picked, "scoring": scoring, "refit": refit,
                             "inner_search": inner})
    tables.to_csv(cv_results.path, index=False)
    plan.metadata.update({"tasks": len(tasks)})
    return list(range(len(tasks)))
