"""Searches beyond the grid, run for real on KFP's embedded engine.

Random search from the command line; halving by folds from Python (rungs that never train a
fold twice); racing by epochs over sampled candidates from Python (survivors that go on from
their last rung's states).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import loguniform
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - scikit-learn's gate

import foldwise
from foldwise.components.core import sampling
from foldwise.pipelines.cli import main

pytestmark = pytest.mark.local
SPACE = ("learning_rate: {loguniform: [1.0e-3, 1.0e-1]}\ndropout: {uniform: [0.0, 0.3]}\n"
         "hidden_units: [[4], [8]]\n")


def train_entries(output: Path) -> list[dict]:
    """Every (configuration, fold) entry of every train task of a run."""
    entries = []
    for path in sorted((output / "pipeline").rglob("results")):
        loaded = json.loads(path.read_text())
        if isinstance(loaded, list) and loaded and "n_train" in loaded[0]:
            entries += loaded
    return entries


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("random")
    space = tmp / "space.yaml"
    space.write_text(SPACE)
    output = tmp / "run"
    code = main(["run", "random-search", "--data", "examples/penguins.csv", "--target",
                 "species", "--grid", str(space), "--n-iter", "3", "--folds", "3",
                 "--epochs", "3", "--seed", "5", "--refit-epochs", "cv", "--output",
                 str(output)])
    assert code == 0
    return output


def test_random_search_trains_what_scikit_learns_sampler_draws(random_run):
    cv = pd.read_csv(random_run / "cv_results.csv")
    drawn = sampling.sample(sampling.check_space(
        {"learning_rate": {"loguniform": [1e-3, 1e-1]}, "dropout": {"uniform": [0.0, 0.3]},
         "hidden_units": [[4], [8]]}), 3, 5)
    assert len(cv) == 3
    for row, point in zip(cv.itertuples(), drawn, strict=True):
        params = json.loads(row.params)
        assert params["learning_rate"] == pytest.approx(point["learning_rate"], rel=1e-12)
        assert params["dropout"] == pytest.approx(point["dropout"], rel=1e-12)
        assert params["hidden_units"] == point["hidden_units"]
    best = json.loads((random_run / "best_params.json").read_text())
    assert set(best) == {"dropout", "hidden_units", "learning_rate"}
    # the comparison with the best: NaN for the best itself, a p-value for the others
    summary = json.loads((random_run / "summary.json").read_text())
    pvalues = cv.set_index("config_id")["pvalue_vs_best_accuracy"]
    assert np.isnan(pvalues[summary["best_config_id"]])
    assert pvalues.drop(summary["best_config_id"]).between(0, 1).all()
    assert "Nadeau and Bengio" in (random_run / "report.html").read_text()
    assert (random_run / "model" / "model.keras").exists()


def test_validation_fold_curves_pick_the_refits_epochs(random_run):
    summary = json.loads((random_run / "summary.json").read_text())
    best = summary["best_config_id"]
    histories = {}
    for path in (random_run / "pipeline").rglob("history"):
        histories.update(json.loads(path.read_text()).get(best, {}))
    assert sorted(histories) == ["0", "1", "2"]
    assert all(len(h["test_loss"]) == len(h["loss"]) == 3 for h in histories.values())
    mean = np.mean([h["test_loss"] for h in histories.values()], axis=0)
    assert summary["best_epoch"] == int(np.argmin(mean)) + 1 == summary["refit_epochs"]
    assert "lowest mean validation loss: epoch" in (random_run / "report.html").read_text()


@pytest.fixture(scope="module")
def halving(tmp_path_factory, penguins):
    X, y = penguins.drop(columns="species"), penguins["species"]
    search = foldwise.HalvingGridSearchCV(
        {"learning_rate": [0.0005, 0.01, 0.05]}, factor=2, cv=3, epochs=2,
        hidden_units=[8], verbose=False, output=str(tmp_path_factory.mktemp("halving") / "r"))
    return search.fit(X, y)


def test_halving_by_folds_follows_scikit_learns_schedule(halving):
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import HalvingGridSearchCV

    assert halving.n_resources_ == [1, 2] and halving.n_candidates_ == [3, 2]
    X = np.zeros((30, 1))
    theirs = HalvingGridSearchCV(DummyClassifier(), {"strategy": ["prior", "uniform",
                                                                  "stratified"]},
                                 factor=2, resource="n_samples", min_resources=10,
                                 max_resources=30, cv=2, refit=False,
                                 error_score=np.nan).fit(X, np.arange(30) % 2)
    assert [n // 10 for n in theirs.n_resources_] == halving.n_resources_
    assert theirs.n_candidates_ == halving.n_candidates_
    assert halving.n_iterations_ == 2 and halving.n_remaining_candidates_ == 1


def test_folds_scored_in_an_early_rung_are_never_trained_again(halving):
    entries = train_entries(Path(halving.output_))
    trained = [(e["config_id"], e["fold"]) for e in entries]
    assert len(trained) == len(set(trained)) == 3 * 1 + 2 * 1
    cv = halving.cv_results_
    assert list(cv["iter"]) == [0, 0, 0, 1, 1]
    assert list(cv["n_resources"]) == [1, 1, 1, 2, 2]
    winner = cv["config_id"][halving.best_index_]
    assert cv["iter"][halving.best_index_] == 1  # chosen among the last rung's
    # the winner's rows grow by folds; an eliminated candidate keeps its one fold's score
    rows = [i for i, cid in enumerate(cv["config_id"]) if cid == winner]
    assert [cv["n_resources"][i] for i in rows] == [1, 2]
    assert cv["split0_test_accuracy"][rows[0]] == cv["split0_test_accuracy"][rows[-1]]
    dropped = next(i for i, cid in enumerate(cv["config_id"]) if cid not in
                   set(cv["config_id"][3:]))
    assert np.isfinite(cv["split0_test_accuracy"][dropped])
    assert np.isnan(cv["split1_test_accuracy"][dropped])
    assert halving.summary_["halving"]["resource"] == "folds"


def test_racing_by_epochs_goes_on_from_each_survivors_state(tmp_path, penguins):
    X, y = penguins.drop(columns="species"), penguins["species"]
    search = foldwise.HalvingRandomSearchCV(
        {"learning_rate": loguniform(1e-3, 1e-1)}, n_candidates=3, resource="epochs",
        elimination="racing", factor=2, cv=3, epochs=4, hidden_units=[8], verbose=False,
        random_state=1, output=str(tmp_path / "run"))
    search.fit(X, y)
    assert search.n_resources_ == [2, 4]
    assert search.summary_["halving"]["resource"] == "epochs"
    entries = train_entries(tmp_path / "run")
    later = [e for e in entries if e["rung"] == 1]
    assert later and all(e["devices"]["continued_from_epoch"] == 2 and e["epochs_run"] == 4
                         for e in later)
    assert search.best_params_.keys() == {"learning_rate"}
    assert search.predict(X.head(3)).shape == (3,)
