"""Searches beyond the grid: sampling, halving schedules, racing, the corrected t-test, 1-SE."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import loguniform, randint, uniform
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - scikit-learn's gate
from sklearn.model_selection import HalvingGridSearchCV, ParameterSampler

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.results import aggregate
from foldwise.components.core.scoring import stats
from foldwise.components.core.search import halving, rungs, sampling
from foldwise.components.core.search.grid import candidates, load_space


def _python(value):
    return value.item() if hasattr(value, "item") else value


@pytest.mark.parametrize("space", [
    {"learning_rate": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.5),
     "hidden_units": [[32], [64, 32], [128]]},
    {"units": randint(8, 129), "learning_rate": [0.001, 0.01], "l2": uniform(loc=1e-4,
                                                                            scale=1e-2)},
    [{"learning_rate": loguniform(1e-3, 1.0)}, {"dropout": uniform(0.1, 0.2), "epochs": [5]}],
    {"hidden_units": [[8], [16], [32]], "learning_rate": [0.1, 0.01, 0.001]},  # all lists
])
@pytest.mark.parametrize("seed", [0, 7])
def test_sampling_draws_what_scikit_learns_parameter_sampler_draws(space, seed):
    data = sampling.from_python(space)
    json.dumps(data)  # travels as a pipeline parameter
    ours = sampling.sample(json.loads(json.dumps(data)), 6, seed)
    theirs = [{k: _python(v) for k, v in point.items()}
              for point in ParameterSampler(space, 6, random_state=seed)]
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.keys() == reference.keys()
        for key, value in mine.items():
            if isinstance(value, float):
                assert value == pytest.approx(reference[key], rel=1e-12)
            else:
                assert value == reference[key]


def test_all_lists_sample_without_replacement_and_stop_at_the_grids_size():
    points = sampling.sample([{"a": [1, 2], "b": ["x", "y"]}], 10, 0)
    assert len(points) == 4
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 4


def test_a_random_search_plans_its_sampled_configurations_with_their_values():
    space = [{"learning_rate": {"loguniform": [1e-4, 1e-1]}, "hidden_units": [[8], [16]]}]
    first = candidates([], {"epochs": 2}, "regression", None, distributions=space, n_iter=5,
                       seed=3)
    again = candidates([], {"epochs": 2}, "regression", None, distributions=space, n_iter=5,
                       seed=3)
    assert [c["config_id"] for c in first] == [c["config_id"] for c in again]
    points = sampling.sample(space, 5, 3)
    assert [c["searched"] for c in first] == points
    assert all(c["params"]["epochs"] == 2 for c in first)
    other = candidates([], {}, "regression", None, distributions=space, n_iter=5, seed=4)
    assert [c["config_id"] for c in other] != [c["config_id"] for c in first]


@pytest.mark.parametrize(("space", "message"), [
    ({"learning_rate": {"loguniform": [0.0, 1.0]}}, "0 < low < high"),
    ({"dropout": {"uniform": [0.5]}}, "two numbers"),
    ({"units": {"randint": [1.5, 4]}}, "whole numbers"),
    ({"dropout": {"normal": [0, 1]}}, "loguniform | uniform | randint | choice"),
    ({"dropout": 0.1}, "non-empty list"),
])
def test_bad_spaces_are_refused_with_what_a_distribution_takes(space, message):
    with pytest.raises(FoldwiseError, match=message):
        sampling.check_space(space)


def test_a_scipy_distribution_of_another_family_is_refused_by_name():
    from scipy.stats import norm

    with pytest.raises(FoldwiseError, match="scipy.stats norm distribution"):
        sampling.from_python({"dropout": norm(0, 1)})


def test_a_yaml_space_reads_distributions_and_choices(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("learning_rate: {loguniform: [1.0e-4, 1.0e-1]}\n"
                    "activation: {choice: [relu, gelu]}\nhidden_units: [[64], [128, 64]]\n")
    assert load_space(path) == [{"learning_rate": {"loguniform": [1e-4, 1e-1]},
                                 "activation": ["relu", "gelu"],
                                 "hidden_units": [[64], [128, 64]]}]


class _Budgeted(RegressorMixin, BaseEstimator):
    """An estimator whose ``budget`` is the resource scikit-learn's halving hands out."""

    def __init__(self, a=0, budget=1):
        self.a, self.budget = a, budget

    def fit(self, X, y):
        self.constant_ = float(self.a)
        return self

    def predict(self, X):
        return np.full(len(X), self.constant_)


@pytest.mark.parametrize(("n_candidates", "factor", "min_resources", "max_resources",
                          "aggressive"), [
    (24, 3, "exhaust", 5, False), (24, 3, "smallest", 5, False), (9, 3, 1, 10, False),
    (24, 2, 1, 10, False), (30, 3, "exhaust", 10, True), (8, 2, 2, 8, False),
    (100, 3, 1, 5, True), (5, 3, "exhaust", 5, False), (1, 3, "exhaust", 5, False),
    (40, 2.5, "exhaust", 20, False),
])
def test_halving_schedule_is_scikit_learns(n_candidates, factor, min_resources, max_resources,
                                           aggressive):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2)), rng.normal(size=40)
    theirs = HalvingGridSearchCV(
        _Budgeted(), {"a": list(range(n_candidates))}, factor=factor, resource="budget",
        min_resources=min_resources, max_resources=max_resources,
        aggressive_elimination=aggressive, cv=2, refit=False).fit(X, y)
    ours = halving.halving_schedule(n_candidates, factor, min_resources, max_resources,
                                      aggressive)
    assert ours.n_resources == theirs.n_resources_
    assert ours.n_candidates == theirs.n_candidates_
    assert ours.min_resources == theirs.min_resources_
    assert ours.n_possible_iterations == theirs.n_possible_iterations_
    assert ours.n_required_iterations == theirs.n_required_iterations_


def test_corrected_ttest_matches_the_hand_computed_value():
    # d = [.02, .01, .03, 0, .02]: mean .016, sample variance 5.2e-4 / 4 = 1.3e-4;
    # corrected by 1/5 + 20/80 = .45: 5.85e-5; t = .016 / sqrt(5.85e-5) = 2.09191; df 4.
    t, p = stats.corrected_ttest([0.02, 0.01, 0.03, 0.0, 0.02], n_train=80, n_test=20)
    assert t == pytest.approx(2.091905, rel=1e-6)
    assert p == pytest.approx(0.0523026, rel=1e-5)  # one-sided, Student's t with 4 df
    assert math.isnan(stats.corrected_ttest([0.01], 80, 20)[1])
    assert math.isnan(stats.corrected_ttest([0.01, 0.01, 0.01], 80, 20)[1])


def test_one_standard_error_rule_on_a_literal_table():
    # best is c (0.90, std 0.05 over 4 folds: se 0.05 / sqrt(3) = 0.0289 → threshold 0.871):
    # b, d and e are within it, e is the simplest
    means = [0.86, 0.88, 0.90, 0.89, 0.876]
    stds = [0.01, 0.02, 0.05, 0.01, 0.03]
    complexity = [(100, 10), (500, 10), (2000, 10), (300, 10), (200, 10)]
    assert stats.one_standard_error(means, stds, 4, complexity) == 4
    # with 100 folds the standard error is 0.005: nothing else is close enough
    assert stats.one_standard_error(means, stds, 100, complexity) == 2
    assert stats.one_standard_error([np.nan, 0.5], [0, 0], 4, [(1,), (2,)]) == 1
    with pytest.raises(FoldwiseError, match="finite mean"):
        stats.one_standard_error([np.nan], [0], 4, [(1,)])


def test_halving_keeps_the_best_share_and_racing_only_drops_what_the_test_rejects():
    scores = {"a": [0.90, 0.91, 0.92, 0.90], "b": [0.50, 0.52, 0.49, 0.51],
              "c": [0.905, 0.90, 0.93, 0.89], "d": [np.nan, 0.9, 0.9, 0.9]}
    assert halving.survivors(scores, 2) == ["a", "c"]
    kept = halving.survivors(scores, 2, elimination="racing", confidence=0.95,
                               n_train=300, n_test=100)
    assert kept == ["a", "c"]  # b is clearly worse, d failed; c is within the noise
    assert halving.survivors({"a": [0.9, 0.9], "b": [0.9, 0.9]}, 1,
                               elimination="racing") == ["a", "b"]


def _entry(cid, fold, score, rung, resources, error=""):
    return {"config_id": cid, "params": {"estimator": "keras", "learning_rate": 0.1},
            "fold": fold, "scores": {"r2": None if error else score},
            "fit_error": error, "fit_time": 1.0, "score_time": 0.1, "n_train": 80,
            "n_validation": 20, "n_parameters": 10, "rung": rung, "n_resources": resources}


def test_rungs_train_only_new_folds_and_carry_the_scores_forward(tmp_path):
    configs = [{"config_id": f"c{i}", "params": {"estimator": "keras"}, "searched": {}}
               for i in range(9)]
    plan = rungs.first_rung(configs, [0, 1, 2, 3, 4], {"factor": 3, "min_resources": 1}, 2,
                            "folds")
    assert plan["schedule"]["n_resources"] == [1, 3]
    assert {fold for task in plan["tasks"] for fold in task["folds"]} == {0}
    files = {}
    for task in plan["tasks"]:
        for config in task["configs"]:
            uri = str(tmp_path / f"{config['config_id']}.json")
            score = int(config["config_id"][1:]) / 10
            files[uri] = json.dumps([_entry(config["config_id"], 0, score, 0, 1)])
    second = rungs.next_rung(plan, list(files), lambda uri: files[uri], "r2", "folds")
    assert second["alive"] == ["c6", "c7", "c8"]  # the best third
    assert sorted({f for task in second["tasks"] for f in task["folds"]}) == [1, 2]
    assert all(task["tags"] == {"rung": 1, "n_resources": 3} for task in second["tasks"])
    more = {str(tmp_path / f"r1-{c}.json"): json.dumps(
        [_entry(c, k, 0.5, 1, 3) for k in (1, 2)]) for c in second["alive"]}
    files.update(more)
    final = rungs.next_rung(second, list(more), lambda uri: files[uri], "r2", "folds")
    assert final["tasks"] == []
    assert sorted(final["results"]) == sorted(files)
    with pytest.raises(FoldwiseError, match="compile it with --rungs 2"):
        rungs.first_rung(configs, [0, 1, 2, 3, 4], {"factor": 3, "min_resources": 1}, 3,
                         "folds")


def test_halving_cv_results_have_a_row_per_rung_and_keep_eliminated_scores():
    results = [_entry("a", 0, 0.5, 0, 1), _entry("b", 0, 0.9, 0, 1),
               _entry("b", 1, 0.8, 1, 3), _entry("b", 2, 0.7, 1, 3)]
    table = aggregate.cv_results(results, ["r2"])
    assert list(table["iter"]) == [0, 0, 1]
    assert list(table["n_resources"]) == [1, 1, 3]
    assert list(table["config_id"]) == ["a", "b", "b"]
    last = table.iloc[2]
    assert last["mean_test_r2"] == pytest.approx(0.8)
    assert math.isnan(table.iloc[0]["split1_test_r2"])
    aggregate.add_comparisons(table, "r2", 80, 20)
    assert math.isnan(table.iloc[2]["pvalue_vs_best_r2"])  # the best itself
    assert table.iloc[0]["diff_vs_best_r2"] == pytest.approx(-0.4)  # on fold 0, shared
    chosen = aggregate.choose(aggregate.eligible_rows(table), "r2")
    assert chosen == "b"


def test_the_one_standard_error_refit_picks_the_simplest_close_configuration():
    rows = []
    for cid, params, scores in [("big", 5000, [0.90, 0.92, 0.88, 0.90]),
                                ("small", 50, [0.90, 0.91, 0.88, 0.89]),
                                ("tiny", 10, [0.70, 0.72, 0.69, 0.70])]:
        for fold, score in enumerate(scores):
            rows.append({"config_id": cid, "params": {"estimator": "keras", "epochs": 5},
                         "fold": fold, "scores": {"r2": score}, "fit_error": "",
                         "fit_time": 1.0, "score_time": 0.1, "n_parameters": params})
    table = aggregate.cv_results(rows, ["r2"])
    assert aggregate.choose(table, "r2", "best") == "big"
    assert aggregate.choose(table, "r2", "one_standard_error") == "small"
    with pytest.raises(FoldwiseError, match="refit must be one of"):
        aggregate.choose(table, "r2", "simplest")


@pytest.mark.parametrize(("settings", "message"), [
    ({"resource": "rows"}, "resource must be one of"),
    ({"resource": "epochs", "max_resources": 0}, "needs the epochs of the last rung"),
    ({"elimination": "tournament"}, "elimination must be one of"),
    ({"max_resources": 9}, "at most 5"),
    ({"confidence": 1.5}, "confidence"),
    ({"min_resources": 7}, "above max_resources"),
    ({"halve": 2}, "unknown halving setting"),
])
def test_bad_halving_settings_are_named(settings, message):
    with pytest.raises(FoldwiseError, match=message):
        rungs.schedule(rungs.check_halving(settings, 5), 10)


def test_racing_rungs_start_with_two_folds_and_end_with_every_fold():
    settings = rungs.check_halving({"elimination": "racing", "factor": 2}, 10)
    planned = rungs.schedule(settings, 24)
    assert planned.n_resources == [2, 4, 8, 10]
    assert pd.Series(planned.n_resources).is_monotonic_increasing


def _configs(n, **params):
    return [{"config_id": f"c{i}", "params": {"estimator": "keras", "epochs": 9,
                                              "early_stopping": False, **params},
             "searched": {}} for i in range(n)]


def test_epochs_rungs_train_every_fold_and_go_on_from_the_last_rungs_states():
    plan = rungs.first_rung(_configs(9), [0, 1, 2], {"resource": "epochs", "factor": 3}, 3,
                            "folds")
    assert plan["schedule"]["n_resources"] == [1, 3, 9]  # exhaust: 9 epochs // 3**2
    assert all(task["folds"] == [0, 1, 2] for task in plan["tasks"])
    assert all(task["tags"]["epochs"] == 1 and task["tags"]["continue"] == {}
               for task in plan["tasks"])
    files = {}
    for task in plan["tasks"]:
        (config,) = task["configs"]
        score = int(config["config_id"][1:]) / 10
        files[f"mem://{config['config_id']}"] = json.dumps([
            {**_entry(config["config_id"], fold, score, 0, 1), "resource": "epochs",
             "state": f"mem://{config['config_id']}/fold-{fold}/state.npz"}
            for fold in (0, 1, 2)])
    second = rungs.next_rung(plan, list(files), lambda uri: files[uri], "r2", "folds")
    assert second["alive"] == ["c6", "c7", "c8"]
    task = next(t for t in second["tasks"] if t["configs"][0]["config_id"] == "c7")
    assert task["tags"]["epochs"] == 3
    assert task["tags"]["continue"] == {f"c7|{k}": f"mem://c7/fold-{k}/state.npz"
                                        for k in (0, 1, 2)}


@pytest.mark.parametrize(("configs", "message"), [
    (_configs(2) + [{"config_id": "x", "params": {"estimator": "keras", "epochs": 4},
                     "searched": {}}], "leave epochs out of the grid"),
    (_configs(3, early_stopping=True), "leave --early-stopping out"),
    (_configs(2) + [{"config_id": "m", "params": {"estimator": "sklearn_mlp", "epochs": 9},
                     "searched": {}}], "leave --baseline out"),
])
def test_epochs_halving_refuses_what_it_cannot_train_on(configs, message):
    with pytest.raises(FoldwiseError, match=message):
        rungs.first_rung(configs, [0, 1], {"resource": "epochs", "max_resources": 4}, 2,
                         "folds")


def test_epochs_cv_results_have_each_rungs_models_as_its_row():
    results = [{**_entry("a", k, 0.5, 0, 1), "resource": "epochs"} for k in (0, 1)]
    results += [{**_entry("b", k, 0.6, 0, 1), "resource": "epochs"} for k in (0, 1)]
    results += [{**_entry("b", k, 0.8 + k / 10, 1, 3), "resource": "epochs"} for k in (0, 1)]
    table = aggregate.cv_results(results, ["r2"])
    assert list(zip(table["config_id"], table["iter"], table["n_resources"], strict=True)) == [
        ("a", 0, 1), ("b", 0, 1), ("b", 1, 3)]
    assert table.iloc[1]["mean_test_r2"] == pytest.approx(0.6)
    assert table.iloc[2]["mean_test_r2"] == pytest.approx(0.85)


def test_the_cv_epoch_is_the_lowest_mean_validation_loss_over_the_epochs_all_folds_ran():
    assert aggregate.cv_epoch({"0": {"test_loss": [3.0, 2.0, 1.5, 1.6]},
                               "1": {"test_loss": [3.0, 1.0, 2.5]}}) == 2
    assert aggregate.cv_epoch({"0": {"loss": [1.0]}}) is None
    assert aggregate.cv_epoch({"0": {"test_loss": [float("nan"), 1.0]},
                               "1": {"test_loss": [1.0, 2.0]}}) == 2
