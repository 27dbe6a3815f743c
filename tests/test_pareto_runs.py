"""A score against serving costs, run for real on KFP's embedded engine.

From the command line, a grid search weighs r2 against latency and model size: every Keras
configuration's exported model (one fold's, its preprocessing folded in) is measured on raw
rows after training, in the aggregate step; ``cv_results`` marks the Pareto front,
``refit=pareto:latency`` refits the fastest within one standard error of the best, and the
report draws the front. From Python, a
Bayesian search runs multi-objective: its study is told each finished configuration's score
and latency as its round measured it; configurations that serve the same computation share
one latency.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.results import train_entries

import foldwise
from foldwise.components.core.scoring import pareto
from foldwise.pipelines.cli import main

pytestmark = pytest.mark.local
GRID = {"hidden_units": [[4], [32, 32], [128, 128]], "learning_rate": [0.01]}


@pytest.fixture(scope="module")
def front_run(tmp_path_factory, penguins):
    tmp = tmp_path_factory.mktemp("pareto")
    data = tmp / "penguins.csv"
    penguins.sample(150, random_state=3).to_csv(data, index=False)
    grid = tmp / "grid.yaml"
    grid.write_text(json.dumps(GRID))
    output = tmp / "run"
    code = main(["run", "grid-search", "--data", str(data), "--target", "body_mass_g",
                 "--grid", str(grid), "--folds", "3", "--epochs", "4", "--baseline", "mlp",
                 "--objectives", "r2,latency,model_bytes", "--refit", "pareto:latency",
                 "--packing", "configs", "--output", str(output)])
    assert code == 0
    return output


def test_every_keras_configuration_is_measured_on_a_fold_model(front_run):
    cv = pd.read_csv(front_run / "cv_results.csv")
    summary = json.loads((front_run / "summary.json").read_text())
    keras_rows = cv[cv["param_estimator"] == "keras"]
    assert len(keras_rows) == 3 and summary["serving_errors"] == {}
    assert (keras_rows["latency_ms"] > 0).all() and (keras_rows["model_bytes"] > 0).all()
    assert (keras_rows["latency_iqr_ms"] >= 0).all()
    assert cv.loc[cv["param_estimator"] == "sklearn_mlp", "latency_ms"].isna().all()
    # a wider network is a bigger file
    sizes = keras_rows.sort_values("n_parameters")["model_bytes"].tolist()
    assert sizes == sorted(sizes)
    # every train task's model folder is named in its results, for the measurement
    for entry in train_entries(front_run):
        assert Path(entry["model"], "model.keras").exists() or entry["fit_error"] or (
            entry["params"]["estimator"] != "keras")


def test_the_front_and_the_pareto_refit_follow_from_cv_results(front_run):
    cv = pd.read_csv(front_run / "cv_results.csv")
    summary = json.loads((front_run / "summary.json").read_text())
    keras_rows = cv[cv["param_estimator"] == "keras"]
    on = pareto.front(keras_rows["mean_test_r2"], keras_rows[["latency_ms", "model_bytes"]])
    assert keras_rows["pareto_front"].tolist() == on.tolist()
    assert not cv.loc[cv["param_estimator"] != "keras", "pareto_front"].any()
    assert summary["objectives"] == ["r2", "latency", "model_bytes"]
    assert sorted(p["config_id"] for p in summary["pareto_front"]) == sorted(
        keras_rows.loc[on, "config_id"])
    front = keras_rows[on]  # the refit picks from the front; a latency within the
    chosen = pareto.pick(front["mean_test_r2"], front["std_test_r2"],  # fastest's spread ties
                         front["latency_ms"], 3, front["latency_iqr_ms"])
    assert summary["best_config_id"] == front.iloc[chosen]["config_id"]
    assert summary["refit"] == "pareto:latency"
    exported = json.loads((front_run / "model" / "config.json").read_text())
    assert exported["config_id"] == summary["best_config_id"]


def test_the_report_draws_the_front(front_run):
    page = (front_run / "report.html").read_text()
    section = page[page.index("the Pareto front</h2>"):]
    section = section[:section.index("<h2>")]
    assert section.count("<svg") == 2  # latency and model size, each against r2
    assert "1,000 raw rows" in section


@pytest.fixture(scope="module")
def bayes_front(tmp_path_factory, penguins):
    table = penguins.dropna(subset=["body_mass_g"]).sample(120, random_state=4)
    search = foldwise.BayesSearchCV(
        {"hidden_units": [[4], [64, 64]], "learning_rate": (1e-3, 3e-2, "log-uniform")},
        n_iter=4, n_points=4, cv=3, epochs=3, random_state=1, objectives="r2,latency",
        packing="configs", output=str(tmp_path_factory.mktemp("bayes-front") / "run"),
        verbose=False)
    search.fit(table.drop(columns="body_mass_g"), table["body_mass_g"])
    return search


def test_a_bayesian_study_of_several_objectives_is_told_score_and_latency(bayes_front):
    output = Path(bayes_front.output_)
    plans = [json.loads(p.read_text()) for p in (output / "pipeline").rglob("plan")
             if p.is_file()]
    study = max((p for p in plans if "study" in p), key=lambda p: p["slot"])["study"]
    assert study["directions"] == ["maximize", "minimize"]
    cv = pd.DataFrame(bayes_front.cv_results_).set_index("config_id")
    plan = max((p for p in plans if "study" in p), key=lambda p: p["slot"])
    for number, cid in plan["trials"].items():
        trial = study["trials"][int(number)]
        row = cv.loc[cid]
        if trial["state"] == "finished":  # its score and its round's measurement, as made
            assert trial["values"] == pytest.approx([row["mean_test_r2"],
                                                     plan["serving"][cid]["latency_ms"]])
        else:
            assert trial["state"] == "pruned" and "values" not in trial
    assert "pareto_front" in bayes_front.cv_results_
    assert np.asarray(bayes_front.cv_results_["pareto_front"]).any()


def test_configurations_serving_the_same_computation_share_one_latency(bayes_front):
    """Learning rates differ, layers do not: one measurement, no noise between them."""
    cv = pd.DataFrame(bayes_front.cv_results_)
    cv["layers"] = cv["param_hidden_units"].map(json.dumps)
    for _, rows in cv.groupby("layers"):
        assert rows["latency_ms"].nunique() == 1, rows[["config_id", "latency_ms"]]
    assert cv["latency_ms"].nunique() == cv["layers"].nunique()
