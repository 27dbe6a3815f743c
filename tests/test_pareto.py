"""A score against serving costs: objectives, the Pareto front, pareto refits, the study and
racing of several objectives, and the serving measurement on a real fold model."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.results.aggregate import add_front, choose, cv_results
from foldwise.components.core.scoring import pareto
from foldwise.components.core.search import bayes, rounds
from foldwise.components.core.serving import costs

METRICS = ("r2", "neg_mean_squared_error", "neg_mean_absolute_error")


@pytest.mark.parametrize(("text", "score", "wanted"), [
    ("", "r2", ()),
    ("r2", "r2", ()),
    ("r2,latency", "r2", ("latency",)),
    ("latency", "r2", ("latency",)),
    (" r2 , latency ,model_bytes", "r2", ("latency", "model_bytes")),
    (["neg_mean_squared_error", "n_parameters"], "neg_mean_squared_error", ("n_parameters",)),
])
def test_objectives_are_the_runs_score_then_costs(text, score, wanted):
    objectives = pareto.parse(text, score, METRICS)
    assert objectives == pareto.Objectives(score, wanted)
    assert objectives.directions == ["maximize", *["minimize"] * len(wanted)]


@pytest.mark.parametrize(("text", "message"), [
    ("r2,speed", "unknown objective 'speed'.*r2,latency"),
    ("r2,latency,latency", "latency given twice"),
    ("r2,neg_mean_squared_error,latency", "one score at a time"),
    ("neg_mean_squared_error,latency", "pass --scoring neg_mean_squared_error"),
    ("accuracy,latency", "unknown objective 'accuracy'"),
])
def test_bad_objectives_are_refused_in_one_line(text, message):
    with pytest.raises(FoldwiseError, match=message):
        pareto.parse(text, "r2", METRICS)


@pytest.mark.parametrize(("given", "refit", "expected"), [
    ({}, "best", ("", "")),
    ({"objectives": "neg_mean_squared_error,latency"}, "best",
     ("neg_mean_squared_error,latency", "neg_mean_squared_error")),
    ({"objectives": "latency"}, "pareto:model_bytes", ("r2,latency,model_bytes", "")),
    ({}, "pareto:latency", ("r2,latency", "")),
    ({"objectives": "r2", "scoring": "r2"}, "best", ("", "r2")),
])
def test_a_run_takes_its_scoring_from_its_objectives_and_measures_what_its_refit_needs(
        given, refit, expected):
    from foldwise.pipelines.runs import Search, checked_objectives

    search = Search("grid-search", "x.csv", {"target": "y", **given}, choice={"refit": refit})
    assert checked_objectives(search, given.get("scoring", ""), METRICS,
                              "regression") == expected


def test_the_front_keeps_every_point_nothing_beats_on_every_objective():
    scores = [0.90, 0.85, 0.80, 0.84, 0.90, np.nan, 0.95]
    latency = [[2.0], [1.0], [0.5], [1.5], [2.0], [0.1], [np.nan]]
    # 3 is beaten by 1 (better and cheaper); 0 and 4 tie on everything: both stay; an
    # unscored point and an unmeasured one are off the front
    assert pareto.front(scores, latency).tolist() == [True, True, True, False, True, False,
                                                      False]
    two = pareto.front([0.9, 0.9, 0.8], [[1.0, 5.0], [1.0, 4.0], [0.5, 9.0]])
    assert two.tolist() == [False, True, True]


def test_a_pareto_refit_takes_the_cheapest_within_one_standard_error_of_the_best():
    means = [0.90, 0.89, 0.85, 0.895]
    stds = [0.02, 0.01, 0.01, 0.01]  # the best's standard error: 0.02 / sqrt(4) = 0.01
    latency = [3.0, 2.0, 0.5, np.nan]
    assert pareto.pick(means, stds, latency, folds=5) == 1  # 2 is too far below the best
    assert pareto.pick(means, [0.0] * 4, latency, folds=5) == 0  # no spread: the best
    assert pareto.pick(means, [0.2] * 4, latency, folds=5) == 2
    assert pareto.pick([0.9, 0.9], [0.0, 0.0], [np.nan, 1.0], folds=5) == 1
    # a latency lower only within its spread (the fastest's) ties: the higher mean wins
    close = [1.0, 0.95, 0.5, 2.0]
    assert pareto.pick(means, stds, close, folds=5) == 1
    assert pareto.pick(means, stds, close, folds=5, slack=[0.0, 0.1, 0.0, 0.0]) == 0
    assert pareto.pick(means, stds, close, folds=5, slack=[0.1, 0.01, 0.1, 0.1]) == 1
    # rows of a table, their index not 0, 1, ... (a front picked out of cv_results)
    rows = pd.DataFrame({"m": means, "s": stds, "c": latency}, index=[7, 3, 9, 4])
    assert pareto.pick(rows["m"], rows["s"], rows["c"], folds=5) == 1


def entries(config_id, units, scores, latency, estimator="keras", failed=False):
    """A train task's entries for one configuration (the first fold measured)."""
    out = []
    for fold, score in enumerate(scores):
        entry = {"config_id": config_id, "fold": fold,
                 "params": {"estimator": estimator, "hidden_units": units},
                 "scores": {"r2": score}, "fit_time": 1.0, "score_time": 0.1,
                 "fit_error": "diverged" if failed and fold == 0 else "",
                 "n_parameters": 10 * units[0], "n_train": 80, "n_validation": 20}
        out.append(entry)
    return out


def measured(latency, units):
    """What the serving measurement answers for a configuration."""
    return {"latency_ms": latency, "latency_iqr_ms": latency / 10, "model_bytes": 1000 * units,
            "calls": 200, "fold": 0}


@pytest.fixture
def table():
    found = [*entries("big", [64], [0.90, 0.92, 0.91, 0.89], 3.0),
             *entries("mid", [16], [0.91, 0.90, 0.89, 0.90], 1.0),
             *entries("small", [4], [0.70, 0.72, 0.71, 0.69], 0.4),
             *entries("slow", [32], [0.80, 0.81, 0.80, 0.79], 5.0),
             *entries("twin", [16], [0.60, 0.61, 0.60, 0.59], None, estimator="sklearn_mlp"),
             *entries("broken", [2], [np.nan, 0.5, 0.5, 0.5], 0.1, failed=True)]
    serving = {"big": measured(3.0, 64), "mid": measured(1.0, 16), "small": measured(0.4, 4),
               "slow": measured(5.0, 32), "broken": measured(0.1, 2)}
    return cv_results(found, ["r2"], serving)


def test_cv_results_holds_each_configurations_measured_costs(table):
    row = table.set_index("config_id").loc["mid"]
    assert (row["latency_ms"], row["latency_iqr_ms"], row["model_bytes"]) == (1.0, 0.1, 16000)
    assert math.isnan(table.set_index("config_id").loc["twin", "latency_ms"])
    assert list(table.columns[-5:]) == ["n_parameters", "latency_ms", "latency_iqr_ms",
                                        "model_bytes", "fit_error"]


def test_the_front_in_cv_results_is_among_keras_configurations_that_trained(table):
    add_front(table, pareto.parse("r2,latency", "r2", METRICS))
    on = dict(zip(table["config_id"], table["pareto_front"], strict=True))
    # "broken" is fastest but failed; the scikit-learn twin is never exported
    assert on == {"big": True, "mid": True, "small": True, "slow": False, "twin": False,
                  "broken": False}
    assert choose(table, "r2", "pareto:latency") == "mid"
    assert choose(table, "r2", "best") == "big"
    assert choose(table, "r2", "pareto:n_parameters") == "mid"


def test_a_pareto_refit_of_a_cost_never_measured_is_refused():
    table = cv_results(entries("a", [4], [0.9, 0.8], None), ["r2"])
    assert "latency_ms" not in table  # nothing measured: no columns for it
    with pytest.raises(FoldwiseError, match="did not measure: add latency to objectives"):
        choose(table, "r2", "pareto:latency")
    with pytest.raises(FoldwiseError, match="latency_ms was not measured"):
        add_front(table, pareto.parse("latency", "r2", METRICS))


SPACE = {"units": [4, 16, 64, 256], "learning_rate": {"loguniform": [1e-3, 1e-1]}}


def test_a_study_of_several_objectives_is_told_score_and_costs_and_asks_from_them():
    study = bayes.new_study(SPACE, 3, costs=1)
    assert study["directions"] == ["maximize", "minimize"]
    points = bayes.ask(study, 6, 0)
    for number, point in enumerate(points[:4]):
        bayes.tell(study, number, 0.5 + point["units"] / 1000, bayes.FINISHED,
                   [float(point["units"])])
    bayes.tell(study, 4, 0.7, bayes.FINISHED, [None])  # its latency was not measured
    bayes.tell(study, 5, 0.4, bayes.PRUNED, None)
    told = study["trials"]
    assert told[0]["values"] == [pytest.approx(0.5 + points[0]["units"] / 1000),
                                 float(points[0]["units"])]
    assert told[4]["state"] == bayes.PRUNED and "values" not in told[4]  # censored, not faked
    rebuilt = bayes._rebuilt(study, bayes.parameters(SPACE), 1)
    assert len(rebuilt.directions) == 2
    frozen = rebuilt.get_trials(deepcopy=False)
    assert [t.state.name for t in frozen] == ["COMPLETE"] * 4 + ["PRUNED"] * 2
    assert all(t.intermediate_values == {} for t in frozen[4:])
    assert len(bayes.ask(study, 4, 1)) == 4  # multi-objective TPE asks from them


def stage_plan(costs_measured, scores, told=()):
    """A round's plan after its first stage of 2 folds, with several objectives."""
    plan = {"bayes": {"confidence": 0.9}, "costs": ["latency"], "measured": costs_measured,
            "told": list(told), "scores": {}, "fold_sizes": [[80.0, 20.0]]}
    for cid, values in scores.items():
        for fold, value in enumerate(values):
            plan["scores"][f"{cid}|{fold}"] = value
    return plan


def test_racing_of_several_objectives_drops_only_for_a_rival_that_costs_no_more():
    scores = {"lead": [0.90, 0.91], "cheap": [0.50, 0.53], "dear": [0.50, 0.53]}
    plan = stage_plan({"lead": [1.0], "cheap": [0.2], "dear": [3.0]}, scores)
    table = {cid: list(values) for cid, values in scores.items()}
    # "dear" is worse and costlier than "lead": dropped; "cheap" is worse but cheaper: kept
    assert rounds._race(plan, table, [0, 1]) == ["lead", "cheap"]
    single = {**plan, "costs": []}
    assert rounds._race(single, table, [0, 1]) == ["lead"]
    # "lead" 0.1 ms slower than "cheap", within cheap's measured spread: no costlier
    close = stage_plan({"lead": [0.3], "cheap": [0.2], "dear": [3.0]}, scores)
    assert rounds._race(close, table, [0, 1]) == ["lead", "cheap"]
    close["serving"] = {"cheap": {"latency_ms": 0.2, "latency_iqr_ms": 0.15}}
    assert rounds._race(close, table, [0, 1]) == ["lead"]


def test_racing_reads_costs_from_the_serving_measurement_and_the_entries():
    plan = {"costs": ["latency", "n_parameters"], "measured": {"old": [2.0, 10.0]}}
    found = rounds._measured(plan, [
        {"config_id": "a", "fold": 0, "n_parameters": 40},
        {"config_id": "a", "fold": 1, "n_parameters": 44},
        {"config_id": "b", "fold": 0, "n_parameters": 8}],
        {"a": {"latency_ms": 1.5, "model_bytes": 9}, "b": {"error": "failed"}})
    assert found == {"old": [2.0, 10.0], "a": [1.5, 40.0], "b": [None, 8.0]}


def test_the_models_measured_are_each_configurations_first_that_trained():
    found = [{"config_id": "a", "fold": 1, "fit_error": "", "model": "m/a/fold-1",
              "params": {"estimator": "keras"}},
             {"config_id": "a", "fold": 0, "fit_error": "diverged", "model": "m/a/fold-0",
              "params": {"estimator": "keras"}},
             {"config_id": "b", "fold": 0, "fit_error": "", "model": "m/b/fold-0",
              "params": {"estimator": "sklearn_mlp"}},
             {"config_id": "c", "fold": 2, "fit_error": "", "model": "m/c/fold-2",
              "params": {"estimator": "keras"}},
             {"config_id": "c", "fold": 0, "fit_error": "", "model": "m/c/fold-0",
              "params": {"estimator": "keras"}}]
    assert [(e["config_id"], e["fold"]) for e in costs.models_to_measure(found)] == [
        ("a", 1), ("c", 0)]
    assert [e["config_id"] for e in costs.models_to_measure(found, skip={"a"})] == ["c"]


def test_configurations_that_serve_the_same_computation_share_one_measurement():
    import keras

    from foldwise.components.core.serving.timing import inference_key

    def network(units, dropout=0.0, l2=0.0):
        layers = [keras.Input((5,))]
        for n in units:
            layers += [keras.layers.Dense(n, "relu", kernel_regularizer=keras.regularizers.L2(
                l2) if l2 else None), keras.layers.Dropout(dropout)]
        return keras.Sequential([*layers, keras.layers.Dense(1)])

    plain = inference_key(network([16]), 0)
    assert inference_key(network([16], dropout=0.3, l2=1e-4), 0) == plain  # training only
    assert inference_key(network([32]), 0) != plain
    assert inference_key(network([16, 16]), 0) != plain
    assert inference_key(network([16]), 1) != plain  # another fold's inputs


def test_the_rows_timed_are_the_folds_own():
    prepared = pd.DataFrame({"x": range(7), "__fold__": [0, 1, 0, 1, 0, 1, 1]})
    rows = costs.sample_rows(prepared, 1, "__fold__", rows=10)
    assert rows["x"].tolist() == [1, 3, 5, 6, 1, 3, 5, 6, 1, 3]


def test_a_fold_model_is_measured_as_it_would_be_exported(tmp_path, penguins):
    """A real model of one fold, measured in its TensorFlow child: it answers raw rows."""
    from foldwise.components.core.data.fold_transforms import encode_fold, scale_fold
    from foldwise.components.core.data.preprocess import preprocess, preprocess_options
    from foldwise.components.core.data.whole_table import serving_state

    prepared, schema = preprocess(penguins.sample(80, random_state=1).reset_index(drop=True),
                                  preprocess_options({"target": "body_mass_g", "folds": 2}))
    path = tmp_path / "prepared.parquet"
    prepared.to_parquet(path)
    scaled, scaler_state = scale_fold(prepared, schema["numeric"], 0, "standard")
    _, features, encoder = encode_fold(scaled, schema, 0)
    state = serving_state(schema, scaler_state, encoder)
    assert state["features"] == features
    script = (
        "import json, os, sys\n"
        "os.environ['KERAS_BACKEND'] = 'jax'\n"
        "import keras\n"
        "n = int(sys.argv[2])\n"
        "model = keras.Sequential([keras.Input((n,)), keras.layers.Dense(8, 'relu'),"
        " keras.layers.Dense(1)])\n"
        "os.makedirs(sys.argv[1], exist_ok=True)\n"
        "model.save(os.path.join(sys.argv[1], 'model.keras'))\n"
        "json.dump({'method': 'standard', 'mean': 4000.0, 'scale': 800.0},"
        " open(os.path.join(sys.argv[1], 'target_scaling.json'), 'w'))\n")
    folder = tmp_path / "model" / "cfg-a" / "fold-0"
    subprocess.run([sys.executable, "-c", script, str(folder), str(len(features))], check=True)
    found = [{"config_id": "cfg-a", "fold": 0, "fit_error": "", "model": str(folder),
              "params": {"estimator": "keras"}},
             {"config_id": "cfg-a", "fold": 1, "fit_error": "", "model": "elsewhere",
              "params": {"estimator": "keras"}},
             {"config_id": "cfg-b", "fold": 0, "fit_error": "diverged", "model": "nowhere",
              "params": {"estimator": "keras"}}]
    answers = costs.measure_configs(found, lambda uri: Path(uri).read_bytes(), str(path),
                                    {0: state}, schema)
    assert list(answers) == ["cfg-a"]  # a failed model is not measured
    measured = answers["cfg-a"]
    assert measured["fold"] == 0 and measured["calls"] == costs.BLOCKS * costs.CALLS
    assert 0 < measured["latency_ms"] < 10_000 and measured["latency_iqr_ms"] >= 0
    # the saved serving model: the network's file and the fitted preprocessing on top
    assert measured["model_bytes"] > os.path.getsize(folder / "model.keras") * 0.5
    assert json.dumps(measured)  # plain JSON, as the results carry it
