"""Retrain and promotion: a better challenger is promoted, a worse one kept out."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from kfp import compiler

from foldwise.components import storage
from foldwise.components.core.results.promotion import decide, new_version_name, pointer
from foldwise.pipelines.cli import main
from foldwise.pipelines.dags.retrain import retrain


def test_decide_promotes_only_a_strictly_better_challenger():
    assert decide("cfg-a", None, "versions/v1")["promote"]
    champion = {"config_id": "cfg-a", "version": "versions/v1"}
    kept = decide("cfg-a", champion, "versions/v2")
    assert not kept["promote"] and kept["version"] == "versions/v1"
    promoted = decide("cfg-b", champion, "versions/v2")
    assert promoted["promote"] and promoted["version"] == "versions/v2"
    assert pointer(promoted)["version"] == "versions/v2"
    assert new_version_name() != new_version_name()


def test_retrain_ir_scores_the_champion_and_promotes_after_the_export(tmp_path):
    path = tmp_path / "retrain.yaml"
    compiler.Compiler().compile(retrain, str(path))
    ir = yaml.safe_load(path.read_text())
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["plan-trials"]["inputs"]["parameters"]["champion"]["taskOutputParameter"][
        "producerTask"] == "champion"
    assert "export" in tasks["promote"]["dependentTasks"]
    assert tasks["promote"]["inputs"]["parameters"]["manifest"]["taskOutputParameter"][
        "producerTask"] == "export"
    for step in ("champion", "promote", "export", "preprocess"):  # read or write outside
        assert not tasks[step].get("cachingOptions", {}).get("enableCache", False), step
    assert tasks["export"]["inputs"]["parameters"]["new_version"]["runtimeValue"][
        "constant"] is True


def nonlinear_table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x1, x2 = rng.uniform(-2, 2, 240), rng.uniform(-2, 2, 240)
    y = 3 * x1**2 + 4 * np.sin(2 * x2) + rng.normal(scale=0.2, size=240)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y})


@pytest.mark.local
def test_better_challenger_promoted_worse_one_kept_out(bucket, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "table.csv"
    nonlinear_table().to_csv(local, index=False)
    data = f"gs://{bucket.name}/data/table.csv"
    storage.upload(local, data)
    promote_to = f"gs://{bucket.name}/models/prod"

    def run(grid: str, name: str) -> dict:
        path = tmp_path / f"{name}.yaml"
        path.write_text(grid)
        capsys.readouterr()
        assert main(["run", "retrain", "--data", data, "--target", "y", "--grid", str(path),
                     "--folds", "2", "--batch-size", "16", "--promote-to", promote_to,
                     "--workspace", str(tmp_path / name)]) == 0
        said = capsys.readouterr().out
        assert said.startswith(("promoted", "kept"))
        (executed,) = (tmp_path / name / "pipeline").glob("*/promote/executor_output.json")
        outputs = json.loads(executed.read_text())["parameterValues"]
        assert outputs["promoted"] is said.startswith("promoted")  # deploy only when true
        assert json.loads(outputs["decision"])["promote"] is outputs["promoted"]
        current = json.loads(storage.read_bytes(f"{promote_to}/current.json"))
        cv = next((tmp_path / name / "pipeline").glob("*/aggregate/cv_results"))
        return current, pd.read_csv(cv)

    first, _ = run("hidden_units: [[4]]\nlearning_rate: [0.01]\nepochs: [15]\n", "first")
    assert first["reason"] == "nothing was promoted yet"

    # A worse grid: the promoted configuration, cross-validated again on the same folds, wins.
    second, cv = run("hidden_units: [[2]]\nlearning_rate: [0.000001]\nepochs: [1]\n", "second")
    assert second == first  # current.json untouched: the champion stays served
    assert cv["config_id"][0] == first["config_id"]  # scored first, beside the challenger
    assert cv["mean_test_r2"][0] > cv["mean_test_r2"][1]
    versions = {b.name.split("/")[3] for b in bucket.list_blobs(prefix="models/prod/versions/")}
    assert len(versions) == 2  # the challenger was exported, complete, but not promoted

    # A better grid: promoted; the old version stays in place.
    third, cv = run("hidden_units: [[32, 16]]\nlearning_rate: [0.01]\nepochs: [60]\n",
                    "third")
    assert third["version"] != first["version"] and third["config_id"] != first["config_id"]
    assert cv.set_index("config_id").loc[third["config_id"], "mean_test_r2"] > \
        cv.set_index("config_id").loc[first["config_id"], "mean_test_r2"]
    assert storage.exists(f"{promote_to}/{first['version']}/manifest.json")
    # Every version's KServe service has one name: applying a version's manifest moves it.
    for version in (first["version"], third["version"]):
        service = storage.read_bytes(f"{promote_to}/{version}/inferenceservice.yaml").decode()
        assert "name: foldwise-prod\n" in service
        assert f"storageUri: {promote_to}/{version}/model/tfserving\n" in service

    # Predicting from the promotion folder serves the current version.
    predictions = f"gs://{bucket.name}/predictions.csv"
    assert main(["predict", "--model", promote_to, "--data", data, "--output", predictions]) == 0
    served = pd.read_csv(io.BytesIO(storage.read_bytes(predictions)))
    (refit,) = (tmp_path / "third" / "pipeline").glob("*/refit/predictions")
    np.testing.assert_allclose(served["prediction"], pd.read_parquet(refit)["prediction"],
                               rtol=1e-4, atol=1e-3)
