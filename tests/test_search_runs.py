"""Searches beyond the grid, run for real on KFP's embedded engine.

From the command line, successive halving by folds over sampled candidates (the plan step
samples as scikit-learn's ``ParameterSampler`` does; rungs never train a fold twice; the
refit takes the epoch count the validation curves pick). From Python, racing by epochs over a
grid (survivors go on from their last rung's states).
"""

import json

import numpy as np
import pandas as pd
import pytest
from helpers.results import train_entries
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - scikit-learn's gate

import foldwise
from foldwise.components.core.search import sampling
from foldwise.pipelines.cli import main

pytestmark = pytest.mark.local
SPACE = {"learning_rate": {"loguniform": [1e-3, 1e-1]}, "dropout": {"uniform": [0.0, 0.3]},
         "hidden_units": [[4], [8]]}


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("halving")
    space = tmp / "space.yaml"
    space.write_text(json.dumps(SPACE))  # JSON is YAML too
    output = tmp / "run"
    code = main(["run", "halving-search", "--data", "examples/penguins.csv", "--target",
                 "species", "--grid", str(space), "--n-candidates", "3", "--factor", "2",
                 "--folds", "3", "--epochs", "3", "--seed", "5", "--refit-epochs", "cv",
                 "--output", str(output)])
    assert code == 0
    return output


def test_the_plan_step_samples_what_scikit_learns_sampler_draws(halving_run):
    cv = pd.read_csv(halving_run / "cv_results.csv")
    first = cv[cv["iter"] == 0]
    drawn = sampling.sample(sampling.check_space(SPACE), 3, 5)
    for row, point in zip(first.itertuples(), drawn, strict=True):
        params = json.loads(row.params)
        assert params["learning_rate"] == pytest.approx(point["learning_rate"], rel=1e-12)
        assert params["dropout"] == pytest.approx(point["dropout"], rel=1e-12)
        assert params["hidden_units"] == point["hidden_units"]
    best = json.loads((halving_run / "best_params.json").read_text())
    assert set(best) == {"dropout", "hidden_units", "learning_rate"}


def test_halving_by_folds_follows_scikit_learns_schedule(halving_run):
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import HalvingGridSearchCV

    summary = json.loads((halving_run / "summary.json").read_text())
    assert summary["halving"] == {"n_iterations": 2, "n_resources": [1, 2],
                                  "n_candidates": [3, 2], "resource": "folds"}
    theirs = HalvingGridSearchCV(DummyClassifier(), {"strategy": ["prior", "uniform",
                                                                  "stratified"]},
                                 factor=2, resource="n_samples", min_resources=10,
                                 max_resources=30, cv=2, refit=False,
                                 error_score=np.nan).fit(np.zeros((30, 1)), np.arange(30) % 2)
    assert [n // 10 for n in theirs.n_resources_] == summary["halving"]["n_resources"]
    assert theirs.n_candidates_ == summary["halving"]["n_candidates"]


def test_folds_scored_in_an_early_rung_are_never_trained_again(halving_run):
    trained = [(e["config_id"], e["fold"]) for e in train_entries(halving_run)]
    assert len(trained) == len(set(trained)) == 3 * 1 + 2 * 1
    cv = pd.read_csv(halving_run / "cv_results.csv")
    assert list(cv["iter"]) == [0, 0, 0, 1, 1] and list(cv["n_resources"]) == [1, 1, 1, 2, 2]
    summary = json.loads((halving_run / "summary.json").read_text())
    winner = cv[cv["config_id"] == summary["best_config_id"]]
    assert list(winner["n_resources"]) == [1, 2]  # chosen among the last rung's
    assert winner["split0_test_accuracy"].nunique() == 1  # fold 0 kept, not retrained
    dropped = cv[~cv["config_id"].isin(cv.loc[cv["iter"] == 1, "config_id"])].iloc[0]
    assert np.isfinite(dropped["split0_test_accuracy"])  # keeps the score it had
    assert np.isnan(dropped["split1_test_accuracy"])


def test_every_configuration_is_compared_with_the_best(halving_run):
    cv = pd.read_csv(halving_run / "cv_results.csv")
    summary = json.loads((halving_run / "summary.json").read_text())
    last = cv[cv["iter"] == 1].set_index("config_id")["pvalue_vs_best_accuracy"]
    assert np.isnan(last[summary["best_config_id"]])  # the best itself
    assert last.drop(summary["best_config_id"]).between(0, 1).all()  # two shared folds
    assert "Nadeau and Bengio" in (halving_run / "report.html").read_text()
    assert (halving_run / "model" / "model.keras").exists()


def test_validation_fold_curves_pick_the_refits_epochs(halving_run):
    summary = json.loads((halving_run / "summary.json").read_text())
    best = summary["best_config_id"]
    histories = {}
    for path in (halving_run / "pipeline").rglob("history"):
        histories.update(json.loads(path.read_text()).get(best, {}))
    assert sorted(histories) == ["0", "1"]  # the folds its two rungs scored
    assert all(len(h["test_loss"]) == len(h["loss"]) == 3 for h in histories.values())
    mean = np.mean([h["test_loss"] for h in histories.values()], axis=0)
    assert summary["best_epoch"] == int(np.argmin(mean)) + 1 == summary["refit_epochs"]
    assert "lowest mean validation loss: epoch" in (halving_run / "report.html").read_text()


def test_racing_by_epochs_goes_on_from_each_survivors_state(tmp_path, penguins):
    X, y = penguins.drop(columns="species"), penguins["species"]
    search = foldwise.HalvingGridSearchCV(
        {"learning_rate": [0.002, 0.02, 0.08]}, resource="epochs", elimination="racing",
        factor=2, cv=3, epochs=4, hidden_units=[8], verbose=False,
        output=str(tmp_path / "run"))
    search.fit(X, y)
    assert search.n_resources_ == [2, 4] and search.n_candidates_[0] == 3
    assert search.summary_["halving"]["resource"] == "epochs"
    assert search.cv_results_["iter"][search.best_index_] == 1
    assert search.cv_results_["param_epochs"][search.best_index_] == 4
    later = [e for e in train_entries(tmp_path / "run") if e["rung"] == 1]
    assert later and all(e["devices"]["continued_from_epoch"] == 2 and e["epochs_run"] == 4
                         for e in later)
    assert search.best_params_.keys() == {"learning_rate"}
    assert search.predict(X.head(3)).shape == (3,)
