"""KFP component: expand the grid into one trial per (configuration, fold)."""

from kfp.dsl import Artifact, Input, Output

from foldwise.components.image import component


@component
def plan_trials(
    schema: Input[Artifact],
    fold_ids: list,
    plan: Output[Artifact],
    param_grid: list = [],  # noqa: B006 - KFP reads defaults from the signature
    model_spec: dict = {},  # noqa: B006
    baseline: str = "none",
    champion: list = [],  # noqa: B006
    packing: str = "none",
    param_distributions: list = [],  # noqa: B006
    n_iter: int = 10,
    seed: int = 0,
    halving: dict = {},  # noqa: B006
    rungs: int = 0,
    bayes: dict = {},  # noqa: B006
    objectives: str = "",
) -> list:
    """Plan the train tasks: every configuration of the grid on every fold.

    The plan travels as an artifact, however large the search: only the tasks' numbers are
    a parameter (the train loop's items), so neither kfp.local's command lines nor a
    cluster's pod specs grow with the number of configurations.

    Args:
        schema: The preprocess step's schema (task and classes decide defaults and checks).
        fold_ids: The folds.
        plan: JSON ``{"tasks": [{"configs": [{"config_id", "params", "searched"}],
            "folds": [...]}, ...]}``: each train task's configurations and folds (a halving
            search's plan carries its schedule and candidates too: ``core.search.rungs``).
        param_grid: Mappings of parameter → values, expanded like scikit-learn's
            ``ParameterGrid``; empty to train ``model_spec`` alone.
        model_spec: Model options fixed for every configuration the grid does not vary
            (the one configuration, when ``param_grid`` is empty).
        baseline: ``mlp`` to add each configuration's scikit-learn MLP twin, or ``none``.
        champion: The promoted model's configuration (retrain), listed first so that it is
            cross-validated on the same folds and wins ties.
        packing: ``none``: one task per (configuration, fold); ``folds``: one task per
            configuration, its folds trained at once as one packed program; ``configs``:
            configurations that pack share tasks too (see ``core.search.packing.plan_trials``).
        param_distributions: A random search's space instead of ``param_grid``
            (``core.search.sampling``): ``n_iter`` points are sampled here, at run time.
        n_iter: How many points a random search samples.
        seed: The sampler's seed (the run's).
        halving: Successive-halving settings (``core.search.rungs.HALVING_KEYS``); empty for a
            search that scores every candidate on every fold. Then this is rung 0.
        rungs: How many rungs (halving) or stages (Bayesian search) the pipeline was built
            with.
        bayes: A Bayesian search's settings (``core.search.rounds.BAYES_KEYS``): the study of
            ``param_distributions`` asks its first round here (``core.search.rounds``).
        objectives: The run's objectives (``core.scoring.pareto``): with costs among them,
            the Bayesian search's study weighs them against the score (multi-objective).

    Returns:
        ``[0, 1, ...]``: the train tasks' numbers in ``plan``, the items of the train loop.
    """
    from foldwise.components.core.jsonio import class_count, read_json, write_json
    from foldwise.components.core.search.grid import candidates
    from foldwise.components.core.search.packing import plan_trials
    from foldwise.components.core.training.vmapped import select_backend

    select_backend()  # JAX, where models train: a user's builder is tried here as there
    described = read_json(schema.path)
    nested = described.get("nested")
    if nested and int(rungs) and not (bayes or halving):
        from foldwise.components.core.errors import FoldwiseError

        raise FoldwiseError(
            f"this nested-cv pipeline was built with {rungs} stages for a halving or Bayesian "
            "inner search, but the run's inner search has none: compile it without --rungs")
    if nested and (bayes or halving):  # each outer fold's own search, on its inner folds
        from foldwise.components.core.search import nested as nested_plans
    if bayes:
        from foldwise.components.core.scoring.pareto import costs_named
        from foldwise.components.core.search import rounds

        def first_round(folds: list) -> dict:
            return rounds.first_round(param_distributions, seed, folds, bayes, rungs, packing,
                                      rounds.configurations(model_spec, described, seed),
                                      costs_named(objectives))

        planned = (nested_plans.first(nested, first_round) if nested
                   else first_round(fold_ids))
        write_json(plan.path, planned)
        plan.metadata.update({"tasks": len(planned["tasks"]), "configurations": len(
            nested_plans.configurations(planned) if nested else planned["candidates"])})
        return list(range(len(planned["tasks"])))
    if halving and param_distributions and int(n_iter) < 1:
        from foldwise.components.core.search.rungs import exhaust_candidates, fixed_epochs

        searched = len(nested["inner"][0]) if nested else len(fold_ids)  # one search's folds
        n_iter = exhaust_candidates(halving, searched, fixed_epochs(model_spec))
    configs = candidates(param_grid, model_spec, described["task"], class_count(described),
                         champion=champion, baseline=baseline,
                         distributions=param_distributions, n_iter=n_iter, seed=seed)
    from foldwise.components.core.models.builder_checks import tensorflow_operations

    needs = tensorflow_operations(configs, described, model_spec.get("builder"), int(seed))
    configs = [{**c, "tensorflow": needs[c["config_id"]]} if c["config_id"] in needs else c
               for c in configs]
    if halving:
        from foldwise.components.core.search.rungs import first_rung

        def rung(folds: list) -> dict:
            return first_rung(configs, folds, halving, rungs, packing)

        planned = nested_plans.first(nested, rung) if nested else rung(fold_ids)
    else:
        planned = {"tasks": plan_trials(configs, fold_ids, packing)}
    write_json(plan.path, planned)
    plan.metadata.update({"tasks": len(planned["tasks"]), "configurations": len(configs)})
    return list(range(len(planned["tasks"])))
