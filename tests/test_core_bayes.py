"""Model-based search's optimizer: Optuna's TPE, asked and told through a study of plain data."""

import json
import math

import numpy as np
import pytest

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.search import bayes, rounds, sampling

SPACE = {"learning_rate": {"loguniform": [1e-4, 1e-1]}, "units": {"randint": [8, 257]},
         "dropout": {"uniform": [0.0, 0.5]}, "activation": ["relu", "tanh", "gelu"]}


def score(point: dict) -> float:
    """A smooth landscape with one best region (lr 10^-2.5, 100 units, dropout 0.1, gelu)."""
    return -((math.log10(point["learning_rate"]) + 2.5) ** 2 + ((point["units"] - 100) / 60) ** 2
             + ((point["dropout"] - 0.1) * 4) ** 2 + (0.0 if point["activation"] == "gelu"
                                                       else 0.5))


def search(seed: int, rounds: int = 6, batch: int = 6) -> dict:
    study = bayes.new_study(SPACE, seed)
    for round_ in range(rounds):
        bayes.ask(study, batch, round_)
        for trial in study["trials"]:
            if trial["state"] is None:
                bayes.tell(study, trial["number"], score(trial["params"]))
        study = json.loads(json.dumps(study))  # what travels between stages: plain JSON
    return study


def test_the_optimizer_learns_where_random_search_does_not():
    """Same budget (36 configurations in rounds of 6), five seeds: better than sampling."""
    ours, theirs, wins = [], [], 0
    for seed in range(5):
        study = search(seed)
        ours.append(bayes.best(study)["value"])
        theirs.append(max(score(p) for p in sampling.sample([SPACE], 36, seed)))
        wins += ours[-1] > theirs[-1]
        first = [t["value"] for t in study["trials"] if t["round"] == 0]
        last = [t["value"] for t in study["trials"] if t["round"] == 5]
        assert sum(last) / len(last) > sum(first) / len(first)  # it moved toward the best
    assert sum(ours) / 5 > sum(theirs) / 5 + 0.1 and wins >= 3, (ours, theirs)


def test_a_study_asks_the_same_batch_wherever_it_is_rebuilt():
    study = search(7, rounds=2)
    again = json.loads(json.dumps(study))
    assert bayes.ask(study, 4, 2) == bayes.ask(again, 4, 2)
    assert [t["state"] for t in study["trials"][-4:]] == [None] * 4  # pending until told
    points = [json.dumps(t["params"], sort_keys=True) for t in study["trials"]]
    assert len(set(points)) == len(points)  # nothing asked twice


def test_a_small_list_space_is_asked_without_repeats_until_it_runs_out():
    study = bayes.new_study({"width": [8, 16, 32], "depth": [1, 2]}, seed=0)
    asked = bayes.ask(study, 6, 0)
    assert sorted(json.dumps(p, sort_keys=True) for p in asked) == sorted(
        json.dumps({"depth": d, "width": w}, sort_keys=True) for d in (1, 2)
        for w in (8, 16, 32))


def test_a_conditional_parameter_exists_only_where_its_condition_holds():
    space = {"layers": [1, 2, 3], "hidden_units": [[16], [64, 32]],
             "dropout": {"uniform": [0.0, 0.5], "when": {"layers": [2, 3]}},
             "momentum": {"choice": [0.0, 0.9], "when": {"layers": 3}}}
    study = bayes.new_study(space, seed=1)
    for round_ in range(3):
        for point in bayes.ask(study, 8, round_):
            assert ("dropout" in point) == (point["layers"] > 1), point
            assert ("momentum" in point) == (point["layers"] == 3), point
            assert point["hidden_units"] in ([16], [64, 32])
        for trial in study["trials"]:
            if trial["state"] is None:
                bayes.tell(study, trial["number"], trial["params"].get("dropout", 0.0))
    assert {t["params"]["layers"] for t in study["trials"]} == {1, 2, 3}


@pytest.mark.parametrize(("space", "match"), [
    ({"dropout": {"uniform": [0, 0.5], "when": {"layer": [2]}}, "layers": [1, 2]},
     r"dropout: when names 'layer', which is not another parameter of the space"),
    ({"a": {"choice": [1, 2], "when": {"b": [1]}}, "b": {"choice": [1, 2], "when": {"a": [1]}}},
     r"the conditions of a, b name each other in a cycle"),
    ({"layers": [1, 2], "dropout": {"uniform": [0, 0.5], "when": {"layers": [4]}}},
     r"dropout: layers never takes \[4\]"),
    ({"lr": {"loguniform": [1e-4, 1e-1]}, "x": {"uniform": [0, 1], "when": {"lr": [0.01]}}},
     r"x: when needs 'lr' to be a list of values"),
    ({"layers": [1, 2], "dropout": {"uniform": [0, 0.5], "when": [2]}},
     r"dropout: when must map other parameters"),
    ([{"a": [1]}, {"b": [2]}], r"must be one mapping .* \(a list of spaces is for random "
                               r"search\)"),
    ({"lr": {"loguniform": [0, 1]}}, r"loguniform needs 0 < low < high"),
])
def test_a_bad_space_is_refused_by_name(space, match):
    """(A condition may name a parameter written after it: a pipeline parameter's mapping
    comes back in any order, and the study asks the same points either way.)"""
    with pytest.raises(FoldwiseError, match=match):
        bayes.new_study(space, seed=0)


def test_the_study_asks_the_same_points_whatever_order_the_space_is_written_in():
    written = {"layers": [1, 2], "dropout": {"uniform": [0.0, 0.5], "when": {"layers": [2]}},
               "lr": {"loguniform": [1e-4, 1e-1]}}
    backwards = dict(reversed(list(written.items())))
    assert bayes.ask(bayes.new_study(written, 3), 5, 0) == bayes.ask(
        bayes.new_study(backwards, 3), 5, 0)


def test_a_raced_configuration_is_never_taken_for_a_finished_score():
    """A pruned trial's partial score informs the sampler as pruned, never as the best."""
    study = bayes.new_study(SPACE, seed=2)
    bayes.ask(study, 3, 0)
    bayes.tell(study, 0, -1.0)
    bayes.tell(study, 1, 5.0, state=bayes.PRUNED)  # scored high on the folds it saw
    bayes.tell(study, 2, float("nan"))  # a diverged configuration
    assert bayes.best(study)["number"] == 0
    assert [t["state"] for t in study["trials"]] == ["finished", "pruned", "failed"]
    rebuilt = bayes._rebuilt(study, bayes.parameters(SPACE), 1)
    states = [t.state.name for t in rebuilt.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL"]
    assert rebuilt.trials[1].intermediate_values == {0: 5.0} and rebuilt.trials[1].value is None
    assert rebuilt.best_trial.number == 0
    with pytest.raises(FoldwiseError, match="finished, pruned or failed"):
        bayes.tell(study, 0, 1.0, state="done")
    with pytest.raises(FoldwiseError, match="no trial 9"):
        bayes.tell(study, 9, 1.0)


# ----- rounds and racing inside them (core.search.rounds) --------------------------------------
def _make_configs(points):
    """Each point as the configuration a plan trains (its id: the point's canonical JSON)."""
    return [{"config_id": "cfg-" + json.dumps(p, sort_keys=True), "params": dict(p),
             "searched": dict(p)} for p in points]


def wobble(params: dict, fold: int) -> float:
    """A configuration's fold noise: its own, as a fold's luck differs between models."""
    return math.sin(7 * fold + params["units"])


def _run_stages(settings, seed=0, folds=5, noise=0.02, landscape=None):
    """Every stage of a search, its train tasks answered from ``landscape`` plus fold noise.

    Returns the last plan, ``{(config_id, fold): times trained}`` and every result's URI.
    """
    landscape = landscape or score
    stages = rounds.stage_count(settings, folds)
    plan = rounds.first_round(SPACE, seed, list(range(folds)), settings, stages, "folds",
                              _make_configs)
    trained, files = {}, {}
    while not rounds.finished(plan):
        uris = []
        for index, task in enumerate(plan["tasks"]):
            entries = []
            for config in task["configs"]:
                for fold in task["folds"]:
                    key = (config["config_id"], fold)
                    trained[key] = trained.get(key, 0) + 1
                    value = landscape(config["params"]) + noise * wobble(config["params"],
                                                                         fold)
                    entries.append({"config_id": config["config_id"], "fold": fold,
                                    "scores": {"r2": value}, "fit_error": "",
                                    "n_train": 800, "n_validation": 200})
            uri = f"mem://{plan['slot']}/{index}"
            files[uri] = json.dumps(entries)
            uris.append(uri)
        plan = json.loads(json.dumps(rounds.next_stage(plan, uris, files.__getitem__, "r2",
                                                       "folds", _make_configs)))
    return plan, trained, sorted(files)


def test_rounds_race_inside_each_round_and_tell_the_raced_as_pruned():
    settings = {"n_iter": 24, "batch": 8, "confidence": 0.9}
    assert rounds.stage_folds(rounds.check_bayes(settings, 5), 5) == [2, 5]
    assert rounds.stage_count(settings, 5) == 6
    plan, trained, uris = _run_stages(settings)
    trials = plan["study"]["trials"]
    assert len(trials) == 24 and [t["round"] for t in trials] == [r for r in range(3)
                                                                  for _ in range(8)]
    assert all(t["state"] in (bayes.FINISHED, bayes.PRUNED) for t in trials)
    pruned = [t for t in trials if t["state"] == bayes.PRUNED]
    assert pruned, "nothing raced out on a landscape with clear losers"
    for trial in trials:  # a raced configuration took the first two folds only
        cid = "cfg-" + json.dumps(trial["params"], sort_keys=True)
        folds = sorted(f for (c, f) in trained if c == cid)
        assert folds == ([0, 1] if trial["state"] == bayes.PRUNED else [0, 1, 2, 3, 4])
        # told its score on the folds it had, never a finished score
        expected = np.mean([score(trial["params"]) + 0.02 * wobble(trial["params"], f)
                            for f in folds])
        assert trial["value"] == pytest.approx(expected)
    assert all(count == 1 for count in trained.values())  # no (configuration, fold) twice
    assert sorted(plan["results"]) == uris  # every stage's results handed on
    best = bayes.best(plan["study"])
    assert best["state"] == bayes.FINISHED


def test_without_racing_every_configuration_takes_every_fold():
    plan, trained, _ = _run_stages({"n_iter": 9, "batch": 4, "racing": "off"})
    assert [h["n_resources"] for h in plan["history"]] == [5, 5, 5]
    assert {t["state"] for t in plan["study"]["trials"]} == {bayes.FINISHED}
    assert len(trained) == 9 * 5


def test_a_round_that_races_out_entirely_trains_nothing_more_and_the_next_round_asks():
    # After the first round, every new configuration is far worse on its first two folds.
    def landscape(point):
        return 1.0 if point["learning_rate"] > 0.01 else -5.0 * point["units"]

    plan, trained, _ = _run_stages({"n_iter": 12, "batch": 4, "confidence": 0.8}, seed=3,
                                landscape=landscape, noise=0.001)
    assert len(plan["study"]["trials"]) == 12
    assert all(t["state"] is not None for t in plan["study"]["trials"])
    assert rounds.finished(plan)
    history = plan["history"]
    out = [i for i, h in enumerate(history) if h["stage"] == 0 and h["candidates"]
           and not h["kept"]]
    assert out, "no round raced out entirely on this landscape"
    assert history[out[0] + 1]["candidates"] == []  # its last stage trained nothing
    assert history[out[0] + 1]["round"] == history[out[0]]["round"]


def test_a_configuration_asked_twice_trains_once_and_both_trials_are_told():
    def one_config(points):  # every point makes the same configuration
        return [{"config_id": "cfg-same", "params": {"estimator": "keras"}, "searched": {}}
                for _ in points]

    settings = {"n_iter": 6, "batch": 3, "racing": "off"}
    plan = rounds.first_round(SPACE, 0, [0, 1, 2], settings,
                              rounds.stage_count(settings, 3), "folds", one_config)
    assert [c["config_id"] for c in plan["candidates"]] == ["cfg-same"]
    files = {"mem://a": json.dumps([{"config_id": "cfg-same", "fold": f,
                                     "scores": {"r2": 0.5}, "fit_error": ""}
                                    for f in range(3)])}
    plan = rounds.next_stage(plan, ["mem://a"], files.__getitem__, "r2", "folds", one_config)
    # round 1 asks the same configuration again: nothing to train, one idle task (a loop of
    # a pipeline may not be empty)
    assert [task["configs"] for task in plan["tasks"]] == [[]]
    assert [t["state"] for t in plan["study"]["trials"]] == [bayes.FINISHED] * 6
    plan = rounds.next_stage(plan, [], files.__getitem__, "r2", "folds", one_config)
    assert rounds.finished(plan)


@pytest.mark.parametrize("settings, message", [
    ({"n_iter": 0}, "n_iter must be a whole number of at least 1"),
    ({"batch": 2.5}, "batch must be a whole number"),
    ({"racing": "maybe"}, "racing is on or off"),
    ({"confidence": 1.5}, "confidence"),
    ({"factor": 3}, "unknown Bayesian search setting 'factor'"),
])
def test_bad_bayesian_settings_are_named(settings, message):
    with pytest.raises(FoldwiseError, match=message):
        rounds.check_bayes(settings, 5)


def test_a_pipeline_built_with_other_stages_is_refused_with_the_number_it_needs():
    with pytest.raises(FoldwiseError, match="compile it with --rungs 4"):
        rounds.first_round(SPACE, 0, list(range(5)), {"n_iter": 8, "batch": 4}, 3, "folds",
                           _make_configs)


def test_a_warm_start_is_told_first_and_its_finished_configurations_planned_to_be_taken_over():
    inside = {"learning_rate": 0.01, "units": 100, "dropout": 0.1, "activation": "gelu"}
    raced = {"learning_rate": 0.09, "units": 10, "dropout": 0.4, "activation": "relu"}
    outside = {**inside, "units": 999}  # beyond this space: not this search's
    other = {**inside, "epochs": 7}  # another fixed option: another configuration
    warm = [{"config_id": "cfg-" + json.dumps(p, sort_keys=True), "params": p, "value": v,
             "state": state} for p, v, state in [(inside, 0.9, "finished"),
                                                 (raced, 0.2, "pruned"), (outside, 0.95,
                                                                          "finished")]]
    warm.append({**warm[0], "config_id": "cfg-other", "params": other})
    settings = {"n_iter": 4, "batch": 4, "warm": warm}
    for take_over in (True, False):
        plan = rounds.first_round(SPACE, 0, list(range(5)), {**settings,
                                                             "take_over": take_over},
                                  rounds.stage_count(settings, 5), "folds", _make_configs)
        earlier = [t for t in plan["study"]["trials"] if t["round"] == -1]
        assert [(t["state"], t["value"]) for t in earlier] == [("finished", 0.9),
                                                               ("pruned", 0.2)]
        assert rounds.incumbent(plan) == warm[0]["config_id"]
        planned = {c["config_id"]: task["folds"] for task in plan["tasks"]
                   for c in task["configs"]}
        assert (warm[0]["config_id"] in planned) == take_over
        if take_over:
            assert planned[warm[0]["config_id"]] == [0, 1, 2, 3, 4]
        assert warm[1]["config_id"] not in planned  # raced out before: told, not taken over
        assert len([t for t in plan["study"]["trials"] if t["round"] == 0]) == 4


def test_an_earlier_export_of_another_search_is_refused_by_what_differs():
    import pandas as pd

    from foldwise.components.core.search import warm

    folds = pd.DataFrame({"row": [0, 1, 2, 3], "fold": [0, 1, 0, 1]})
    schema = {"target": "y", "task": "regression", "folds": 2, "seed": 0}
    earlier = {"summary": {**schema, "data": {"sha256": "abc"}}, "folds": folds.copy(),
               "cv_results": pd.DataFrame()}
    warm.check_same("old", earlier, schema, folds, "abc")  # the same search: taken
    with pytest.raises(FoldwiseError, match=r"seed 0 \(this run: 1\)"):
        warm.check_same("old", earlier, {**schema, "seed": 1}, folds, "abc")
    with pytest.raises(FoldwiseError, match="the table's content"):
        warm.check_same("old", earlier, schema, folds, "def")
    with pytest.raises(FoldwiseError, match="the rows' folds"):
        warm.check_same("old", earlier, schema, folds.assign(fold=[1, 0, 0, 1]), "abc")


def test_an_earlier_configuration_is_told_as_it_ended():
    import pandas as pd

    from foldwise.components.core.search import warm

    nan = float("nan")
    table = pd.DataFrame({
        "config_id": ["a", "b", "c"], "params": ['{"x": 1}', '{"x": 2}', '{"x": 3}'],
        "split0_test_accuracy": [0.9, 0.5, nan], "split1_test_accuracy": [0.8, nan, nan],
        "split0_test_balanced_accuracy": [0.9, 0.5, 0.1],  # another metric's columns
        "split1_test_balanced_accuracy": [0.8, 0.4, 0.1],
        "mean_test_accuracy": [0.85, 0.5, nan], "fit_error": ["", "", "diverged"]})
    told = warm.told({"cv_results": table, "summary": {"folds": 2}}, "accuracy")
    assert [(t["config_id"], t["state"], t["value"]) for t in told] == [
        ("a", "finished", 0.85), ("b", "pruned", 0.5), ("c", "failed", None)]


def test_a_configuration_raced_out_in_an_earlier_run_and_asked_again_is_told_not_trained():
    point = {"learning_rate": 0.01, "units": 100, "dropout": 0.1, "activation": "gelu"}
    warm = [{"config_id": "cfg-" + json.dumps(point, sort_keys=True), "params": point,
             "value": 0.3, "state": "pruned"}]

    def same(points):  # every point the study asks makes that configuration
        return [{"config_id": warm[0]["config_id"], "params": point, "searched": point}
                for _ in points]

    settings = {"n_iter": 2, "batch": 2, "racing": "off"}
    plan = rounds.first_round(SPACE, 0, [0, 1, 2], {**settings, "warm": warm,
                                                    "take_over": True},
                              rounds.stage_count(settings, 3), "folds", same)
    assert [task["configs"] for task in plan["tasks"]] == [[]]  # nothing to train
    asked = [t for t in plan["study"]["trials"] if t["round"] == 0]
    assert [(t["state"], t["value"]) for t in asked] == [("pruned", 0.3)] * 2
