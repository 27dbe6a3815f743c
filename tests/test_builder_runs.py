"""Users' own Keras models (examples/models.py) end to end on kfp.local, from the CLI and Python.

Each run's exported model must predict raw rows exactly as the pipeline's own refit step did,
and what only building a model shows must be refused before any step runs.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kfp import compiler

import foldwise
from foldwise.pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models.py"
FAST = ["--folds", "3", "--epochs", "3", "--batch-size", "16", "--seed", "1"]


def examples_module():
    """examples/models.py imported as a user's own module (not installed)."""
    spec = importlib.util.spec_from_file_location("my_models", MODELS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["my_models"] = module
    spec.loader.exec_module(module)
    return module


def refit_predictions(output: Path) -> pd.DataFrame:
    (path,) = (output / "pipeline").glob("*/refit/predictions")
    return pd.read_parquet(path)


def assert_serves_like_the_pipeline(output: Path, table: pd.DataFrame, predict) -> None:
    own = refit_predictions(output)
    served = predict(table.iloc[own["row"].to_numpy()])
    columns = [c for c in own.columns if c.startswith(("proba_", "prediction"))]
    np.testing.assert_allclose(np.asarray(served, dtype=float).reshape(len(own), -1),
                               own[columns].to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def penguins_table(tmp_path_factory, penguins):
    tmp = tmp_path_factory.mktemp("builders")
    sample = penguins.sample(96, random_state=5).reset_index(drop=True)
    data = tmp / "penguins.csv"
    sample.to_csv(data, index=False)
    return sample, data, tmp


@pytest.mark.local
def test_grid_search_of_a_scikeras_style_builder_from_the_command_line(penguins_table):
    sample, data, tmp = penguins_table
    grid = tmp / "grid.yaml"
    grid.write_text("units: [8, 16]\ndropout: [0.1]\n")
    output = tmp / "grid"
    assert main(["run", "grid-search", "--data", str(data), "--target", "species",
                 "--model", f"{MODELS}:create_model", "--grid", str(grid),
                 "--learning-rate", "0.01", *FAST, "--output", str(output)]) == 0
    cv = pd.read_csv(output / "cv_results.csv")
    assert sorted(cv["param_units"]) == [8, 16] and (cv["param_estimator"] ==
                                                      "keras_builder").all()
    assert cv["mean_test_accuracy"].notna().all() and cv["fit_error"].isna().all()
    best = json.loads((output / "best_params.json").read_text())
    assert set(best) == {"units", "dropout"} and isinstance(best["units"], int)
    config = json.loads((output / "model" / "config.json").read_text())
    assert config["params"]["builder"]["source"] == MODELS.read_text()  # the export carries it
    assert config["params"]["learning_rate"] == 0.01
    rows = output / "rows.csv"
    sample.to_csv(rows, index=False)
    assert main(["predict", "--model", str(output), "--data", str(rows), "--output",
                 str(tmp / "pred.csv")]) == 0
    predicted = pd.read_csv(tmp / "pred.csv")
    assert_serves_like_the_pipeline(
        output, sample, lambda part: predicted.set_index("row").loc[part.index].filter(
            like="proba_").to_numpy())


@pytest.mark.local
def test_cross_validation_of_an_embedding_model_from_the_command_line(penguins_table):
    _, data, tmp = penguins_table
    output = tmp / "cv"
    assert main(["run", "cross-validation", "--data", str(data), "--target", "species",
                 "--model", f"{MODELS}:embedding_model", *FAST, "--output",
                 str(output)]) == 0
    cv = pd.read_csv(output / "cv_results.csv")
    assert len(cv) == 1 and 0.3 < cv.loc[0, "mean_test_accuracy"] <= 1.0
    assert json.loads(cv.loc[0, "params"])["builder"]["function"] == "embedding_model"


@pytest.mark.local
def test_a_builder_with_a_custom_layer_from_python_serves_raw_rows(tmp_path):
    from sklearn.datasets import load_diabetes

    models = examples_module()
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X, y = X.head(90), y.head(90)
    search = foldwise.GridSearchCV({"width": [8, 12]}, model=models.residual_model, cv=3,
                                   epochs=3, batch_size=16, verbose=False,
                                   output=str(tmp_path / "run"))
    search.fit(X, y)
    assert set(search.best_params_) == {"width"}
    assert_serves_like_the_pipeline(Path(search.output_), X, search.predict)
    # A fresh process loads it in safe mode: the export brings the builder's custom layer.
    X.head(5).to_csv(tmp_path / "rows.csv", index=False)
    script = ("import foldwise, pandas as pd; m = foldwise.load_model(r'%s'); "
              "print(list(m.predict(pd.read_csv(r'%s'))))" % (search.output_,
                                                              tmp_path / "rows.csv"))
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             cwd=tmp_path, check=True).stdout
    np.testing.assert_allclose(eval(printed.strip().splitlines()[-1].replace("np.float64", "")),
                               search.predict(X.head(5)), rtol=1e-6)


@pytest.mark.local
def test_cross_validate_a_builder_that_compiles_itself(penguins):
    models = examples_module()
    sample = penguins.dropna().sample(90, random_state=3).reset_index(drop=True)
    scores = foldwise.cross_validate(sample.drop(columns="species"), sample["species"],
                                     model=models.penguin_classifier, learning_rate=0.01,
                                     cv=3, epochs=3, verbose=False)
    assert len(scores["test_accuracy"]) == 3 and np.isfinite(scores["test_accuracy"]).all()
    params = scores.summary["best_params"]
    assert params["learning_rate"] == 0.01 and "optimizer" not in params  # its own compile


def bad_builders(tmp_path: Path) -> Path:
    path = tmp_path / "bad_models.py"
    path.write_text(
        "import keras\n\n"
        "def not_a_model(meta):\n    return 'a string'\n\n"
        "def one_unit(meta):\n"
        "    return keras.Sequential([keras.Input((meta['n_features_in_'],)),"
        " keras.layers.Dense(1, activation='sigmoid')])\n\n"
        "def raises(meta):\n    raise ValueError('no GPU here')\n\n"
        "def needs_depth(meta, depth):\n"
        "    return keras.Sequential([keras.Input((meta['n_features_in_'],)),"
        " keras.layers.Dense(3, activation='softmax')])\n")
    return path


@pytest.mark.parametrize("model, extra, message", [
    ("{file}:absent", [], r"absent.*not in|no function"),
    ("{dir}/missing.py:create_model", [], r"missing.py does not exist"),
    ("{file}:not_a_model", [], r"returned .*str.*not a Keras model"),
    ("{file}:one_unit", [], r"1 unit.*3 classes|3 classes.*1 unit"),
    ("{file}:raises", [], r"raised ValueError: no GPU here"),
    ("{file}:needs_depth", [], r"depth"),
])
def test_a_bad_builder_is_refused_before_any_step(model, extra, message, penguins_table,
                                                  tmp_path, capsys):
    _, data, _ = penguins_table
    path = bad_builders(tmp_path)
    output = tmp_path / "out"
    code = main(["run", "cross-validation", "--data", str(data), "--target", "species",
                 "--model", model.format(file=path, dir=tmp_path), *extra,
                 "--output", str(output)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert __import__("re").search(message, err[0]), err[0]
    assert not output.exists()


def test_a_grid_key_neither_the_builder_nor_training_takes_is_refused(penguins_table,
                                                                     tmp_path, capsys):
    _, data, _ = penguins_table
    grid = tmp_path / "grid.yaml"
    grid.write_text("unit: [8, 16]\n")
    assert main(["run", "grid-search", "--data", str(data), "--target", "species", "--model",
                 f"{MODELS}:create_model", "--grid", str(grid), "--output",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unit" in err and "units" in err and len(err.strip().splitlines()) == 1


def test_compiled_yaml_carries_the_builder_to_train_and_refit(tmp_path):
    from foldwise.pipelines.dags.grid_search import grid_search

    compiler.Compiler().compile(grid_search, str(tmp_path / "p.yaml"))
    ir = yaml.safe_load((tmp_path / "p.yaml").read_text())
    trials = next(c for name, c in ir["components"].items() if name.startswith("comp-for-loop")
                  and "train" in c.get("dag", {}).get("tasks", {}))
    train = trials["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train["model_spec"]["componentInputParameter"].endswith("model_spec")
    refit = ir["root"]["dag"]["tasks"]["refit"]["inputs"]["parameters"]
    assert refit["model_spec"] == {"componentInputParameter": "model_spec"}


TF_BUILDERS = ROOT / "tests" / "helpers" / "tf_builders.py"


def diabetes_csv(folder: Path) -> Path:
    from sklearn.datasets import load_diabetes

    path = folder / "diabetes.csv"
    load_diabetes(as_frame=True).frame.iloc[:150].to_csv(path, index=False)
    return path


def searched_with(tmp_path: Path, builder: str, grid_text: str) -> tuple[Path, list[dict]]:
    """A grid search of ``tests/helpers/tf_builders.py:builder``: its folder, train entries."""
    from helpers.results import train_task_results

    grid = tmp_path / "grid.yaml"
    grid.write_text(grid_text)
    output = tmp_path / "run"
    assert main(["run", "grid-search", "--data", str(diabetes_csv(tmp_path)), "--target",
                 "target", "--model", f"{TF_BUILDERS}:{builder}", "--grid", str(grid),
                 *FAST, "--output", str(output)]) == 0
    folders = sorted((output / "pipeline").glob("*/for-loop-*-iteration-*/train"))
    return output, [entry for folder in folders for entry in train_task_results(folder)]


@pytest.mark.local
def test_a_tensorflow_keras_builder_trains_packed_under_jax(tmp_path):
    """`from tensorflow import keras` is Keras: packed in the one engine, no TensorFlow."""
    output, entries = searched_with(tmp_path, "tf_keras_model",
                                    "units: [4, 8]\nlearning_rate: [0.01, 0.03]\n")
    assert len(entries) == 4 * 3
    assert {e["devices"]["strategy"] for e in entries} == {"jax.vmap"}
    assert {e["devices"]["tensorflow_loaded"] for e in entries} == {False}
    assert max(e["devices"]["packed"] for e in entries) == 6  # 2 widths × 3 folds: one program
    assert json.loads((output / "summary.json").read_text())["tensorflow_operations"] == {}


@pytest.mark.local
def test_a_builder_running_tensorflow_operations_trains_through_tensorflow_named(tmp_path):
    output, entries = searched_with(tmp_path, "pinball_model", "units: [4, 8]\n")
    assert {e["devices"]["tensorflow_operation"] for e in entries} == {"tf.reduce_mean"}
    assert {e["devices"]["tensorflow_loaded"] for e in entries} == {True}
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary["tensorflow_operations"].values()) == {"tf.reduce_mean"}
    assert "tf.reduce_mean" in (output / "report.html").read_text()
    assert (output / "model" / "model.keras").exists()  # refitted through TensorFlow, exported
