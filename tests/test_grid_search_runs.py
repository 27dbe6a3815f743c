"""Real grid searches on KFP's embedded engine, checked config by config and fold by fold.

One writes to a local folder; one reads its table from and exports to a bucket on a real
GCS-compatible server on loopback, and predicts from the exported model there.
"""

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tfserving
from helpers.inprocess import in_process_scores
from helpers.results import train_task_results
from helpers.tables import regression_table

from foldwise.components import storage
from foldwise.components.core import options
from foldwise.pipelines.cli import main
from foldwise.pipelines.models import load_model

pytestmark = pytest.mark.local
FOLDS = 3
GRID = "hidden_units: [[4], [16, 8]]\nlearning_rate: [0.0005, 0.05]\n"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    data, grid = tmp / "table.parquet", tmp / "grid.yaml"
    regression_table().to_parquet(data, index=False)
    grid.write_text(GRID)
    output = tmp / "run"
    code = main(["run", "grid-search", "--data", str(data), "--target", "y", "--grid",
                 str(grid), "--folds", str(FOLDS), "--epochs", "6", "--batch-size", "16",
                 "--seed", "2", "--scoring", "neg_mean_absolute_error", "--baseline", "mlp",
                 "--output", str(output)])
    assert code == 0
    return data, output


def iteration_dirs(output: Path, step: str) -> list[Path]:
    return sorted((output / "pipeline").glob(f"*/for-loop-*-iteration-*/{step}"))


def test_every_config_and_fold_scored_as_in_process(local_run):
    data, output = local_run
    cv = pd.read_csv(output / "cv_results.csv")
    assert len(cv) == 8  # 4 Keras configurations and their 4 scikit-learn MLP twins
    assert cv["param_estimator"].tolist() == ["keras"] * 4 + ["sklearn_mlp"] * 4
    table = pd.read_parquet(data)
    for _, row in cv.iterrows():
        params = json.loads(row["params"])
        assert params["epochs"] == 6 and params["batch_size"] == 16  # fixed on the CLI
        assert params["estimator"] in ("keras", "sklearn_mlp")
        expected = in_process_scores(table, "y", params, 2, FOLDS)
        for fold, scores in enumerate(expected):
            for metric, value in scores.items():
                # Packed (this run) and alone (in process): the same models to float rounding.
                assert row[f"split{fold}_test_{metric}"] == pytest.approx(
                    value, rel=1e-5, abs=1e-6), (
                    row["config_id"], fold, metric)
    means = cv["mean_test_neg_mean_absolute_error"].round(6)
    assert means.nunique() == 8  # configs differ enough that a mix-up could not pass
    keras_rows = cv[cv["param_estimator"] == "keras"]
    best = keras_rows.sort_values("rank_test_neg_mean_absolute_error").iloc[0]["config_id"]
    assert best == json.loads((output / "model" / "config.json").read_text())["config_id"]
    row = cv.set_index("config_id").loc[best]
    searched = json.loads((output / "best_params.json").read_text())  # the grid's keys only
    assert searched == {"hidden_units": json.loads(row["param_hidden_units"]),
                        "learning_rate": row["param_learning_rate"]}
    summary = json.loads((output / "summary.json").read_text())
    assert summary["best_baseline"]["params"]["estimator"] == "sklearn_mlp"


def test_transforms_run_once_per_fold_not_once_per_trial(local_run):
    _, output = local_run
    # two transform steps, each fitting every fold once on its own training rows
    (scaled,) = (output / "pipeline").glob("*/scale-folds/scaled")
    assert sorted(p.name for p in scaled.iterdir()) == [f"fold-{k}.parquet"
                                                        for k in range(FOLDS)]
    for step, state in (("scale-folds", "scaler_state"), ("one-hot-encode-folds",
                                                          "encoder_state")):
        (path,) = (output / "pipeline").glob(f"*/{step}/{state}")
        assert [s["fold"] for s in json.loads(path.read_text())["folds"]] == list(range(FOLDS))
    trains = iteration_dirs(output, "train")  # packed (the local default): one per config
    assert len(trains) == 8
    configs = set()
    for folder in trains:
        results = train_task_results(folder)
        assert [r["fold"] for r in results] == list(range(FOLDS))
        configs |= {r["config_id"] for r in results}
    assert len(configs) == 8
    (collected,) = (output / "pipeline").glob("*/one-hot-encode-folds/fold_data")
    assert sorted(p.name for p in collected.iterdir()) == [f"fold-{k}.parquet"
                                                           for k in range(FOLDS)]


def test_predict_equals_the_pipelines_path_on_the_same_rows(local_run, tmp_path):
    data, output = local_run
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(output / "model"), "--data", str(data),
                 "--output", str(preds)]) == 0
    served = pd.read_csv(preds)
    (refit,) = (output / "pipeline").glob("*/refit/predictions")
    pipeline = pd.read_parquet(refit)
    assert served["row"].tolist() == list(range(72)) == pipeline["row"].tolist()
    np.testing.assert_allclose(served["prediction"], pipeline["prediction"], rtol=1e-4,
                               atol=1e-3)
    # The output's name says its format; an existing output is replaced only when asked.
    as_parquet = tmp_path / "preds.parquet"
    assert main(["predict", "--model", str(output), "--data", str(data), "--output",
                 str(as_parquet)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(as_parquet), served, check_dtype=False)
    preds.write_text("kept")
    assert main(["predict", "--model", str(output), "--data", str(data), "--output",
                 str(preds)]) == 2
    assert preds.read_text() == "kept"
    assert main(["predict", "--model", str(output), "--data", str(data), "--output",
                 str(preds), "--overwrite"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(preds), served)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv", "preds.parquet"]


def test_a_damaged_export_is_named_in_one_line(local_run, tmp_path, capsys):
    import shutil

    data, output = local_run
    for name, damage, reason in [
            ("schema.json", lambda text: text[: len(text) // 2], r"damaged \((Unterminated|"
                                                                   r"Expecting)"),
            ("schema.json", lambda text: b"[1, 2]", r"damaged \(it lacks task, target\)"),
            ("preprocessing.json", lambda text: text.replace(b'"inputs"', b'"inputz"'),
             r"damaged \(it lacks inputs\)"),
            ("config.json", lambda text: b"\xff\xfe" + text, r"damaged \('utf-8' codec"),
            ("model.keras", lambda data: data[: len(data) // 2], r"damaged \("),
            ("model.keras", lambda data: b"", r"damaged \(")]:
        model = tmp_path / "model"
        shutil.rmtree(model, ignore_errors=True)
        shutil.copytree(output / "model", model)
        target = model / name
        target.write_bytes(damage(target.read_bytes()))
        assert main(["predict", "--model", str(model), "--data", str(data), "--output",
                     str(tmp_path / "p.csv")]) == 2, name
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert re.match(rf"error: {re.escape(str(target))} is {reason}", line), line
        assert line.endswith("export the model again, or restore the file (manifest.json "
                             "beside the model holds every file's SHA-256)")
    assert not (tmp_path / "p.csv").exists()


def test_export_is_complete_and_the_manifest_checks_out(local_run):
    data, output = local_run
    manifest = json.loads((output / "manifest.json").read_text())
    for name in ("model/model.keras", "model/savedmodel/saved_model.pb",
                 "model/preprocessing.json", "cv_results.csv", "best_params.json",
                 "summary.json", "folds.csv", "report.html"):
        content = (output / name).read_bytes()
        assert manifest["files"][name]["sha256"] == hashlib.sha256(content).hexdigest(), name
    assert manifest["data"]["sha256"] == hashlib.sha256(Path(data).read_bytes()).hexdigest()
    assert manifest["versions"]["keras"] and manifest["best_config_id"].startswith("cfg-")
    report = (output / "report.html").read_text()
    # scores, curves, predicted vs actual, residuals; the column importance, and the
    # residuals against each of the (at most five) most important raw columns
    columns = json.loads((output / "summary.json").read_text())["permutation_importance"][
        "columns"]
    assert "<script" not in report and report.count("<svg") == 4 + 1 + min(5, len(columns))


def test_serving_model_output_is_the_savedmodel_with_its_serving_image(local_run):
    """What Google's ModelUploadOp reads: the artifact's folder and containerSpec."""
    _, output = local_run
    (executed,) = (output / "pipeline").glob("*/refit/executor_output.json")
    (artifact,) = json.loads(executed.read_text())["artifacts"]["serving_model"]["artifacts"]
    assert artifact["metadata"] == {"containerSpec": {"imageUri": options.SERVING_IMAGE}}
    folder = Path(artifact["uri"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "assets", "fingerprint.pb", "saved_model.pb", "variables"]
    assert (folder / "saved_model.pb").read_bytes() == (
        output / "model/savedmodel/saved_model.pb").read_bytes()


def test_googles_model_upload_reads_it_as_a_vertex_model(local_run):
    """Google's own upload code turns the step's artifact into the Model of its request."""
    from google.cloud.aiplatform_v1.types import Model
    from google_cloud_pipeline_components.container.v1.gcp_launcher.utils import json_util
    from google_cloud_pipeline_components.container.v1.model.upload_model import remote_runner

    _, output = local_run
    (executed,) = (output / "pipeline").glob("*/refit/executor_output.json")
    artifacts = json.loads(executed.read_text())["artifacts"]["serving_model"]["artifacts"]
    executor_input = {"inputs": {"artifacts": {
        "unmanaged_container_model": {"artifacts": artifacts}}}}
    spec = remote_runner.append_unmanaged_model_artifact_into_payload(
        json.dumps(executor_input), {"display_name": "penguins"})
    model = Model.from_json(json.dumps(json_util.recursive_remove_empty(spec)))
    assert model.container_spec.image_uri == options.SERVING_IMAGE
    assert model.artifact_uri == artifacts[0]["uri"]
    assert (Path(model.artifact_uri) / "saved_model.pb").is_file()


def test_export_holds_a_kserve_service_of_its_tfserving_folder(local_run):
    from importlib.metadata import version

    import yaml

    _, output = local_run
    service = yaml.safe_load((output / "inferenceservice.yaml").read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService" and service["metadata"]["name"] == "foldwise-run"
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "tensorflow"}
    assert model["runtimeVersion"] == version("tensorflow")
    assert model["storageUri"] == str(output / "model" / "tfserving")
    assert model["resources"]["limits"]["memory"]
    # TensorFlow Serving's layout: numbered versions under the storage URI.
    assert [p.name for p in (output / "model" / "tfserving").iterdir()] == ["1"]
    manifest = json.loads((output / "manifest.json").read_text())
    for name in ("inferenceservice.yaml", "model/tfserving/1/saved_model.pb",
                 "model/tfserving/1/variables/variables.index"):
        assert name in manifest["files"], name


def test_the_served_request_format_answers_as_foldwise_predict(local_run, tmp_path):
    """The JSON body TensorFlow Serving, Vertex AI and KServe take, built from raw rows (two
    with a missing number), answered by the exported SavedModel as TensorFlow Serving
    answers it: the same predictions as ``foldwise predict``."""
    data, output = local_run
    table = pd.read_parquet(data)
    assert table["x"].isna().sum() == 2
    body = load_model(output).request_body(table.drop(columns="y"))
    text = json.dumps(body)
    assert "NaN" in text  # missing numbers travel as NaN, which TensorFlow Serving reads
    first = json.loads(text)["instances"][0]
    assert set(first) == {"x", "colour", "noise"} and isinstance(first["colour"], str)
    answer = tfserving.predict(output / "model" / "tfserving" / "1", text)
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(output), "--data", str(data),
                 "--output", str(preds)]) == 0
    np.testing.assert_allclose(np.asarray(answer["predictions"])[:, 0],
                               pd.read_csv(preds)["prediction"], rtol=1e-5, atol=1e-4)


def test_grid_errors_stop_before_anything_runs(tmp_path, capsys):
    data, grid = tmp_path / "table.csv", tmp_path / "grid.yaml"
    regression_table().to_csv(data, index=False)
    grid.write_text("learning_rat: [0.1]\n")
    code = main(["run", "grid-search", "--data", str(data), "--target", "y", "--grid",
                 str(grid), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'learning_rate'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bucket_in_bucket_out_and_predict_from_the_bucket(bucket, tmp_path, penguins,
                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sample = tmp_path / "penguins.csv"
    penguins.sample(90, random_state=3).to_csv(sample, index=False)
    grid = tmp_path / "grid.yaml"
    grid.write_text("learning_rate: [0.0003, 0.03]\n")
    data_uri = f"gs://{bucket.name}/data/penguins.csv"
    storage.upload(sample, data_uri)
    destination = f"gs://{bucket.name}/experiments/penguins"
    code = main(["run", "grid-search", "--data", data_uri, "--target", "species", "--grid",
                 str(grid), "--folds", "2", "--epochs", "3", "--hidden-units", "8",
                 "--output", destination])
    assert code == 0
    err = capsys.readouterr().err
    assert "2 configurations × 2 folds = 4 trials" in err
    # 8 steps (the transforms each over both folds) + 2 train tasks (the configs cut in two)
    assert re.search(r"^\[10/10\] export ", err, re.MULTILINE)
    manifest = json.loads(storage.read_bytes(f"{destination}/manifest.json"))
    assert manifest["data"]["uri"] == data_uri and "model/model.keras" in manifest["files"]
    assert storage.exists(f"{destination}/report.html")
    service = storage.read_bytes(f"{destination}/inferenceservice.yaml").decode()
    assert f"storageUri: {destination}/model/tfserving\n" in service
    assert "name: foldwise-penguins\n" in service
    assert storage.exists(f"{destination}/model/tfserving/1/saved_model.pb")

    predictions_uri = f"gs://{bucket.name}/predictions/penguins.csv"
    assert main(["predict", "--model", f"{destination}/model", "--data", data_uri,
                 "--output", predictions_uri]) == 0
    served = pd.read_csv(io.BytesIO(storage.read_bytes(predictions_uri)))
    assert list(served.columns) == ["row", "predicted_class", "proba_Adelie",
                                    "proba_Chinstrap", "proba_Gentoo"]
    (refit,) = tmp_path.glob("foldwise-runs/*/pipeline/*/refit/predictions")
    pipeline = pd.read_parquet(refit)
    np.testing.assert_allclose(served.iloc[:, 2:].to_numpy(), pipeline.iloc[:, 2:].to_numpy(),
                               atol=1e-5)
    assert main(["run", "grid-search", "--data", data_uri, "--target", "species", "--grid",
                 str(grid), "--output", destination]) == 2
    assert "already holds finished results (manifest.json)" in capsys.readouterr().err


def test_train_tasks_train_in_the_one_engine_and_never_import_tensorflow(local_run):
    """Every Keras model packed under JAX; no train task imported TensorFlow (sys.modules)."""
    _, output = local_run
    entries = [r for folder in iteration_dirs(output, "train")
               for r in train_task_results(folder)]
    ours = [r for r in entries if r["params"].get("estimator", "keras") == "keras"]
    assert len(ours) == 4 * FOLDS
    assert {r["devices"]["strategy"] for r in ours} == {"jax.vmap"}
    assert {r["devices"]["backend"] for r in ours} == {"jax"}
    assert max(r["devices"]["packed"] for r in ours) > 1
    assert {r["devices"]["tensorflow_loaded"] for r in entries} == {False}
