"""Search kinds: one entry per pipeline a user can run, holding what every layer needs.

The command line (its subcommands, help and ``--grid`` handling), the application layer
(:mod:`foldwise.pipelines.runs`: what a plan checks and hands the pipeline), the display and
the compiler all read a kind from here; none of them branches on a kind's name. A new kind
is one :class:`Kind` passed to :func:`register` and its DAG file (a function building the
``@dsl.pipeline`` from :class:`~foldwise.pipelines.dags.cluster.ClusterSettings`).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError

GRID, SPACE = "grid", "space"  # what a kind's --grid file may hold


def _default_size(search, grid: list, space: list, folds: int) -> tuple[int, dict | None]:
    """How many points a space gives (``n_iter``), and no staged settings."""
    return int(search.choice.get("n_iter", options.option("n_iter").default)), None


def _no_arguments(n_iter: int, settings: dict | None, space: list) -> dict:
    return {}


def _one_stage(settings, configs: list, folds: list, packing: str) -> tuple[None, dict]:
    """One loop of train tasks: ``(no rungs, {"trials": its tasks})``."""
    from foldwise.components.core.search.packing import plan_trials

    return None, {"trials": len(plan_trials(configs, folds, packing))}


@dataclass(frozen=True)
class Kind:
    """A search kind: its pipeline and what the layers above it need to know about it.

    Attributes:
        name: The subcommand and the pipeline's name (``foldwise run NAME``).
        summary: One line for ``foldwise run --help``.
        description: The subcommand's ``--help`` text.
        builder: The DAG builder, ``"module:function"`` or the function: called with
            ``ClusterSettings`` (and ``rungs`` for a staged kind), returns the pipeline.
        candidates: What its ``--grid`` file may hold: :data:`GRID` (lists of values),
            :data:`SPACE` (values or distributions, sampled); empty for one configuration.
        needs_candidates: Whether ``--grid`` must be given.
        options: The :data:`options.SEARCH` options it takes (command line and Python).
        sklearn: The scikit-learn name users know it by.
        exports_model: Whether the best configuration is refitted and exported.
        promotes: Whether it promotes into ``--promote-to`` (and works in ``--workspace``)
            instead of publishing into ``--output``.
        staged: Whether its DAG is built with a number of rungs.
        describe: ``(plan, destination) -> lines`` of what it will do, shown before a run.
        size: ``(search, grid, space, folds) -> (n_iter, settings)``: checks the search's
            own settings; ``n_iter`` is how many points a space gives.
        arguments: ``(n_iter, settings, space) -> dict``: the pipeline arguments of its own.
        stages: ``(settings, configs, folds, packing) -> (rungs, {loop: tasks})``.
        estimate_note: What ``foldwise plan`` adds to its estimates.
        check_space: ``(space, where) -> space``: reads a :data:`SPACE` kind's space
            (default: random search's, ``core.search.sampling.check_space``).
        first_points: ``(settings, space, seed) -> points``: the configurations the run asks
            first, which the plan checks and shows; ``None``: ``n_iter`` sampled points.
        warm_arguments: ``(arguments, told, take_over) -> None``: hands a warm start's
            earlier configurations (``core.search.warm.told``) to the pipeline, if the kind
            learns from them (others take finished trials over in their train steps only).
        estimated: ``(plan) -> configurations`` that ``foldwise plan`` estimates, when the
            plan's own (those known before the run) are not all of them.
    """

    name: str
    summary: str
    description: str
    builder: str | Callable
    candidates: tuple[str, ...] = ()
    needs_candidates: bool = False
    options: tuple[str, ...] = ()
    sklearn: str = ""
    exports_model: bool = True
    promotes: bool = False
    staged: bool = False
    describe: Callable = field(default=lambda plan, destination: [], repr=False)
    size: Callable = field(default=_default_size, repr=False)
    arguments: Callable = field(default=_no_arguments, repr=False)
    stages: Callable = field(default=_one_stage, repr=False)
    estimate_note: str = ""
    check_space: Callable | None = field(default=None, repr=False)
    first_points: Callable | None = field(default=None, repr=False)
    warm_arguments: Callable | None = field(default=None, repr=False)
    estimated: Callable | None = field(default=None, repr=False)

    def read_space(self, space, where: str) -> list[dict]:
        """The kind's space, checked (``check_space``'s, or random search's)."""
        if self.check_space is not None:
            return self.check_space(space, where)
        from foldwise.components.core.search.sampling import check_space

        return check_space(space, where)

    def build(self, settings, rungs: int | None = None):
        """The ``@dsl.pipeline`` for ``settings`` (``rungs``: a staged kind's, else ignored).

        Raises:
            FoldwiseError: ``rungs`` below 1.
        """
        builder = self.builder
        if isinstance(builder, str):
            module, _, name = builder.partition(":")
            builder = getattr(importlib.import_module(module), name)
        if not self.staged or rungs is None:
            return builder(settings)
        if int(rungs) < 1:
            raise FoldwiseError(f"--rungs must be at least 1, got {rungs}")
        return builder(settings, int(rungs))


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add ``kind`` (or replace the one of its name); every layer offers it from now on."""
    unknown = [name for name in kind.options if name not in options.names(options.SEARCH)]
    if unknown:
        raise ValueError(f"{kind.name}: {unknown} are not search options")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind registered earlier (a test's own)."""
    _KINDS.pop(name, None)


def names() -> list[str]:
    """Every kind's name, in the order registered."""
    return list(_KINDS)


def get(name: str) -> Kind:
    """The kind called ``name``.

    Raises:
        FoldwiseError: No kind has that name (the message lists the known ones).
    """
    if name not in _KINDS:
        raise FoldwiseError(f"unknown pipeline {name!r}; known: {', '.join(_KINDS)}")
    return _KINDS[name]


# ----- what each kind shows before its run ---------------------------------------------------
def _trials(plan) -> str:
    count, folds = len(plan.configs), plan.schema["folds"]
    return f"{count} configurations × {folds} folds = {count * folds} trials"


def _describe_one(plan, destination: str) -> list[str]:
    lines = [f"model    {json.dumps(plan.configs[0]['params'], sort_keys=True)}"]
    if len(plan.configs) > 1:
        lines.append(f"baseline {json.dumps(plan.configs[1]['params'], sort_keys=True)}")
    return lines


def _describe_grid(plan, destination: str) -> list[str]:
    return [f"grid     {_trials(plan)}", f"export   {destination}"]


def _describe_sampled(plan, destination: str) -> list[str]:
    return [f"sampled  {_trials(plan)} (seed {plan.schema['seed']})", f"export   {destination}"]


def _describe_rungs(plan, destination: str) -> list[str]:
    return [f"rungs    {rung_line(plan)}", f"export   {destination}"]


def _describe_retrain(plan, destination: str) -> list[str]:
    return [f"search   {len(plan.configs)} configurations (the promoted one included, if any) "
            f"× {plan.schema['folds']} folds", f"promote  {destination}"]


def rung_line(plan) -> str:
    """A staged plan's rungs in words: ``24 × 1 fold → 8 × 3 folds (halving, factor 3)``."""
    from foldwise.components.core.search.rungs import plan_schedule

    settings, planned = plan_schedule(plan.arguments["halving"], plan.schema["folds"],
                                      plan.configs)
    racing = settings["elimination"] == "racing"
    unit = "fold" if settings["resource"] == "folds" else "epoch"
    steps = " → ".join(
        f"{'≤' if racing and rung else ''}{count} × {size} {unit}{'s' if size > 1 else ''}"
        for rung, (count, size) in enumerate(zip(planned.n_candidates, planned.n_resources,
                                                  strict=True)))
    how = (f"racing, confidence {settings['confidence']}" if racing
           else f"halving, factor {settings['factor']}")
    return f"{steps} ({how})"


# ----- successive halving's own settings ------------------------------------------------------
def _halving_size(search, grid: list, space: list, folds: int) -> tuple[int, dict]:
    """A halving search's settings, checked, and how many candidates a space gives.

    Raises:
        FoldwiseError: Both or neither of a grid and a space, or bad halving settings.
    """
    from foldwise.components.core.search.rungs import (
        check_halving,
        exhaust_candidates,
        fixed_epochs,
    )

    if bool(grid) == bool(space):
        raise FoldwiseError(f"{search.pipeline} needs its candidates: a grid (lists of "
                            "values) or a space with distributions, not both")
    halving = {name: search.choice[name] for name in options.HALVING}
    check_halving(halving, folds, fixed_epochs(search.model_spec))
    n_candidates = int(search.choice.get("n_candidates") or 0)
    if space and n_candidates < 1:
        n_candidates = exhaust_candidates(halving, folds, fixed_epochs(search.model_spec))
    return n_candidates, halving


def _halving_arguments(n_iter: int, settings: dict, space: list) -> dict:
    return {"n_candidates": n_iter if space else 0, "halving": settings}


def _halving_stages(settings: dict, configs: list, folds: list, packing: str):
    """The rungs the DAG needs, and the most train tasks each rung's loop can have."""
    from foldwise.components.core.search.packing import plan_trials
    from foldwise.components.core.search.rungs import (
        check_epochs_candidates,
        check_no_baseline,
        plan_schedule,
    )

    check_no_baseline(configs)
    if settings.get("resource") == "epochs":
        check_epochs_candidates(configs)
    settings, planned = plan_schedule(settings, len(folds), configs)
    loops, start = {}, 0
    for rung, (count, end) in enumerate(zip(planned.n_candidates, planned.n_resources,
                                            strict=True)):
        if settings["resource"] == "epochs":
            start, end = 0, len(folds)
        loops["trials" if rung == 0 else f"trials-rung-{rung}"] = len(plan_trials(
            configs[:count], folds[start:end], packing))
        start = end
    return planned.n_iterations, loops


# ----- Bayesian search's own settings -----------------------------------------------------------
def _bayes_size(search, grid: list, space: list, folds: int) -> tuple[int, dict]:
    """A Bayesian search's settings, checked; its space's parameters and conditions too.

    Raises:
        FoldwiseError: Bad settings or space, a baseline, or fewer than two folds.
    """
    from foldwise.components.core.search import bayes
    from foldwise.components.core.search.rounds import check_bayes

    if search.run["baseline"] != "none":
        raise FoldwiseError("bayes-search searches Keras configurations only: leave --baseline "
                            "out (grid-search and cross-validation score the baseline)")
    bayes.parameters(space)
    settings = check_bayes({name: search.choice[name] for name in options.BAYES}, folds)
    return settings["n_iter"], settings


def _bayes_arguments(n_iter: int, settings: dict, space: list) -> dict:
    return {"bayes": settings}


def _bayes_first(settings: dict, space: list, seed: int) -> list[dict]:
    """The first round's configurations: what the pipeline's study asks first."""
    from foldwise.components.core.search import bayes
    from foldwise.components.core.search.rounds import round_sizes

    return bayes.ask(bayes.new_study(space, seed), round_sizes(settings)[0], 0)


def _bayes_stages(settings: dict, configs: list, folds: list, packing: str):
    """The stages the DAG needs, and the most train tasks each stage's loop can have.

    The first stage's are its configurations' (those the plan asked); a later round's
    configurations are not known yet: at most one task per configuration (and fold, when
    nothing is packed).
    """
    from foldwise.components.core.search.packing import plan_trials
    from foldwise.components.core.search.rounds import round_sizes, stage_count, stage_folds

    resources = stage_folds(settings, len(folds))
    stages = stage_count(settings, len(folds))
    sizes = round_sizes(settings)
    earlier = sum(row["state"] == "finished" for row in settings.get("warm", [])
                  ) if settings.get("take_over") else 0
    loops = {}
    for slot in range(stages):
        stage = slot % len(resources)
        start = resources[stage - 1] if stage else 0
        count = resources[stage] - start
        loops["trials" if slot == 0 else f"trials-stage-{slot}"] = (
            len(plan_trials(configs, folds[:count], packing))
            + earlier * (len(folds) if packing == "none" else 1) if slot == 0
            else sizes[slot // len(resources)] * (count if packing == "none" else 1))
    return stages, loops


def _describe_rounds(plan, destination: str) -> list[str]:
    return [f"rounds   {round_line(plan)}", f"export   {destination}"]


def round_line(plan) -> str:
    """A Bayesian plan's rounds in words: ``60 configurations in 5 rounds of 12, ...``."""
    from foldwise.components.core.search.rounds import round_sizes, stage_folds

    settings = plan.arguments["bayes"]
    sizes = round_sizes(settings)
    resources = stage_folds(settings, plan.schema["folds"])
    racing = (f"raced over {' → '.join(map(str, resources))} folds (confidence "
              f"{settings['confidence']})" if len(resources) > 1 else "every fold each")
    return (f"{settings['n_iter']} configurations in {len(sizes)} rounds of {sizes[0]} "
            f"(seed {plan.schema['seed']}), {racing}")


def _bayes_warm(arguments: dict, told: list[dict], take_over: bool) -> None:
    """A warm start's configurations, told to the study before its first round."""
    arguments["bayes"].update(warm=told, take_over=take_over)  # the stages count them too


def _bayes_estimated(plan) -> list[dict]:
    """``n_iter`` configurations of the space, as many as the run asks in all."""
    from foldwise.components.core.jsonio import class_count
    from foldwise.components.core.search import bayes
    from foldwise.components.core.search.grid import candidates
    from foldwise.components.core.search.sampling import points_as_grid

    settings = plan.arguments["bayes"]
    points = bayes.ask(bayes.new_study(plan.arguments["param_distributions"],
                                       plan.schema["seed"]), settings["n_iter"], 0)
    return candidates(points_as_grid(points), plan.search.model_spec, plan.schema["task"],
                      class_count(plan.schema))


def _bayes_space(space, where: str) -> list[dict]:
    from foldwise.components.core.search.bayes import checked_space

    return checked_space(space, where)


def _random_arguments(n_iter: int, settings, space: list) -> dict:
    return {"n_iter": n_iter}


def _nested_size(search, grid: list, space: list, folds: int) -> tuple[int, dict]:
    """Nested cross-validation's settings: the outer folds and the inner search's own.

    Raises:
        FoldwiseError: A refit rule or objectives it cannot honour, or the inner search's
            own bad settings (as that search refuses them).
    """
    refit = str(search.choice.get("refit") or "best")
    if refit not in ("best", "one_standard_error"):
        raise FoldwiseError(f"nested-cv's inner searches choose by --refit best or "
                            f"one_standard_error, not {refit!r}: serving costs are not measured "
                            "in a nested run")
    if search.run.get("objectives"):
        raise FoldwiseError("nested-cv does not weigh serving costs: leave --objectives out "
                            "(run a search with --objectives for the Pareto front)")
    inner = str(search.choice["inner_search"])  # Search.from_values fills in the defaults
    settings = {"outer_folds": int(search.choice["outer_folds"]), "inner": inner}
    inner_folds = int(search.run["folds"])  # one inner search's folds
    if inner == "halving":
        n_candidates, settings["halving"] = _halving_size(search, grid, space, inner_folds)
        return n_candidates, settings
    if inner == "bayes":
        if grid:
            raise FoldwiseError("nested-cv --inner-search bayes needs a space: give the --grid "
                                "file at least one distribution, e.g. learning_rate: "
                                "{loguniform: [1.0e-4, 1.0e-1]}")
        n_iter, settings["bayes"] = _bayes_size(search, grid, space, inner_folds)
        return n_iter, settings
    return int(search.choice["n_iter"] or options.option("n_iter").default), settings


def _nested_arguments(n_iter: int, settings: dict, space: list) -> dict:
    arguments = {"outer_folds": settings["outer_folds"]}
    if settings["inner"] == "halving":
        return {**arguments, **_halving_arguments(n_iter, settings["halving"], space)}
    if settings["inner"] == "bayes":
        return {**arguments, **_bayes_arguments(n_iter, settings["bayes"], space)}
    return {**arguments, "n_iter": n_iter}


def _nested_stages(settings: dict, configs: list, folds: list, packing: str):
    """The inner searches' stages and train tasks (each outer fold's), then the outer folds'."""
    from foldwise.components.core.search.packing import plan_trials

    outer = settings["outer_folds"]
    inner = folds[:len(folds) - outer]
    one = inner[:len(inner) // outer]  # one outer fold's inner folds
    if settings["inner"] == "grid":
        return None, {"trials": len(plan_trials(configs, inner, packing)), "outer-trials": outer}
    if settings["inner"] == "halving":
        rungs, loops = _halving_stages(settings["halving"], configs, one, packing)
    else:
        rungs, loops = _bayes_stages(settings["bayes"], configs, one, packing)
    named = {"trials" if name == "trials" else f"trials-stage-{k}": count * outer
             for k, (name, count) in enumerate(loops.items())}
    return rungs, {**named, "outer-trials": outer}


def _describe_nested(plan, destination: str) -> list[str]:
    nested = plan.schema["nested"]
    inner = {"halving": "successive halving of", "bayes": "a Bayesian search of"}.get(
        plan.search.choice.get("inner_search") or "grid", "")
    count = len(plan.configs)
    what = f"{inner} {count}" if inner else f"{count}"
    return [f"nested   {nested['outer_folds']} outer folds, each searching {what} "
            f"configurations on {nested['inner_folds']} inner folds of its own "
            "training rows; the chosen one is scored on the outer fold"]


REFIT = ("refit", "refit_epochs", "serving_image")
WARM = ("warm_start",)
DISTRIBUTIONS = ("; a value may be a distribution: {loguniform|uniform: [low, high]}, "
                 "{randint: [low, high]} (high excluded) or {choice: [...]}")

register(Kind(
    "cross-validation", "K-fold cross-validation of one Keras model",
    "Leakage-free K-fold cross-validation of a Keras model, run as a KFP pipeline on the "
    "embedded engine; results and a report are published with a manifest.",
    "foldwise.pipelines.dags.cross_validation:build_cross_validation",
    sklearn="cross_validate", exports_model=False, describe=_describe_one))
register(Kind(
    "grid-search", "grid search with refit and a model that serves raw rows",
    "Grid search of Keras models with leakage-free K-fold cross-validation, run as a KFP "
    "pipeline on the embedded engine; the best configuration is refitted on all rows and "
    "exported with its preprocessing, cv_results, a report and a manifest.",
    "foldwise.pipelines.dags.grid_search:build_grid_search", candidates=(GRID,),
    needs_candidates=True, options=(*WARM, *REFIT), sklearn="GridSearchCV",
    describe=_describe_grid))
register(Kind(
    "random-search", "random search (RandomizedSearchCV) with refit and export",
    "Random search of Keras models: --n-iter configurations sampled from the --grid file's "
    "lists and distributions ({loguniform|uniform|randint|choice: ...}), cross-validated "
    "without leakage on the embedded engine; the best is refitted and exported like a grid "
    "search's.",
    "foldwise.pipelines.dags.random_search:build_random_search", candidates=(SPACE,),
    needs_candidates=True, options=("n_iter", *WARM, *REFIT), sklearn="RandomizedSearchCV",
    describe=_describe_sampled, arguments=_random_arguments))
register(Kind(
    "halving-search", "successive halving or racing by folds, with refit and export",
    "Successive halving (HalvingGridSearchCV, or HalvingRandomSearchCV when the --grid file "
    "holds distributions) with folds as the resource: each rung scores the survivors on more "
    "folds, keeping the folds already scored; --elimination racing drops only candidates a "
    "corrected paired t-test finds worse than the leader. The winner is refitted and "
    "exported.",
    "foldwise.pipelines.dags.halving_search:build_halving_search", candidates=(GRID, SPACE),
    needs_candidates=True, options=("n_candidates", *options.HALVING, *WARM, *REFIT),
    sklearn="HalvingGridSearchCV", staged=True, describe=_describe_rungs, size=_halving_size,
    arguments=_halving_arguments, stages=_halving_stages,
    estimate_note="estimated as its full grid: an upper bound"))
register(Kind(
    "bayes-search", "Bayesian search in rounds, racing inside each, with refit and export",
    "Bayesian search (scikit-optimize's BayesSearchCV): Optuna's TPE asks --batch "
    "configurations of the --grid file's space per round, up to --n-iter; inside each round "
    "a configuration that a corrected paired t-test over the folds scored so far finds worse "
    "than the incumbent takes no more folds (--racing off: every fold). A parameter may exist "
    "only for some values of an earlier one (dropout: {uniform: [0, 0.5], when: {layers: "
    "[2, 3]}}). The best is refitted and exported like a grid search's.",
    "foldwise.pipelines.dags.bayes_search:build_bayes_search", candidates=(SPACE,),
    needs_candidates=True, options=(*options.BAYES, *WARM, *REFIT), sklearn="BayesSearchCV",
    staged=True, describe=_describe_rounds, size=_bayes_size, arguments=_bayes_arguments,
    stages=_bayes_stages, check_space=_bayes_space, first_points=_bayes_first,
    warm_arguments=_bayes_warm, estimated=_bayes_estimated,
    estimate_note="estimated as every configuration on every fold in one stage: an upper "
                  "bound on its training, not on its stages' start-ups (each stage waits for "
                  "the one before)"))
register(Kind(
    "nested-cv", "nested cross-validation: what a search's best scores on new rows",
    "Nested cross-validation (cross_validate(GridSearchCV(...)) in scikit-learn): each of "
    "--outer-folds outer folds runs the search (--inner-search grid: the --grid file's grid, "
    "or --n-iter points sampled when it holds distributions; halving; bayes) on --folds inner "
    "folds of its own training rows, "
    "every transform fitted on those rows only; the configuration it chooses is trained on "
    "them and scored on the outer fold. The answer: the outer scores and their spread, each "
    "outer fold's choice, how often each configuration won and the optimism of the inner best "
    "score. No model is exported: run grid-search for it.",
    "foldwise.pipelines.dags.nested_cv:build_nested_cv", candidates=(GRID, SPACE),
    needs_candidates=True,
    options=("inner_search", "outer_folds", "refit", "n_iter", "n_candidates",
             *options.HALVING, "batch", "racing"),
    sklearn="cross_validate(GridSearchCV)", exports_model=False, staged=True,
    describe=_describe_nested, size=_nested_size, arguments=_nested_arguments,
    stages=_nested_stages,
    estimate_note="estimated as every configuration on every inner and outer fold: an upper "
                  "bound (the outer folds train only the chosen ones; a halving or Bayesian "
                  "inner search trains fewer)"))
register(Kind(
    "retrain", "search, refit, promote only if better than the promoted model",
    "Grid search (or one configuration) on fresh data; the winner is exported as a new "
    "version under --promote-to and promoted (current.json) only if it beats the promoted "
    "model's configuration cross-validated on the same folds.",
    "foldwise.pipelines.dags.retrain:build_retrain", candidates=(GRID,), options=("serving_image",),
    sklearn="GridSearchCV", promotes=True, describe=_describe_retrain))
