"""Each component's Python function, called with real artifacts in a temporary folder."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from kfp import dsl

from foldwise.components import (
    aggregate,
    collect_folds,
    one_hot_encode,
    one_hot_encode_folds,
    plan_trials,
    preprocess,
    scale,
    scale_folds,
    train,
)
from foldwise.components.core.columns import FOLD_COLUMN
from foldwise.components.core.data.fold_data import fold_file, read_fold_table
from foldwise.components.core.data.scaling import fit_scaler

FOLDS = 3


def make(kind, folder, name):
    return kind(uri=str(folder / name))


def run_train(tmp, fold_data, schema, trial, name):
    """Train one task (``{"configs", "folds"}``) as the pipeline does: through a plan file."""
    plan = make(dsl.Artifact, tmp, f"{name}-plan")
    Path(plan.path).write_text(json.dumps({"tasks": [{"configs": [], "folds": []}, trial]}))
    outputs = {key: make(kind, tmp, f"{name}-{key}") for key, kind in [
        ("model", dsl.Model), ("history", dsl.Artifact), ("predictions", dsl.Dataset),
        ("metrics", dsl.Metrics), ("classification_metrics", dsl.ClassificationMetrics),
        ("results", dsl.Artifact)]}
    uri = train.python_func(fold_data=fold_data, schema=schema, plan=plan, trial=1, seed=2,
                            **outputs)
    assert uri == outputs["results"].uri
    return json.loads(Path(outputs["results"].path).read_text()), outputs


def plan_tasks(tmp, name, **arguments):
    """The plan_trials step's plan (its return value: the tasks' numbers, checked)."""
    plan = make(dsl.Artifact, tmp, f"{name}-plan")
    numbers = plan_trials.python_func(plan=plan, **arguments)
    tasks = json.loads(Path(plan.path).read_text())["tasks"]
    assert numbers == list(range(len(tasks)))
    assert plan.metadata["tasks"] == len(tasks)
    return tasks


def result_files(tmp, name, results):
    """Train steps' results (lists of entries) as files; their URIs, as aggregate takes them."""
    uris = []
    for index, entries in enumerate(results):
        path = tmp / f"{name}-results-{index}.json"
        path.write_text(json.dumps(entries))
        uris.append(str(path))
    return uris


def aggregate_outputs(folder, prefix):
    """The aggregate step's output artifacts, as files named ``<prefix><output>``."""
    names = ["cv_results", "summary", "best_config", "best_params", "oof_predictions",
             "best_histories", "metrics", "classification_metrics"]
    kinds = [dsl.Dataset, dsl.Artifact, dsl.Artifact, dsl.Artifact, dsl.Dataset, dsl.Artifact,
             dsl.Metrics, dsl.ClassificationMetrics]
    return {n: make(k, folder, f"{prefix}{n}") for n, k in zip(names, kinds, strict=True)}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, penguins):
    """preprocess → scale → one_hot_encode per fold → collect → plan → train every trial."""
    tmp = tmp_path_factory.mktemp("components")
    sample = penguins.sample(90, random_state=0).reset_index(drop=True)
    data = tmp / "penguins.csv"
    sample.to_csv(data, index=False)
    out = {name: make(kind, tmp, name) for name, kind in [
        ("prepared", dsl.Dataset), ("schema", dsl.Artifact), ("fold_assignment", dsl.Dataset),
        ("fold_data", dsl.Dataset)]}
    fold_ids = preprocess.python_func(
        data=str(data), target="species", prepared=out["prepared"], schema=out["schema"],
        fold_assignment=out["fold_assignment"], folds=FOLDS, seed=5, drop=["year"])
    encoded = []
    for fold in reversed(fold_ids):  # any order: collect_folds reads the fold from the file
        scaled, state = make(dsl.Dataset, tmp, f"scaled{fold}"), make(dsl.Artifact, tmp,
                                                                       f"state{fold}")
        scale.python_func(prepared=out["prepared"], schema=out["schema"], fold=fold,
                          scaled=scaled, scaler_state=state, scaler="robust")
        out[f"scaler_state{fold}"] = state
        encoded.append(make(dsl.Dataset, tmp, f"encoded{fold}"))
        out[f"encoder_state{fold}"] = make(dsl.Artifact, tmp, f"encoder{fold}")
        one_hot_encode.python_func(scaled=scaled, schema=out["schema"], fold=fold,
                                   encoded=encoded[-1], encoder_state=out[f"encoder_state{fold}"])
    collect_folds.python_func(encoded=encoded, fold_data=out["fold_data"])
    trials = plan_tasks(tmp, "chain", schema=out["schema"], fold_ids=fold_ids,
                        model_spec={"hidden_units": [8.0], "epochs": 3.0})
    results = [run_train(tmp, out["fold_data"], out["schema"], trial, f"trial{i}")
               for i, trial in enumerate(trials)]
    return sample, out, fold_ids, trials, results


def test_preprocess_writes_table_schema_and_fold_csv(chain):
    sample, out, fold_ids, _, _ = chain
    assert fold_ids == [0, 1, 2]
    schema = json.loads(open(out["schema"].path).read())
    assert schema["task"] == "classification" and "year" in schema["dropped_columns"]
    folds = pd.read_csv(out["fold_assignment"].path)
    assert list(folds.columns) == ["row", "fold"]
    assert folds["row"].tolist() == list(range(len(sample)))
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    assert len(pd.read_parquet(out["prepared"].path)) == len(sample)


def test_scale_fits_on_the_folds_training_rows_only(chain):
    _, out, _, _, _ = chain
    schema = json.loads(open(out["schema"].path).read())
    prepared = pd.read_parquet(out["prepared"].path)
    for fold in range(FOLDS):
        state = json.loads(open(out[f"scaler_state{fold}"].path).read())
        expected = fit_scaler(prepared[prepared[FOLD_COLUMN] != fold], schema["numeric"],
                              "robust")
        assert state == {"fold": fold, **expected}


def test_collected_fold_tables_carry_their_fold_and_features(chain):
    _, out, _, _, _ = chain
    for fold in range(FOLDS):
        table, tagged, features = read_fold_table(fold_file(out["fold_data"].path, fold))
        state = json.loads(open(out[f"encoder_state{fold}"].path).read())
        assert tagged == fold and features == state["features"]
        assert set(state["columns"]) == {"island", "sex"}
        assert list(table.columns) == [*features, "species", "__row__", "__fold__"]


def test_the_all_folds_transforms_equal_the_per_fold_steps(chain, tmp_path):
    """What the pipelines run (two tasks) is what the per-fold steps and collect_folds give."""
    _, out, _, _, _ = chain
    scaled, scaler_state = make(dsl.Dataset, tmp_path, "scaled"), make(dsl.Artifact, tmp_path,
                                                                       "scaler")
    scale_folds.python_func(prepared=out["prepared"], schema=out["schema"], scaled=scaled,
                            scaler_state=scaler_state, scaler="robust")
    fold_data, encoder_state = make(dsl.Dataset, tmp_path, "fold_data"), make(
        dsl.Artifact, tmp_path, "encoder")
    one_hot_encode_folds.python_func(scaled=scaled, schema=out["schema"], fold_data=fold_data,
                                     encoder_state=encoder_state)
    assert fold_data.metadata["folds"] == list(range(FOLDS))
    scaler_states = json.loads(Path(scaler_state.path).read_text())["folds"]
    encoder_states = json.loads(Path(encoder_state.path).read_text())["folds"]
    for fold in range(FOLDS):
        assert scaler_states[fold] == json.loads(open(out[f"scaler_state{fold}"].path).read())
        assert encoder_states[fold] == json.loads(open(out[f"encoder_state{fold}"].path).read())
        ours, tagged, features = read_fold_table(fold_file(fold_data.path, fold))
        theirs, _, their_features = read_fold_table(fold_file(out["fold_data"].path, fold))
        assert tagged == fold and features == their_features
        pd.testing.assert_frame_equal(ours, theirs)


def test_plan_has_one_trial_per_fold_with_full_params(chain):
    _, _, _, trials, _ = chain
    assert [t["folds"] for t in trials] == [[0], [1], [2]]
    assert len({c["config_id"] for t in trials for c in t["configs"]}) == 1
    params = trials[0]["configs"][0]["params"]
    assert params["hidden_units"] == [8] and params["epochs"] == 3
    assert params["optimizer"] == "adam"


def test_train_writes_model_history_predictions_and_metrics(chain):
    _, out, _, _, results = chain
    folds = pd.read_csv(out["fold_assignment"].path)
    (result,), outputs = results[1]
    predictions = pd.read_parquet(outputs["predictions"].path)
    assert predictions["row"].tolist() == folds.loc[folds["fold"] == 1, "row"].tolist()
    assert list(predictions.columns) == ["config_id", "row", "fold", "y_true", "proba_Adelie",
                                         "proba_Chinstrap", "proba_Gentoo"]
    assert result["fold"] == 1 and result["n_validation"] == len(predictions)
    assert result["predictions"] == outputs["predictions"].uri
    config_id = result["config_id"]
    history = json.loads(open(outputs["history"].path).read())
    assert len(history[config_id]["1"]["loss"]) == 3
    model = keras.saving.load_model(f"{outputs['model'].path}/{config_id}/fold-1/model.keras",
                                    safe_mode=True)
    table, _, features = read_fold_table(fold_file(out["fold_data"].path, 1))
    x = table.loc[table["__fold__"] == 1, features].to_numpy("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               predictions.iloc[:, 4:].to_numpy(), atol=1e-5)
    assert outputs["metrics"].metadata[f"{config_id}_fold1_accuracy"] == pytest.approx(
        result["scores"]["accuracy"])
    assert result["devices"]["device"] == "cpu" and result["devices"]["precision"] == "float32"
    assert {**outputs["metrics"].metadata["trained_on"], "tensorflow_loaded": True} == \
        result["devices"]  # this test's process runs Keras on TensorFlow
    matrix = outputs["classification_metrics"].metadata["confusionMatrix"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == len(predictions)


def test_train_refuses_another_folds_table_or_another_configs_params(chain, tmp_path):
    _, out, _, trials, _ = chain
    wrong = tmp_path / "wrong"
    shutil.copytree(out["fold_data"].path, wrong)
    shutil.copyfile(fold_file(wrong, 1), fold_file(wrong, 2))
    with pytest.raises(RuntimeError, match="trial for fold 2 was handed the table of fold 1"):
        run_train(tmp_path, dsl.Dataset(uri=str(wrong)), out["schema"], trials[2], "x")
    (config,) = trials[0]["configs"]
    other = {**trials[0], "configs": [{**config, "params": {**config["params"],
                                                            "learning_rate": 0.5}}]}
    with pytest.raises(RuntimeError, match="was handed the parameters of cfg-"):
        run_train(tmp_path, out["fold_data"], out["schema"], other, "y")


def test_aggregate_writes_cv_results_summary_best_config_and_pooled_predictions(chain,
                                                                                tmp_path):
    _, out, _, trials, results = chain
    outputs = aggregate_outputs(tmp_path, "")
    aggregate.python_func(schema=out["schema"],
                          fold_results=result_files(tmp_path, "all", [r for r, _ in results]),
                          **outputs)
    table = pd.read_csv(outputs["cv_results"].path)
    for fold, ((result,), _) in enumerate(results):
        assert table.loc[0, f"split{fold}_test_accuracy"] == pytest.approx(
            result["scores"]["accuracy"])
    summary = json.loads(open(outputs["summary"].path).read())
    assert summary["scoring"] == "accuracy" and summary["classes"][0] == "Adelie"
    best_config = json.loads(open(outputs["best_config"].path).read())
    assert summary["best_config_id"] == trials[0]["configs"][0]["config_id"] == \
        best_config["config_id"]
    assert best_config["params"] == summary["best_params"]  # the complete spec
    # only the searched parameters: none here (one configuration, no grid)
    assert json.loads(open(outputs["best_params"].path).read()) == {}
    assert summary["best_split_times"]["fit_time"] == [r["fit_time"] for (r,), _ in results]
    assert set(summary["versions"]) >= {"foldwise", "kfp", "tensorflow", "scikit-learn"}
    pooled = pd.read_parquet(outputs["oof_predictions"].path)
    assert pooled["row"].tolist() == list(range(90))
    histories = json.loads(open(outputs["best_histories"].path).read())
    assert sorted(histories) == ["0", "1", "2"] and len(histories["0"]["loss"]) == 3
    assert outputs["metrics"].metadata["mean_test_accuracy"] == pytest.approx(
        table.loc[0, "mean_test_accuracy"])
    matrix = outputs["classification_metrics"].metadata["confusionMatrix"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == 90


def test_one_packed_task_trains_every_fold_as_the_per_fold_tasks_do(chain, tmp_path):
    """packing=folds: one task trains every fold; the same per-fold models and scores."""
    _, out, fold_ids, trials, results = chain
    (task,) = plan_tasks(tmp_path, "packed", schema=out["schema"], fold_ids=fold_ids,
                         packing="folds", model_spec={"hidden_units": [8.0], "epochs": 3.0})
    assert task["folds"] == [0, 1, 2] and task["configs"] == trials[0]["configs"]
    packed, outputs = run_train(tmp_path, out["fold_data"], out["schema"], task, "packed")
    assert [r["fold"] for r in packed] == [0, 1, 2]
    # This process runs Keras on TensorFlow: the models train through Keras' fit here (in a
    # step's own process they train packed, under JAX: tests/test_engine.py, the local runs).
    together = pd.read_parquet(outputs["predictions"].path)
    for fold, ((alone,), alone_outputs) in enumerate(results):
        assert packed[fold]["scores"] == pytest.approx(alone["scores"], abs=1e-6)
        mine = together[together["fold"] == fold].reset_index(drop=True)
        theirs = pd.read_parquet(alone_outputs["predictions"].path)
        pd.testing.assert_frame_equal(mine, theirs, atol=1e-5)
        config_id = task["configs"][0]["config_id"]
        assert (Path(outputs["model"].path) / config_id / f"fold-{fold}" / "model.keras").exists()
    assert not (Path(outputs["model"].path) / "checkpoint").exists()

    aggregated = aggregate_outputs(tmp_path, "agg-")
    aggregate.python_func(schema=out["schema"],
                          fold_results=result_files(tmp_path, "packed", [packed]), **aggregated)
    pooled = pd.read_parquet(aggregated["oof_predictions"].path)
    assert pooled["row"].tolist() == list(range(90))
    assert sorted(json.loads(open(aggregated["best_histories"].path).read())) == ["0", "1", "2"]


@pytest.fixture(scope="module")
def with_a_diverging_config(chain, tmp_path_factory):
    """One train task holding a healthy configuration and one that diverges (sgd at 1e12)."""
    _, out, fold_ids, _, _ = chain
    grid = [{"hidden_units": [[8]], "epochs": [3], "optimizer": ["sgd"],
             "learning_rate": [0.05, 1e12]}]
    tmp = tmp_path_factory.mktemp("diverging")
    tasks = plan_tasks(tmp, "diverging", schema=out["schema"], fold_ids=fold_ids,
                       param_grid=grid, packing="folds")
    task = {"configs": [t["configs"][0] for t in tasks], "folds": fold_ids}
    results, outputs = run_train(tmp, out["fold_data"], out["schema"], task, "train")
    return task, results, outputs, tmp, out["schema"]


def test_train_records_a_diverging_configuration_instead_of_failing(with_a_diverging_config):
    task, results, outputs, _, _ = with_a_diverging_config
    healthy, diverging = (c["config_id"] for c in task["configs"])
    assert [r["config_id"] for r in results] == [healthy] * 3 + [diverging] * 3
    for r in results[3:]:
        assert r["fit_error"].startswith("diverged: non-finite loss at epoch ")
        assert set(r["scores"].values()) == {None}  # NaN travels as JSON null
    assert all(r["fit_error"] == "" and r["scores"]["accuracy"] is not None
               for r in results[:3])
    logged = outputs["metrics"].metadata
    assert f"{healthy}_fold0_accuracy" in logged
    assert not any(name.startswith(diverging) for name in logged)
    matrix = outputs["classification_metrics"].metadata["confusionMatrix"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == 90
    model = Path(outputs["model"].path)
    assert (model / diverging / "fold-0" / "fit_error.txt").exists()
    assert not (model / "checkpoint").exists()


def test_aggregate_ranks_a_failed_configuration_last_and_never_picks_it(with_a_diverging_config):
    task, results, _, tmp, schema = with_a_diverging_config
    healthy, diverging = (c["config_id"] for c in task["configs"])
    outputs = aggregate_outputs(tmp, "agg-")
    aggregate.python_func(schema=schema, fold_results=result_files(tmp, "agg", [results]),
                          **outputs)
    table = pd.read_csv(outputs["cv_results"].path).set_index("config_id")
    assert table.loc[diverging, "fit_error"] == results[3]["fit_error"]
    assert pd.isna(table.loc[healthy, "fit_error"])  # "" in the CSV
    assert table.loc[diverging, ["split0_test_accuracy", "mean_test_accuracy"]].isna().all()
    assert table["rank_test_accuracy"].to_dict() == {healthy: 1, diverging: 2}
    text = open(outputs["summary"].path).read()
    assert "NaN" not in text  # strict JSON
    summary = json.loads(text)
    assert summary["best_config_id"] == healthy
    assert summary["failed_configs"] == [{"config_id": diverging,
                                          "fit_error": results[3]["fit_error"]}]
    assert json.loads(open(outputs["best_config"].path).read())["config_id"] == healthy
    assert set(outputs["metrics"].metadata) >= {"mean_test_accuracy"}


def test_aggregate_fails_with_the_first_error_when_every_configuration_failed(
        with_a_diverging_config):
    from foldwise.components.core.errors import FoldwiseError

    _, results, _, tmp, schema = with_a_diverging_config
    outputs = aggregate_outputs(tmp, "all-failed-")
    with pytest.raises(FoldwiseError, match=r"every configuration failed to train \(1 of 1\); "
                                            rf"the first, {results[3]['config_id']}: diverged: "):
        aggregate.python_func(schema=schema,
                              fold_results=result_files(tmp, "failed", [results[3:]]),
                              **outputs)

