"""Real cross-validation runs on KFP's embedded engine (kfp.local), checked for correctness.

kfp.local has been seen to feed wrong values into loop bodies without an error, so these tests
check that each fold's tasks worked on their own fold — rows, fitted statistics and scores —
and that the pipeline's answer equals the same computation done in this process.
"""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.inprocess import in_process_scores

from foldwise.components.core.columns import FOLD_COLUMN
from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.data.scaling import fit_scaler
from foldwise.components.core.scoring.metrics import score
from foldwise.pipelines.cli import main
from foldwise.pipelines.dags.cross_validation import cross_validation
from foldwise.pipelines.engine import PipelineFailed, run_local

pytestmark = pytest.mark.local
FOLDS = 3
MODEL = ["--hidden-units", "8", "--epochs", "4", "--batch-size", "16"]


def iteration_files(output: Path, step: str, name: str) -> dict[int, Path]:
    """``{iteration index: file}`` of one step's output inside the fold loop."""
    found = {}
    for path in (output / "pipeline").glob(f"*/for-loop-*-iteration-*/{step}/{name}"):
        found[int(path.parent.parent.name.rsplit("-", 1)[1])] = path
    return found


@pytest.fixture(scope="module")
def penguin_run(tmp_path_factory, penguins):
    tmp = tmp_path_factory.mktemp("penguins")
    sample = penguins.sample(120, random_state=1).reset_index(drop=True)
    sample.loc[[5, 50], "species"] = None  # two rows without a target
    data = tmp / "penguins.csv"
    sample.to_csv(data, index=False)
    output = tmp / "run"
    code = main(["run", "cross-validation", "--data", str(data), "--target", "species",
                 "--folds", str(FOLDS), "--seed", "11", *MODEL, "--output", str(output),
                 "--packing", "none"])  # one train task per fold (grid-search runs packed)
    assert code == 0
    return sample, output


def test_outputs_follow_the_contract(penguin_run):
    sample, output = penguin_run
    names = {p.name for p in output.iterdir()}
    assert {"cv_results.csv", "folds.csv", "summary.json", "report.html", "manifest.json",
            "pipeline", "pipeline.log"} <= names
    assert "model" not in names and "best_params.json" not in names
    assert not [n for n in names if n.endswith(".partial")]
    assert ".foldwise-claim" not in names  # the run's claim on its output is released
    cv = pd.read_csv(output / "cv_results.csv")
    assert len(cv) == 1
    for metric in ("accuracy", "balanced_accuracy", "f1_macro", "neg_log_loss", "roc_auc_ovr"):
        for column in [f"split{k}_test_{metric}" for k in range(FOLDS)] + [
                f"mean_test_{metric}", f"std_test_{metric}", f"rank_test_{metric}"]:
            assert column in cv.columns
    assert {"config_id", "params", "param_hidden_units", "param_learning_rate",
            "mean_fit_time", "std_fit_time"} <= set(cv.columns)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["rows_dropped_missing_target"] == [5, 50] and summary["rows_used"] == 118
    assert summary["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert summary["seed"] == 11 and summary["folds"] == FOLDS
    assert summary["metrics"]["accuracy"]["mean"] == pytest.approx(cv["mean_test_accuracy"][0])
    folds = pd.read_csv(output / "folds.csv")
    assert folds["row"].tolist() == [r for r in range(120) if r not in (5, 50)]


def test_the_summary_and_report_say_whether_its_probabilities_mean_what_they_say(penguin_run):
    """Brier and calibration error of the run's own out-of-fold probabilities."""
    from sklearn.metrics import brier_score_loss

    _, output = penguin_run
    found = json.loads((output / "summary.json").read_text())["calibration"]
    oof = pd.concat(pd.read_parquet(p) for p in iteration_files(
        output, "train", "predictions").values())
    proba = oof[[f"proba_{c}" for c in ("Adelie", "Chinstrap", "Gentoo")]].to_numpy()
    assert found["read"] == "top label" and sum(b["rows"] for b in found["bins"]) == 118
    assert found["brier"] == pytest.approx(brier_score_loss(
        oof["y_true"].to_numpy(), proba, labels=[0, 1, 2]))
    assert 0 <= found["ece"] <= 1
    page = (output / "report.html").read_text()
    assert "Calibration</h2>" in page and f"Brier {found['brier']:.4f}" in page


def test_each_fold_task_worked_on_its_own_fold(penguin_run):
    sample, output = penguin_run
    folds = pd.read_csv(output / "folds.csv")
    prepared, schema = preprocess(sample, PreprocessOptions(target="species", folds=FOLDS,
                                                            seed=11))
    predictions = iteration_files(output, "train", "predictions")
    (states,) = (output / "pipeline").glob("*/scale-folds/scaler_state")
    scaler_states = {state["fold"]: state for state in json.loads(states.read_text())["folds"]}
    assert sorted(predictions) == sorted(scaler_states) == list(range(FOLDS))
    cv = pd.read_csv(output / "cv_results.csv")
    seen_rows = []
    for fold in range(FOLDS):
        frame = pd.read_parquet(predictions[fold])
        assert set(frame["fold"]) == {fold}
        assert frame["row"].tolist() == folds.loc[folds["fold"] == fold, "row"].tolist()
        seen_rows += frame["row"].tolist()
        state = scaler_states[fold]
        expected = fit_scaler(prepared[prepared[FOLD_COLUMN] != fold], schema["numeric"])
        assert state == {"fold": fold, **expected}
        proba = frame[[c for c in frame.columns if c.startswith("proba_")]].to_numpy()
        rescored = score("classification", frame["y_true"].to_numpy(), proba, 3)
        for metric, value in rescored.items():
            assert cv[f"split{fold}_test_{metric}"][0] == pytest.approx(value)
    assert sorted(seen_rows) == folds["row"].tolist()  # every row scored exactly once


def test_pipeline_scores_equal_the_same_computation_in_process(penguin_run):
    sample, output = penguin_run
    cv = pd.read_csv(output / "cv_results.csv")
    expected = in_process_scores(sample, "species",
                                 {"hidden_units": [8], "epochs": 4, "batch_size": 16}, 11, FOLDS)
    for fold, scores in enumerate(expected):
        for metric, value in scores.items():
            assert cv[f"split{fold}_test_{metric}"][0] == pytest.approx(value, abs=1e-6)
    splits = [cv[f"split{k}_test_neg_log_loss"][0] for k in range(FOLDS)]
    assert len(set(np.round(splits, 10))) == FOLDS  # folds really differ


def regression_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = 60
    größe = rng.normal(size=rows)
    farbe = rng.choice(["rot", "grün", "blau"], size=rows)
    ziel = 50 + 10 * größe + np.where(farbe == "rot", 5.0, 0.0) + rng.normal(size=rows)
    größe[[3, 17]] = np.nan
    return pd.DataFrame({"größe": größe, "farbe": farbe, "zielwert €": ziel})


def test_same_seed_writes_identical_cv_results_and_non_ascii_columns_work(tmp_path):
    data = tmp_path / "table.parquet"
    regression_table().to_parquet(data, index=False)
    tables = []
    for name in ("first", "second"):
        code = main(["run", "cross-validation", "--data", str(data), "--target", "zielwert €",
                     "--folds", str(FOLDS), "--seed", "3", *MODEL, "--optimizer", "sgd",
                     "--momentum", "0.9", "--learning-rate", "0.01",
                     "--output", str(tmp_path / name)])
        assert code == 0
        tables.append(pd.read_csv(tmp_path / name / "cv_results.csv"))
    timing = [c for c in tables[0].columns if c.endswith(("_fit_time", "_score_time"))]
    first, second = (t.drop(columns=timing) for t in tables)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    assert first["param_optimizer"][0] == "sgd" and first["param_momentum"][0] == 0.9
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["target"] == "zielwert €"
    assert summary["metrics"]["r2"]["mean"] > 0.5
    folds_a = (tmp_path / "first" / "folds.csv").read_text()
    assert folds_a == (tmp_path / "second" / "folds.csv").read_text()


def test_a_failing_step_reports_its_own_error(tmp_path):
    with pytest.raises(PipelineFailed, match=r"Inner task failed: 'preprocess'.*does not "
                                             r"exist") as caught:
        run_local(cross_validation, {"data": str(tmp_path / "gone.csv"), "target": "y",
                                     "destination": str(tmp_path / "out")},
                  tmp_path / "pipeline", tmp_path / "pipeline.log")
    assert caught.value.user_error
    assert "Traceback" in (tmp_path / "pipeline.log").read_text()


def test_cross_validation_reads_from_and_writes_to_a_bucket(bucket, tmp_path, penguins,
                                                            monkeypatch, capsys):
    from foldwise.components import storage

    monkeypatch.chdir(tmp_path)
    sample = tmp_path / "penguins.parquet"
    penguins.sample(60, random_state=2).to_parquet(sample, index=False)
    data_uri = f"gs://{bucket.name}/tables/penguins.parquet"
    storage.upload(sample, data_uri)
    destination = f"gs://{bucket.name}/cv/penguins"
    assert main(["run", "cross-validation", "--data", data_uri, "--target", "species",
                 "--folds", "2", *MODEL, "--output", destination]) == 0
    summary = json.loads(storage.read_bytes(f"{destination}/summary.json"))
    assert summary["data"]["uri"] == data_uri and summary["rows_used"] == 60
    cv = pd.read_csv(io.BytesIO(storage.read_bytes(f"{destination}/cv_results.csv")))
    assert cv["split1_test_accuracy"][0] == pytest.approx(
        summary["metrics"]["accuracy"]["mean"] * 2 - cv["split0_test_accuracy"][0])
    assert list(tmp_path.glob("foldwise-runs/cross-validation-*/pipeline.log"))
    capsys.readouterr()
    assert main(["run", "cross-validation", "--data", data_uri, "--target", "species",
                 "--folds", "2", "--output", destination]) == 2
    assert "already holds finished results (manifest.json)" in capsys.readouterr().err
    manifest = json.loads(storage.read_bytes(f"{destination}/manifest.json"))
    assert set(manifest["files"]) == {"cv_results.csv", "summary.json", "report.html",
                                      "folds.csv"}
    assert not storage.exists(f"{destination}/{storage.CLAIM}")  # released
    assert manifest["what"] == "foldwise cross-validation: results"
