"""Bayesian search run for real on KFP's embedded engine: rounds, racing inside them, refit.

From the command line over a conditional space (dropout exists only for two layers): the
first round is what the study asks first wherever it is rebuilt; a raced-out configuration
trains only its first folds and the optimizer is told its score on those (pruned), never a
finished score; every finished configuration is told its mean over every fold. From Python,
``BayesSearchCV`` with scikit-optimize's space forms.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.results import train_entries

import foldwise
from foldwise.components.core.search import bayes
from foldwise.pipelines.cli import main

pytestmark = pytest.mark.local
SPACE = {"learning_rate": {"loguniform": [1e-3, 3e-1]}, "hidden_units": [[8], [16, 8]],
         "dropout": {"uniform": [0.0, 0.4], "when": {"hidden_units": [[16, 8]]}}}


def last_plan(output: Path) -> dict:
    """The plan the last stage left: the study with every trial told."""
    plans = [json.loads(p.read_text()) for p in (output / "pipeline").rglob("plan")
             if p.is_file()]
    return max((p for p in plans if "study" in p), key=lambda p: p["slot"])


@pytest.fixture(scope="module")
def bayes_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bayes")
    space = tmp / "space.yaml"
    space.write_text(json.dumps(SPACE))
    output = tmp / "run"
    code = main(["run", "bayes-search", "--data", "examples/penguins.csv", "--target",
                 "species", "--grid", str(space), "--n-iter", "8", "--batch", "4",
                 "--confidence", "0.6", "--folds", "4", "--epochs", "3", "--seed", "2",
                 "--output", str(output)])
    assert code == 0
    return output


def test_the_first_round_is_what_the_study_asks_first(bayes_run):
    cv = pd.read_csv(bayes_run / "cv_results.csv")
    assert list(cv["round"]) == sorted(cv["round"]) and set(cv["round"]) == {0, 1}
    asked = bayes.ask(bayes.new_study(SPACE, 2), 4, 0)
    first = [json.loads(p) for p in cv.loc[cv["round"] == 0, "params"]]
    assert len(first) == 4
    for point in asked:
        assert any(all(params[k] == pytest.approx(v) if isinstance(v, float) else params[k] == v
                       for k, v in point.items()) for params in first), point
    for params in first + [json.loads(p) for p in cv["params"]]:  # the condition holds
        assert (params["hidden_units"] == [16, 8]) or params["dropout"] == 0.0


def test_raced_out_configurations_take_no_more_folds_and_are_told_pruned(bayes_run):
    cv = pd.read_csv(bayes_run / "cv_results.csv")
    trained = [(e["config_id"], e["fold"]) for e in train_entries(bayes_run)]
    assert len(trained) == len(set(trained))  # no (configuration, fold) twice
    folds = cv.set_index("config_id")["n_resources"]
    assert set(folds) <= {2, 4}
    for cid, count in folds.items():
        assert sorted(f for c, f in trained if c == cid) == list(range(count))
    plan = last_plan(bayes_run)
    trials = plan["study"]["trials"]
    assert len(trials) == 8 and all(t["state"] is not None for t in trials)
    by_id = cv.set_index("config_id")
    for number, cid in plan["trials"].items():
        trial, row = trials[int(number)], by_id.loc[cid]
        assert trial["state"] == (bayes.PRUNED if row["n_resources"] == 2 else bayes.FINISHED)
        # told the mean over the folds it was scored on, nothing else
        assert trial["value"] == pytest.approx(row["mean_test_accuracy"])
    raced = cv[cv["n_resources"] == 2]
    full = cv[cv["n_resources"] == 4]
    assert len(raced) >= 1, "confidence 0.6 on four folds raced nothing out"
    assert raced["rank_test_accuracy"].min() > full["rank_test_accuracy"].max()
    assert raced[["split2_test_accuracy", "split3_test_accuracy"]].isna().all().all()


def test_the_best_is_chosen_among_configurations_scored_on_every_fold(bayes_run):
    cv = pd.read_csv(bayes_run / "cv_results.csv")
    summary = json.loads((bayes_run / "summary.json").read_text())
    best = cv.set_index("config_id").loc[summary["best_config_id"]]
    assert best["n_resources"] == 4 and best["rank_test_accuracy"] == 1
    params = json.loads((bayes_run / "best_params.json").read_text())
    assert set(params) <= set(SPACE) and "learning_rate" in params
    assert (bayes_run / "model" / "model.keras").exists()


def test_bayes_search_cv_takes_scikit_optimizes_space_forms(tmp_path, penguins):
    X, y = penguins.drop(columns="species"), penguins["species"]
    search = foldwise.BayesSearchCV(
        {"learning_rate": (1e-3, 1e-1, "log-uniform"), "batch_size": (16, 32)}, n_iter=4,
        n_points=2, racing="off", cv=3, epochs=2, hidden_units=[8], random_state=1,
        verbose=False, output=str(tmp_path / "run"))
    assert search.get_params()["n_points"] == 2
    search.fit(X, y)
    assert search.n_rounds_ == 2 and search.n_pruned_ == 0
    assert list(search.cv_results_["round"]) == [0, 0, 1, 1]
    assert np.all(search.cv_results_["n_resources"] == 3)
    assert 16 <= search.best_params_["batch_size"] <= 32  # scikit-optimize's high included
    assert 1e-3 <= search.best_params_["learning_rate"] <= 1e-1
    assert search.predict(X.head(3)).shape == (3,)


def resumed(output: Path) -> dict[tuple[str, int], bool]:
    """Each (configuration, fold) a run's train tasks answered: taken over or trained."""
    return {(e["config_id"], e["fold"]): bool(e["devices"].get("resumed"))
            for e in train_entries(output)}


def test_a_warm_start_tells_the_study_and_takes_finished_trials_over(bayes_run, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps(SPACE))
    output = tmp_path / "warm"
    assert main(["run", "bayes-search", "--data", "examples/penguins.csv", "--target",
                 "species", "--grid", str(space), "--n-iter", "2", "--batch", "2",
                 "--confidence", "0.6", "--folds", "4", "--epochs", "3", "--seed", "2",
                 "--warm-start", str(bayes_run), "--output", str(output)]) == 0
    earlier = pd.read_csv(bayes_run / "cv_results.csv").set_index("config_id")
    cv = pd.read_csv(output / "cv_results.csv").set_index("config_id")
    plan = last_plan(output)
    told = [t for t in plan["study"]["trials"] if t["round"] == -1]
    assert len(told) == len(earlier)  # every earlier configuration, as it ended
    assert sorted(t["state"] for t in told) == sorted(
        bayes.FINISHED if n == 4 else bayes.PRUNED for n in earlier["n_resources"])
    finished = earlier[earlier["n_resources"] == 4]
    taken = resumed(output)
    for cid in finished.index:  # taken over, never trained again, its scores kept
        assert all(taken[(cid, fold)] for fold in range(4)), cid
        assert cv.loc[cid, "round"] == -1
        assert cv.loc[cid, "mean_test_accuracy"] == pytest.approx(
            finished.loc[cid, "mean_test_accuracy"])
    new = cv[cv["round"] == 0]
    assert len(new) == 2 and not any(taken[(cid, 0)] for cid in new.index)
    assert not set(new.index) & set(earlier.index)  # the study asks what it has not seen


def test_a_grid_search_warm_started_trains_only_what_the_earlier_run_did_not(tmp_path):
    def grid_run(rates, output, *more):
        grid = tmp_path / f"grid-{len(rates)}.yaml"
        grid.write_text(json.dumps({"learning_rate": rates}))
        return main(["run", "grid-search", "--data", "examples/penguins.csv", "--target",
                     "species", "--grid", str(grid), "--folds", "3", "--epochs", "2",
                     "--hidden-units", "8", "--output", str(output), *more])

    assert grid_run([0.01, 0.05], tmp_path / "first") == 0
    assert grid_run([0.01, 0.05, 0.2], tmp_path / "second", "--warm-start",
                    str(tmp_path / "first")) == 0
    first = pd.read_csv(tmp_path / "first" / "cv_results.csv").set_index("config_id")
    second = pd.read_csv(tmp_path / "second" / "cv_results.csv").set_index("config_id")
    taken = resumed(tmp_path / "second")
    assert len(taken) == 9 and sum(taken.values()) == 6
    for cid in first.index:
        assert all(taken[(cid, fold)] for fold in range(3))
        assert second.loc[cid, "split1_test_accuracy"] == first.loc[cid, "split1_test_accuracy"]


@pytest.mark.parametrize(("change", "message"), [
    (["--seed", "3"], r"seed 2 \(this run: 3\)"),
    (["--folds", "3"], r"folds 4 \(this run: 3\)"),
    (["--target", "island"], r"target 'species' \(this run: 'island'\)"),
])
def test_a_warm_start_from_another_search_is_refused_before_anything_runs(
        bayes_run, tmp_path, capsys, change, message):
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps(SPACE))
    options = {"--seed": "2", "--folds": "4", "--target": "species"}
    options.update(dict(zip(change[::2], change[1::2], strict=True)))
    code = main(["run", "bayes-search", "--data", "examples/penguins.csv", "--grid",
                 str(space), "--n-iter", "2", "--epochs", "1", "--warm-start", str(bayes_run),
                 "--output", str(tmp_path / "out"),
                 *[item for pair in options.items() for item in pair]])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "--warm-start" in err and "scored another search" in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_a_warm_start_without_an_earlier_export_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"learning_rate": [0.01]}))
    code = main(["run", "grid-search", "--data", "examples/penguins.csv", "--target",
                 "species", "--grid", str(grid), "--warm-start", str(tmp_path / "empty"),
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "has no cv_results.csv" in err and "Traceback" not in err
