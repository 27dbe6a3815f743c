"""Model-based search in rounds, racing inside each round, planned stage by stage.

A Bayesian search is one static DAG, like a halving search: ``rounds × stages`` stages, each
a plan step followed by a loop of train tasks. The plan is a JSON artifact that carries the
search forward: the optimizer's study (:mod:`~foldwise.components.core.search.bayes`), every
candidate asked so far, what each scored on which fold, and the URIs of every result.

- A round asks the study for a batch of configurations and trains them on the folds.
- With racing (the default), a round's folds come in stages (``2`` folds, then the rest, as
  halving's racing schedule gives them): after each stage but the last, a configuration that
  the corrected paired t-test over the folds scored so far finds worse than the incumbent
  (the best configuration scored on every fold, or the round's leader before there is one) at
  ``confidence`` takes no more folds. The study is told it was *pruned*, with its score on
  the folds it had: never a finished score.
- After a round's last stage its survivors are told their mean score over every fold, the
  study asks the next round's batch, and that round's first stage is planned.

A configuration the study asks again (two points that make one configuration) is not trained
again: its trial is told what the configuration came to.

With costs among the objectives (``core.scoring.pareto``), the study is multi-objective: a
finished configuration is told its score and its costs (measured by the train tasks), and
racing drops a configuration only when the t-test finds it worse than one that costs no
more on every cost, since a cheaper model may belong on the front whatever it scores.
"""

from __future__ import annotations

import json
import math

import numpy as np

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.jsonio import class_count
from foldwise.components.core.models.builder_checks import tensorflow_operations
from foldwise.components.core.scoring import pareto
from foldwise.components.core.search import bayes
from foldwise.components.core.search.grid import candidates
from foldwise.components.core.search.halving import survivors
from foldwise.components.core.search.packing import plan_trials
from foldwise.components.core.search.sampling import points_as_grid

BAYES_KEYS = options.BAYES
WARM_KEYS = ("warm", "take_over")  # a warm start's, beside the settings (first_round)
AUTO_BATCH = 4  # the least a round asks when the batch is left to the search
FACTOR = 3  # racing's stages grow the folds as halving's racing schedule does


def check_bayes(settings: dict, folds: int) -> dict:
    """The Bayesian search's settings, checked and completed (a warm start's left out).

    Raises:
        FoldwiseError: An unknown setting or a bad value (the message names it).
    """
    unknown = sorted(set(settings) - set(BAYES_KEYS) - set(WARM_KEYS))
    if unknown:
        raise FoldwiseError(f"unknown Bayesian search setting {unknown[0]!r} (known: "
                            f"{', '.join(BAYES_KEYS)})")
    n_iter = settings.get("n_iter")
    n_iter = _whole(options.option("n_iter").default if n_iter is None else n_iter, "n_iter")
    batch = settings.get("batch") or 0
    batch = _whole(batch, "batch") if batch else max(AUTO_BATCH, math.ceil(n_iter / 5))
    batch = min(batch, n_iter)
    racing = settings.get("racing")
    racing = "on" if racing is None or racing == "" else racing
    if isinstance(racing, str):
        if racing not in options.choices("racing"):
            raise FoldwiseError(f"racing is on or off, got {racing!r}")
        racing = racing == "on"
    confidence = float(settings.get("confidence") or options.option("confidence").default)
    options.check_bounded("confidence", confidence)
    if folds < 2:
        raise FoldwiseError(f"a Bayesian search needs at least 2 folds, got {folds}")
    return {"n_iter": n_iter, "batch": batch, "racing": bool(racing) and folds > 2,
            "confidence": confidence}


def _whole(value, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FoldwiseError(f"{name} must be a whole number, got {value!r}") from None
    if not number.is_integer() or number < 1:
        raise FoldwiseError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(number)


def stage_folds(settings: dict, folds: int) -> list[int]:
    """How many folds each stage of a round has scored by its end: ``[2, 5]`` for 5 folds."""
    if not settings["racing"]:
        return [folds]
    resources, size = [], 2
    while size < folds:
        resources.append(size)
        size = max(size + 1, int(size * FACTOR))
    return [*resources, folds]


def round_count(settings: dict) -> int:
    """How many rounds ask the ``n_iter`` configurations, ``batch`` at a time."""
    return math.ceil(settings["n_iter"] / settings["batch"])


def stage_count(settings: dict, folds: int) -> int:
    """How many stages (plan step and train loop) the search's DAG needs."""
    checked = check_bayes(settings, folds)
    return round_count(checked) * len(stage_folds(checked, folds))


def round_sizes(settings: dict) -> list[int]:
    """How many configurations each round asks."""
    sizes, left = [], settings["n_iter"]
    while left > 0:
        sizes.append(min(settings["batch"], left))
        left -= sizes[-1]
    return sizes


def first_round(space, seed: int, fold_ids: list, settings: dict, stages: int, packing: str,
                make_configs, costs: tuple[str, ...] | list[str] = ()) -> dict:
    """The plan of the first stage: the study's first batch on the first folds.

    Args:
        space: The search space (:func:`bayes.parameters`).
        seed: The study's seed (the run's).
        fold_ids: The run's folds.
        settings: The Bayesian search's settings (:func:`check_bayes` reads them).
        stages: How many stages the pipeline was built with.
        packing: How trials are grouped into tasks (``core.search.packing.plan_trials``).
        make_configs: ``points -> configurations``, one each, in order (``core.search.grid``).
        costs: Costs weighed against the score (``core.scoring.pareto``): the study runs
            multi-objective, told each finished configuration's score and costs, and racing
            drops a configuration only for one that is no costlier.

    Raises:
        FoldwiseError: A bad space or setting, or a pipeline built with another number of
            stages than the search needs.
    """
    folds = sorted(int(f) for f in fold_ids)
    settings = dict(settings)
    warm, take_over = settings.pop("warm", []), bool(settings.pop("take_over", False))
    settings = check_bayes(settings, len(folds))
    resources = stage_folds(settings, len(folds))
    needed = round_count(settings) * len(resources)
    if needed != int(stages):
        raise FoldwiseError(
            f"this search needs {needed} stages ({round_count(settings)} rounds of "
            f"{len(resources)}) but the pipeline was built with {stages}: compile it with "
            f"--rungs {needed}")
    plan = {"bayes": settings, "study": bayes.new_study(space, seed, costs=len(costs)),
            "costs": list(costs), "measured": {}, "folds": folds,
            "resources": resources, "stages": int(stages), "slot": 0, "round": -1,
            "stage": 0, "candidates": [], "trials": {}, "alive": [], "told": [],
            "scores": {}, "fold_sizes": [], "results": [], "history": []}
    plan, earlier = _warm(plan, warm, make_configs)
    planned = _ask(plan, make_configs, packing)
    if take_over and earlier:  # planned on every fold: the train tasks take them over
        tasks = plan_trials(earlier, folds, packing)
        tags = {"round": -1, "stage": 0, "n_resources": len(folds)}
        planned["tasks"] = [*[task for task in planned["tasks"] if task["configs"]],
                            *[{**task, "tags": tags} for task in tasks]]
    return planned


def _warm(plan: dict, warm: list[dict], make_configs) -> tuple[dict, list[dict]]:
    """The plan with an earlier run's configurations told (``core.search.warm.told``).

    A configuration is told only when it is a point of this space that makes the same
    configuration here (the same fixed options). Returns the plan and those that finished
    (scored on every fold), which a warm start with the earlier trials at hand takes over.
    """
    study, told, finished, trials = plan["study"], list(plan["told"]), [], dict(plan["trials"])
    known = []
    for row in warm:
        point = bayes.project(study, row["params"])
        if point is None:
            continue
        (config,) = make_configs([point])
        if config["config_id"] != row["config_id"] or config["config_id"] in known:
            continue
        known.append(config["config_id"])
        costs = [row.get("costs", {}).get(cost) for cost in plan["costs"]]
        number = bayes.tell_earlier(study, point, row["value"], row["state"], costs)
        trials[str(number)] = config["config_id"]
        told.append({"config_id": config["config_id"], "state": row["state"]
                     if study["trials"][number]["state"] == bayes.PRUNED
                     else study["trials"][number]["state"],
                     "value": study["trials"][number]["value"], "costs": costs})
        if study["trials"][number]["state"] == bayes.FINISHED:
            finished.append({**config, "round": -1})
    return ({**plan, "told": told, "trials": trials, "candidates": [*plan["candidates"],
                                                                       *finished]}, finished)


def finished(plan: dict) -> bool:
    """Whether every stage has run (the plan then holds every result's URI)."""
    return plan["slot"] >= plan["stages"]


def _ask(plan: dict, make_configs, packing: str) -> dict:
    """The plan with the next round's batch asked and its first stage's tasks."""
    round_ = plan["round"] + 1
    study = plan["study"]
    points = bayes.ask(study, round_sizes(plan["bayes"])[round_], round_)
    numbers = range(len(study["trials"]) - len(points), len(study["trials"]))
    # scored before (a warm start's raced-out ones too): told what it came to, not trained
    known = {c["config_id"] for c in plan["candidates"]} | {h["config_id"] for h in plan["told"]}
    trials, fresh = dict(plan["trials"]), []
    for number, config in zip(numbers, make_configs(points), strict=True):
        trials[str(number)] = config["config_id"]
        if config["config_id"] not in known:
            known.add(config["config_id"])
            fresh.append({**config, "round": round_})
    planned = {**plan, "round": round_, "stage": 0, "trials": trials,
               "candidates": [*plan["candidates"], *fresh],
               "alive": [c["config_id"] for c in fresh]}
    return _with_tasks(_tell(planned), packing)


def _tell(plan: dict) -> dict:
    """Tell the study every pending trial whose configuration has an outcome now.

    A configuration asked twice (two points that make one configuration) is trained once;
    each of its trials is told what it came to.
    """
    outcome = {h["config_id"]: h for h in plan["told"]}
    for number, cid in plan["trials"].items():
        trial = plan["study"]["trials"][int(number)]
        if trial["state"] is None and cid in outcome:
            bayes.tell(plan["study"], int(number), outcome[cid]["value"], outcome[cid]["state"],
                       outcome[cid].get("costs"))
    return plan


def _with_tasks(plan: dict, packing: str) -> dict:
    """The plan with its stage's train tasks (none once every stage has run).

    A stage with nothing to train (its round raced out, or asked only configurations
    scored before) has one idle task: a pipeline's loop may not be empty.
    """
    if finished(plan):
        return {**plan, "tasks": []}
    stage, resources = plan["stage"], plan["resources"]
    alive = set(plan["alive"])
    configs = [c for c in plan["candidates"] if c["config_id"] in alive]
    start = resources[stage - 1] if stage else 0
    tags = {"round": plan["round"], "stage": stage, "n_resources": resources[stage]}
    tasks = plan_trials(configs, plan["folds"][start:resources[stage]], packing) or [
        {"configs": [], "folds": []}]
    return {**plan, "tasks": [{**task, "tags": tags} for task in tasks]}


def next_stage(plan: dict, result_uris: list[str], read_bytes, scoring: str, packing: str,
               make_configs, measure=None) -> dict:
    """The plan of the stage after ``plan``'s, once its tasks' results are in.

    A stage whose round raced out entirely trains nothing (one idle task); nor do the
    stages after it in the round, and the next round is asked as usual.

    Args:
        plan: The stage that just ran.
        result_uris: The URIs of its train results.
        read_bytes: Reads the file a URI names.
        scoring: The metric the study optimizes (greater is better).
        packing: How trials are grouped into tasks.
        make_configs: ``points -> configurations`` for the next round's batch.
        measure: ``(entries, skip) -> {config_id: serving costs}``
            (``core.serving.costs.measure_configs``): with a cost of the serving model
            among the plan's ``costs``, the stage's configurations not measured yet are
            measured (kept under ``serving``) before racing and telling.

    Returns:
        The new plan, with every result URI so far under ``results`` (:func:`finished`
        once every stage has run).
    """
    entries = [entry for uri in result_uris for entry in json.loads(read_bytes(uri))]
    scores = dict(plan["scores"])
    for entry in entries:
        value = entry["scores"].get(scoring)
        failed = entry.get("fit_error") or value is None or not math.isfinite(float(value))
        scores[f"{entry['config_id']}|{int(entry['fold'])}"] = None if failed else float(value)
    serving = dict(plan.get("serving", {}))
    if measure is not None and set(plan.get("costs", [])) & set(pareto.SERVED):
        serving.update(measure(entries, set(serving)))
    measured = _measured(plan, entries, serving)
    sizes = [*plan["fold_sizes"], *[[float(e["n_train"]), float(e["n_validation"])]
                                    for e in entries if e.get("n_train")
                                    and e.get("n_validation")]][-100:]
    stage, resources = plan["stage"], plan["resources"]
    scored = plan["folds"][:resources[stage]]
    table = {cid: [_score(scores, cid, fold) for fold in scored] for cid in plan["alive"]}
    following = {**plan, "scores": scores, "fold_sizes": sizes, "slot": plan["slot"] + 1,
                 "measured": measured, "serving": serving,
                 "results": [*plan["results"], *result_uris]}
    last_stage = stage + 1 >= len(resources)
    kept = list(plan["alive"]) if last_stage else _race(following, table, scored)
    state = bayes.FINISHED if last_stage else bayes.PRUNED
    told = [*plan["told"], *[_outcome(cid, table[cid], state, measured.get(cid))
                             for cid in plan["alive"] if cid not in kept or last_stage]]
    history = {"round": plan["round"], "stage": stage, "n_resources": resources[stage],
               "candidates": plan["alive"], "kept": kept}
    following = _tell({**following, "told": told, "history": [*plan["history"], history],
                       "alive": [] if last_stage else kept})
    if finished(following):
        return {**following, "tasks": []}
    if not last_stage:
        return _with_tasks({**following, "stage": stage + 1}, packing)
    return _ask(following, make_configs, packing)


def configurations(model_spec: dict, schema: dict, seed: int):
    """``points -> configurations`` for a run: each point completed by ``model_spec``.

    Each configuration is normalized as a grid's is (``core.search.grid.candidates``) and,
    for a user's builder, marked when it trains through TensorFlow.
    """
    def make(points: list[dict]) -> list[dict]:
        configs = [candidates(points_as_grid([point]), model_spec, schema["task"],
                              class_count(schema))[0] for point in points]
        needs = tensorflow_operations(configs, schema, model_spec.get("builder"), int(seed))
        return [{**c, "tensorflow": needs[c["config_id"]]} if c["config_id"] in needs else c
                for c in configs]

    return make


def _score(scores: dict, cid: str, fold: int) -> float:
    value = scores.get(f"{cid}|{fold}")
    return math.nan if value is None else float(value)


def _outcome(cid: str, values: list[float], state: str, costs: list | None = None) -> dict:
    mean = float(np.mean(values)) if values else math.nan
    if not math.isfinite(mean):
        state = bayes.FAILED
    return {"config_id": cid, "state": state, "value": mean if math.isfinite(mean) else None,
            "costs": costs}


def _measured(plan: dict, entries: list[dict], serving: dict) -> dict:
    """Each configuration's costs so far (the plan's ``costs``, in order; ``None``: unknown).

    ``latency`` and ``model_bytes`` come from the serving measurement
    (``core.serving.costs``), ``n_parameters`` from its first fold's entry.
    """
    if not plan.get("costs"):
        return dict(plan.get("measured", {}))
    found = {cid: list(costs) for cid, costs in plan.get("measured", {}).items()}
    for entry in entries:
        found.setdefault(entry["config_id"], [None] * len(plan["costs"]))
    for cid, costs in found.items():
        own = [e for e in entries if e["config_id"] == cid]
        for index, cost in enumerate(plan["costs"]):
            if cost == "n_parameters":
                value = next((e["n_parameters"] for e in own
                              if e.get("n_parameters") is not None), None)
            else:
                value = (serving.get(cid) or {}).get(pareto.COSTS[cost])
            if value is not None and costs[index] is None:
                costs[index] = float(value)
    return found


def incumbent(plan: dict) -> str | None:
    """The best configuration scored on every fold so far (``None`` before one is)."""
    done = [h for h in plan["told"] if h["state"] == bayes.FINISHED]
    return max(done, key=lambda h: h["value"])["config_id"] if done else None


def _race(plan: dict, table: dict, scored: list[int]) -> list[str]:
    """The round's configurations that go on: not worse than the incumbent at confidence.

    Before any configuration has every fold, the round's leader plays the incumbent.
    """
    sizes = plan["fold_sizes"] or [[1.0, 1.0]]
    n_train = float(np.mean([s[0] for s in sizes]))
    n_test = float(np.mean([s[1] for s in sizes]))
    best = incumbent(plan)
    race = dict(table)
    if best is not None and best not in race:
        race = {best: [_score(plan["scores"], best, fold) for fold in scored], **race}
    confidence = plan["bayes"]["confidence"]
    if not plan.get("costs"):
        kept = survivors(race, len(race), elimination="racing", confidence=confidence,
                         n_train=n_train, n_test=n_test)
        return [cid for cid in table if cid in kept]
    # Several objectives: a configuration is dropped only for one that scores better and
    # costs no more (a cheaper one may belong on the front however it scores).
    measured = plan.get("measured", {})
    done = {h["config_id"] for h in plan["told"] if h["state"] == bayes.FINISHED}
    rivals = {cid: [_score(plan["scores"], cid, fold) for fold in scored] for cid in done}
    rivals.update(table)
    kept = []
    for cid in table:
        own = measured.get(cid)
        slack = _slack(plan, cid)
        cheaper = [other for other in rivals if other != cid and _no_costlier(
            measured.get(other), own, slack)]
        means = {other: float(np.mean(rivals[other])) for other in cheaper
                 if np.isfinite(rivals[other]).all()}
        if not means:  # nothing no costlier to lose to: on, unless it failed
            if np.isfinite(table[cid]).all():
                kept.append(cid)
            continue
        leader = max(means, key=means.get)
        if cid in survivors({leader: rivals[leader], cid: table[cid]}, 2,
                            elimination="racing", confidence=confidence, n_train=n_train,
                            n_test=n_test):
            kept.append(cid)
    return kept


def _slack(plan: dict, cid: str) -> list[float]:
    """How much more each cost of ``cid``'s rival may be and still count as no more.

    A latency's interquartile range (it is measured with noise); nothing for the others.
    """
    spread = (plan.get("serving", {}).get(cid) or {}).get(pareto.SPREAD_COLUMN) or 0.0
    return [float(spread) if cost == "latency" else 0.0 for cost in plan["costs"]]


def _no_costlier(costs: list | None, than: list | None, slack: list | None = None) -> bool:
    """Whether every cost of ``costs`` is at most ``than``'s, plus its slack (both measured)."""
    if not costs or not than or any(c is None for c in [*costs, *than]):
        return False
    slack = slack or [0.0] * len(costs)
    return all(a <= b + d for a, b, d in zip(costs, than, slack, strict=True))
