"""A train task killed mid-fit (a pre-empted node) is retried and resumes from its last epoch.

The task's process is killed with SIGKILL from outside, as a node loss would, once it has
checkpointed a few epochs; kfp.local retries it (the compiled retry policy), the retry finds
the checkpoint under the task's output and continues. The models it ends with must equal an
uninterrupted run's, weight for weight.
"""

import os
import signal
import threading
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import in_jax
from helpers.results import train_task_results

from foldwise.components.core.data.fold_data import fold_file, read_fold_table, split_fold
from foldwise.components.core.models.spec import normalize_spec
from foldwise.pipelines.dags.cluster import ClusterSettings
from foldwise.pipelines.dags.cross_validation import build_cross_validation
from foldwise.pipelines.engine import run_local

pytestmark = pytest.mark.local
SPEC = {"hidden_units": [16], "epochs": 1500, "batch_size": 16, "dropout": 0.1}
KILL_AFTER_EPOCHS = 40


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def kill_train_task_mid_fit(root: Path, done: threading.Event, record: dict) -> None:
    """SIGKILL the train task once its checkpoint holds KILL_AFTER_EPOCHS epochs."""
    while not done.is_set():
        for checkpoint in root.glob("**/train/model/checkpoint/**/checkpoint*.npz"):
            if ".tmp" in checkpoint.name:
                continue  # the next one, being written
            try:
                with np.load(checkpoint) as state:
                    epochs = int(state["epochs"])
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                continue  # being replaced right now
            if epochs < KILL_AFTER_EPOCHS:
                continue
            model_dir = str(next(p for p in checkpoint.parents if p.name == "checkpoint")
                            .parent)
            for pid in processes_mentioning(model_dir):
                os.kill(pid, signal.SIGKILL)
                record.setdefault("killed", []).append((pid, epochs))
            if record.get("killed"):
                return
        time.sleep(0.02)


def test_a_killed_train_task_resumes_and_ends_with_the_uninterrupted_models(tmp_path,
                                                                          penguins):
    data = tmp_path / "penguins.csv"
    penguins.sample(150, random_state=3).to_csv(data, index=False)
    pipeline = build_cross_validation(ClusterSettings(retry_backoff="1s"))
    root, events, record, done = tmp_path / "root", [], {}, threading.Event()
    killer = threading.Thread(target=kill_train_task_mid_fit, args=(root, done, record))
    killer.start()
    try:
        run_local(pipeline, {"data": str(data), "target": "species", "folds": 2, "seed": 4,
                             "model_spec": SPEC, "packing": "folds",
                             "destination": str(tmp_path / "results")},
                  root, tmp_path / "pipeline.log", events.append)
    finally:
        done.set()
        killer.join()
    assert record.get("killed"), "the train task finished before it could be killed"
    train_ends = [e.status for e in events if e.name == "train" and e.status]
    assert train_ends == ["FAILURE", "SUCCESS"]  # killed, then the retry finished

    (model_dir,) = root.glob("*/**/train/model")
    (train_folder,) = {path.parent for path in root.glob("*/**/train/executor_output.json")}
    results = train_task_results(train_folder)
    (resumed,) = {r["devices"].get("resumed_from_epoch") for r in results}
    # The epochs checkpointed when the kill was sent, or the one or two finished before it hit.
    assert max(epochs for _, epochs in record["killed"]) <= resumed < SPEC["epochs"]
    assert not (model_dir / "checkpoint").exists()

    (fold_data,) = root.glob("*/one-hot-encode-folds/fold_data")
    datas, specs = [], []
    for fold in (0, 1):
        table, _, features = read_fold_table(fold_file(fold_data, fold))
        datas.append(split_fold(table, fold, "species", features))
        specs.append(normalize_spec(SPEC, "classification", 3))
    # Trained at once in a process of its own, as a train step trains (Keras on JAX).
    uninterrupted = in_jax.call("helpers.inprocess", "uninterrupted", datas, specs, [4, 4],
                                "classification", 3)
    for fold, (weights, epochs_run) in enumerate(uninterrupted):
        resumed_model = keras.saving.load_model(
            model_dir / results[fold]["config_id"] / f"fold-{fold}" / "model.keras")
        for ours, theirs in zip(resumed_model.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(ours, theirs)
        assert results[fold]["epochs_run"] == epochs_run == SPEC["epochs"]
