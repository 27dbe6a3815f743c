"""A train task's trial loop: trained, saved, summarized; failed trials recorded, not raised."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.data.fold_data import fold_file, write_fold_table
from foldwise.components.core.jsonio import dumps
from foldwise.components.core.models.spec import config_id, normalize_spec
from foldwise.components.core.training.trials import checkpoint_dir, run_trials

SCHEMA = {"task": "classification", "target": "label", "classes": ["low", "mid", "high"]}
FEATURES = ["a", "b"]


@pytest.fixture(scope="module")
def fold_data(tmp_path_factory):
    """Two folds of a 48-row, three-class table, written as the collect-folds step does."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 2))
    table = pd.DataFrame({"a": x[:, 0], "b": x[:, 1],
                          "label": np.digitize(x[:, 0] + 0.3 * x[:, 1], [-0.4, 0.4]),
                          ROW_COLUMN: np.arange(48), FOLD_COLUMN: np.arange(48) % 2})
    folder = tmp_path_factory.mktemp("fold_data")
    for fold in (0, 1):
        write_fold_table(table, fold_file(folder, fold), fold, FEATURES)
    return folder, table


def config(**params):
    spec = normalize_spec({"hidden_units": [8], "epochs": 3, "batch_size": 8,
                           "optimizer": "sgd", **params}, "classification", 3)
    return {"config_id": config_id(spec), "params": spec}


DIVERGING = config(learning_rate=1e12)
HEALTHY = config(learning_rate=0.05)


@pytest.fixture(scope="module")
def trained(fold_data, tmp_path_factory):
    folder, _ = fold_data
    model_dir = tmp_path_factory.mktemp("model")
    out = run_trials(str(folder), SCHEMA, [DIVERGING, HEALTHY], [1.0, 0.0], seed=4,
                     model_dir=str(model_dir), predictions_uri="mem://p", history_uri="mem://h")
    return out, model_dir


def test_every_trial_is_summarized_in_order_and_failures_are_recorded(trained):
    out, _ = trained
    assert [(s["config_id"], s["fold"]) for s in out.summaries] == [
        (DIVERGING["config_id"], 1), (DIVERGING["config_id"], 0),
        (HEALTHY["config_id"], 1), (HEALTHY["config_id"], 0)]
    for summary in out.summaries[:2]:
        assert summary["fit_error"] == "diverged: non-finite loss at epoch 1"
        assert all(math.isnan(v) for v in summary["scores"].values())
    for summary in out.summaries[2:]:
        assert summary["fit_error"] == "" and 0 <= summary["scores"]["accuracy"] <= 1
        assert summary["n_train"] == summary["n_validation"] == 24
        assert summary["devices"]["tensorflow_loaded"]  # this process's Keras: TensorFlow
    assert {s["predictions"] for s in out.summaries} == {"mem://p"}
    assert {s["history"] for s in out.summaries} == {"mem://h"}
    # What the wrapper returns is strict JSON: NaN scores travel as null.
    entry = json.loads(dumps(out.summaries))[0]
    assert set(entry["scores"].values()) == {None}


def test_failed_trials_are_kept_out_of_the_logged_metrics_and_the_confusion_matrix(trained):
    out, _ = trained
    assert out.metrics and all(math.isfinite(v) for v in out.metrics.values())
    assert not any(name.startswith(DIVERGING["config_id"]) for name in out.metrics)
    healthy = out.summaries[2]
    assert out.metrics[f"{HEALTHY['config_id']}_fold1_accuracy"] == healthy["scores"]["accuracy"]
    # The first configuration failed: the matrix is the healthy one's, over both folds.
    assert out.class_labels == ["low", "mid", "high"]
    assert sum(map(sum, out.confusion_matrix)) == 48
    correct = sum(out.confusion_matrix[i][i] for i in range(3))
    accuracies = [s["scores"]["accuracy"] for s in out.summaries[2:]]
    assert correct == round(24 * sum(accuracies))
    assert out.devices["device"] == "cpu"


def test_predictions_histories_and_model_folders_of_each_trial(trained, fold_data):
    out, model_dir = trained
    _, table = fold_data
    predictions = out.predictions
    assert list(predictions.columns) == ["config_id", "row", "fold", "y_true", "proba_low",
                                         "proba_mid", "proba_high"]
    healthy = predictions[predictions["config_id"] == HEALTHY["config_id"]]
    assert sorted(healthy["row"]) == list(range(48))
    assert (healthy["y_true"].to_numpy() == table.loc[healthy["row"], "label"].to_numpy()).all()
    assert np.isfinite(healthy.iloc[:, 4:].to_numpy()).all()
    assert len(out.histories[HEALTHY["config_id"]]["0"]["loss"]) == 3
    assert len(out.histories[DIVERGING["config_id"]]["0"]["loss"]) == 1
    for fold in (0, 1):
        failed = model_dir / DIVERGING["config_id"] / f"fold-{fold}"
        assert (failed / "fit_error.txt").read_text().startswith("diverged:")
        assert (failed / "model.keras").exists()  # saved as it ended, for inspection
        trained_ok = model_dir / HEALTHY["config_id"] / f"fold-{fold}"
        assert sorted(p.name for p in trained_ok.iterdir()) == ["model.keras",
                                                               "target_scaling.json"]
    assert (model_dir / "checkpoint").exists() and checkpoint_dir(str(model_dir)) == str(
        model_dir / "checkpoint")


def test_a_table_of_another_fold_still_raises(fold_data, tmp_path):
    folder, table = fold_data
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    write_fold_table(table, fold_file(wrong, 1), 0, FEATURES)
    with pytest.raises(RuntimeError, match="trial for fold 1 was handed the table of fold 0"):
        run_trials(str(wrong), SCHEMA, [HEALTHY], [1], seed=0, model_dir=str(tmp_path / "m"))


EPOCHS_RUNG = """
import json, sys
import keras
import numpy as np
from foldwise.components.core.training.trials import run_trials
folder, tmp, schema, configs = json.loads(sys.argv[1])
first = run_trials(folder, schema, configs, [0, 1], seed=4, model_dir=tmp + "/rung0",
                   model_uri=tmp + "/rung0",
                   tags={"rung": 0, "n_resources": 2, "resource": "epochs", "epochs": 2})
survivor = configs[0]
states = {f"{s['config_id']}|{s['fold']}": s["state"] for s in first.summaries
          if s["config_id"] == survivor["config_id"]}
second = run_trials(folder, schema, [survivor], [0, 1], seed=4, model_dir=tmp + "/rung1",
                    model_uri=tmp + "/rung1",
                    tags={"rung": 1, "n_resources": 5, "resource": "epochs", "epochs": 5,
                          "continue": states})
whole = run_trials(folder, schema, [survivor], [0, 1], seed=4, model_dir=tmp + "/whole")
weights = []
for went_on in second.summaries:
    path = f"{survivor['config_id']}/fold-{went_on['fold']}/model.keras"
    ours = keras.saving.load_model(f"{tmp}/rung1/{path}").get_weights()
    theirs = keras.saving.load_model(f"{tmp}/whole/{path}").get_weights()
    weights.append(max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs)))
cid = survivor["config_id"]
print(json.dumps({"first": [s["epochs_run"] for s in first.summaries],
                  "second": second.summaries, "whole": whole.summaries, "weights": weights,
                  "losses": [second.histories[cid]["0"]["loss"],
                             whole.histories[cid]["0"]["loss"]]}, default=str))
"""


def test_an_epochs_rung_survivor_goes_on_to_the_weights_of_a_run_of_the_whole_budget(
        fold_data, tmp_path):
    """Halving by epochs: rung 0 trains 2 epochs, rung 1 goes on to 5 from the saved states.

    In a process of its own, as a train task runs: Keras on JAX, the one engine.
    """
    import subprocess
    import sys

    folder, _ = fold_data
    configs = [config(learning_rate=0.05, optimizer="adam", epochs=5, dropout=0.1),
               config(learning_rate=0.01, optimizer="adam", epochs=5, hidden_units=[4])]
    done = subprocess.run([sys.executable, "-c", EPOCHS_RUNG, json.dumps(
        [str(folder), str(tmp_path), SCHEMA, configs])], capture_output=True, text=True,
        timeout=600, env={**__import__("os").environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"] == [2, 2, 2, 2]
    for went_on, uninterrupted in zip(out["second"], out["whole"], strict=True):
        assert went_on["devices"]["continued_from_epoch"] == 2
        assert went_on["devices"]["tensorflow_loaded"] is False
        assert went_on["params"]["epochs"] == 5 and went_on["rung"] == 1
        assert went_on["scores"] == pytest.approx(uninterrupted["scores"], rel=1e-5)
    assert max(out["weights"]) < 1e-6
    assert out["losses"][0] == pytest.approx(out["losses"][1], rel=1e-6)


def test_a_resumed_run_takes_over_only_tasks_that_wrote_every_output(tmp_path):
    """A task stopped between its reuse record and its history is trained again, not read."""
    from foldwise.components.core.training import resume

    root = tmp_path / "pipeline"
    finished = root / "run-1" / "for-loop-1-iteration-0" / "train"
    stopped = root / "run-1" / "for-loop-1-iteration-1" / "train"
    for train_dir, key in ((finished, "a"), (stopped, "b")):
        (train_dir / "model").mkdir(parents=True)
        resume.write_record(train_dir / "model", {key: {"config_id": "cfg", "fold": 0}})
    (finished / "history").write_text("{}")
    (finished / "predictions").write_bytes(b"")
    here = root / "run-2" / "for-loop-1-iteration-0" / "train" / "model"
    here.mkdir(parents=True)
    found = resume.previous_trials(here)
    assert set(found) == {"a"} and found["a"].train_dir == finished
