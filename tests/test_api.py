"""The Python API: scikit-learn's shape, the command line's answers and errors, real runs."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_set_params,
)

import foldwise
from foldwise.pipelines.cli import main

GRID = {"hidden_units": [[4], [12, 6]], "learning_rate": [0.003, 0.03]}
FIXED = {"cv": 3, "epochs": 4, "batch_size": 16, "random_state": 3}
TIMES = ["mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"]


def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    bunch = load_diabetes(as_frame=True)
    X, y = bunch.data.head(120).copy(), bunch.target.head(120).rename("progression")
    X["band"] = np.where(X["bmi"] > 0, "high", "low")  # a text column to one-hot encode
    X.loc[[3, 40], "bp"] = np.nan  # gaps to impute
    y[[7, 70]] = np.nan  # rows without a target are left out, with a warning
    return X, y


def test_search_objects_are_scikit_learn_estimators_in_form():
    search = foldwise.GridSearchCV(GRID, cv=3, epochs=2)
    check_get_params_invariance("GridSearchCV", search)
    check_set_params("GridSearchCV", search)
    check_no_attributes_set_in_init("GridSearchCV", search)
    copy = clone(search)
    assert copy.get_params() == search.get_params() and copy.param_grid == search.param_grid
    assert copy.set_params(learning_rate=0.1).learning_rate == 0.1
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        foldwise.GridSearchCV(GRID, epoch=3)


@pytest.fixture(scope="module")
def regression_runs(tmp_path_factory):
    """The same search through Python and through the command line."""
    tmp = tmp_path_factory.mktemp("api-regression")
    X, y = diabetes()
    search = foldwise.GridSearchCV(GRID, scoring="neg_mean_absolute_error", verbose=False,
                                   output=str(tmp / "api"), **FIXED)
    with pytest.warns(UserWarning, match="2 of 120 rows have no target and were left out"):
        assert search.fit(X, y) is search
    data = tmp / "diabetes.csv"
    X.assign(progression=y).to_csv(data, index=False)
    grid = tmp / "grid.yaml"
    grid.write_text(json.dumps(GRID))
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        code = main(["run", "grid-search", "--data", str(data), "--target", "progression",
                     "--grid", str(grid), "--folds", "3", "--epochs", "4", "--batch-size",
                     "16", "--seed", "3", "--scoring", "neg_mean_absolute_error",
                     "--output", str(tmp / "cli")])
    assert code == 0
    (tmp / "cli-stdout.txt").write_text(stdout.getvalue())  # its last line: "[12.3 s]"
    return search, X, y, tmp, stderr.getvalue()


@pytest.mark.local
def test_cv_results_equal_the_command_lines_cv_results_csv(regression_runs):
    search, _, _, tmp, _ = regression_runs
    from_python = pd.DataFrame(search.cv_results_)
    from_cli = pd.read_csv(tmp / "cli" / "cv_results.csv")
    assert list(from_python.columns) == list(from_cli.columns)
    assert list(from_python["params"]) == [json.loads(p) for p in from_cli["params"]]
    assert from_python["param_hidden_units"].tolist() == [[4], [4], [12, 6], [12, 6]]
    scores = [c for c in from_cli.columns if c.startswith(("split", "mean_test", "std_test"))]
    np.testing.assert_allclose(from_python[scores].to_numpy(float),
                               from_cli[scores].to_numpy(float), rtol=1e-6, atol=1e-9)
    assert (from_python.filter(like="rank_").to_numpy() ==
            from_cli.filter(like="rank_").to_numpy()).all()
    # ... and equal the run's own file.
    own = pd.read_csv(Path(search.output_) / "cv_results.csv")
    pd.testing.assert_frame_equal(from_python.drop(columns=["params"]),
                                  own.drop(columns=["params"]).assign(
                                      param_hidden_units=from_python["param_hidden_units"]),
                                  check_dtype=False)


@pytest.mark.local
def test_best_attributes_follow_scikit_learn(regression_runs):
    search, X, _, _, _ = regression_runs
    results = search.cv_results_
    scoring = "neg_mean_absolute_error"
    assert search.scorer_ == scoring and search.n_splits_ == 3
    assert results[f"rank_test_{scoring}"][search.best_index_] == 1
    assert search.best_score_ == results[f"mean_test_{scoring}"][search.best_index_]
    assert search.best_score_ == max(results[f"mean_test_{scoring}"])
    best = results["params"][search.best_index_]
    assert set(search.best_params_) == {"hidden_units", "learning_rate"}  # the searched ones
    assert search.best_params_ == {k: best[k] for k in search.best_params_}
    assert search.refit_time_ > 0 and search.classes_ is None
    assert list(search.feature_names_in_) == list(X.columns) and search.n_features_in_ == 11
    assert search.summary_["best_params"] == best  # the complete spec stays in the summary
    assert Path(search.report_path_).is_file()
    assert json.loads((Path(search.output_) / "best_params.json").read_text()) == \
        search.best_params_


@pytest.mark.local
def test_best_estimator_predicts_what_foldwise_predict_writes(regression_runs):
    search, X, _, tmp, _ = regression_runs
    rows = X.sample(25, random_state=0)
    rows.to_parquet(tmp / "new.parquet", index=False)
    for model in (search.output_, str(Path(search.output_) / "model")):  # export or model/
        out = tmp / f"pred-{Path(model).name}.csv"
        assert main(["predict", "--model", model, "--data", str(tmp / "new.parquet"),
                     "--output", str(out)]) == 0
        np.testing.assert_allclose(search.best_estimator_.predict(rows),
                                   pd.read_csv(out)["prediction"], rtol=1e-6)
    np.testing.assert_allclose(search.predict(rows), search.best_estimator_.predict(rows))
    loaded = foldwise.load_model(search.output_)
    np.testing.assert_allclose(loaded.predict(rows), search.predict(rows))
    assert search.predict(rows.iloc[:0]).shape == (0,)  # no rows, no predictions
    huge = rows.iloc[:3].copy()
    huge["age"] = 1e300  # float32 cannot hold it: never silently read as missing
    with pytest.raises(foldwise.FoldwiseError, match=r"column 'age' has 3 values beyond the "
                                                     r"model's float32 range \(such as 1e\+300"):
        loaded.predict(huge)
    huge["age"] = huge["bmi"] = 1e37  # held, but the network's outputs overflow
    with pytest.raises(foldwise.FoldwiseError, match="give no finite prediction"):
        loaded.predict(huge)
    huge.to_parquet(tmp / "huge.parquet", index=False)
    assert main(["predict", "--model", search.output_, "--data", str(tmp / "huge.parquet"),
                 "--output", str(tmp / "huge.csv")]) == 2
    assert not (tmp / "huge.csv").exists()
    from sklearn.metrics import mean_absolute_error
    truth = regression_runs[2].loc[rows.index]
    keep = truth.notna().to_numpy()
    assert search.score(rows[keep], truth[keep]) == pytest.approx(
        -mean_absolute_error(truth[keep], search.predict(rows[keep])))


@pytest.mark.local
def test_progress_total_is_the_number_of_tasks_the_run_executes(regression_runs):
    *_, tmp, stderr = regression_runs
    counts = [line.split("]")[0].lstrip("[").strip() for line in stderr.splitlines()
              if line.startswith("[")]
    train_tasks = len(list((tmp / "cli" / "pipeline").glob("*/for-loop-*-iteration-*/train")))
    total = 8 + train_tasks  # 8 steps once (the transforms each over every fold), then train
    assert train_tasks >= 2
    assert counts == [f"{n}/{total}" for n in range(1, total + 1)]


@pytest.mark.local
def test_plan_lays_out_the_tasks_the_run_made_with_an_estimate_of_its_time(regression_runs):
    """``foldwise plan`` before the command line's run: its tasks, and a time for each packing.

    How close the estimate comes to a run's time is measured where times belong, run alone on
    the machine: benchmarks/plan_estimate.py (a test shares the machine with other tests).
    """
    *_, tmp, _ = regression_runs
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["plan", "grid-search", "--data", str(tmp / "diabetes.csv"), "--target",
                     "progression", "--grid", str(tmp / "grid.yaml"), "--folds", "3",
                     "--epochs", "4", "--batch-size", "16", "--seed", "3", "--nodes", "3"]) == 0
    rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines()[2:5]}
    assert sorted(rows) == ["configs*", "folds", "none"]
    train_tasks = len(list((tmp / "cli" / "pipeline").glob("*/for-loop-*-iteration-*/train")))
    assert int(rows["configs*"][1]) == train_tasks  # what run does here by default
    assert int(rows["none"][1]) == 4 * 3 and rows["none"][2] == "1"  # 4 configurations × 3
    assert int(rows["folds"][1]) == 4 and rows["folds"][2] == "3"
    seconds = {}
    for packing, row in rows.items():
        value, unit = row[3:5]
        seconds[packing] = float(value) * (60 if unit == "min" else 1)
    measured = float((tmp / "cli-stdout.txt").read_text().strip().splitlines()[-1].strip("[] s"))
    assert all(0 < s < 100 * measured for s in seconds.values()), (seconds, measured)
    # One task per (configuration, fold) starts 12 processes where packing by folds starts 4.
    assert seconds["none"] > seconds["folds"]


def test_plan_from_python_checks_the_search_and_trains_nothing(tmp_path):
    X, y = diabetes()
    search = foldwise.GridSearchCV(GRID, output=str(tmp_path / "never"), **FIXED)
    table = search.plan(X, y, nodes=4, node_speedup=2.0, pod_start=10)
    assert list(table["packing"]) == ["configs", "folds", "none"]
    assert list(table["tasks"]) == [4, 4, 12]  # two depths: two packs, each cut in two
    assert table.loc[2, "models_per_task"] == [1] * 12
    # more nodes: the cluster's run is no longer, the node-hours the same pods
    wider = search.plan(X, y, nodes=12, node_speedup=2.0, pod_start=10)
    assert (wider["cluster_seconds"] <= table["cluster_seconds"] + 1e-9).all()
    np.testing.assert_allclose(wider["node_hours"], table["node_hours"])
    assert not (tmp_path / "never").exists()
    with pytest.raises(foldwise.FoldwiseError, match="no measured training speed for "
                       "--accelerator 'nvidia-l4:1'.*--node-speedup"):
        search.plan(X, y, accelerator="nvidia-l4:1")
    with pytest.raises(foldwise.FoldwiseError, match="--nodes must be at least 1"):
        search.plan(X, y, nodes=0)
    with pytest.raises(foldwise.FoldwiseError, match="--node-speedup must be a positive"):
        search.plan(X, y, node_speedup=0)


@pytest.fixture(scope="module")
def penguin_search(tmp_path_factory, penguins):
    tmp = tmp_path_factory.mktemp("api-penguins")
    sample = penguins.sample(96, random_state=4).reset_index(drop=True)
    data = tmp / "penguins.parquet"
    sample.to_parquet(data, index=False)
    search = foldwise.GridSearchCV({"dropout": [0.0, 0.1]}, hidden_units=[8], verbose=False,
                                   output=str(tmp / "run"), **FIXED)
    search.fit(str(data), "species")  # a table file and the target's name
    return search, sample


@pytest.mark.local
def test_classifier_search_on_a_table_file(penguin_search):
    search, sample = penguin_search
    assert list(search.classes_) == sorted(sample["species"].dropna().unique())
    assert search.scorer_ == "accuracy" and search.best_params_.keys() == {"dropout"}
    own = pd.read_csv(Path(search.output_) / "cv_results.csv")
    np.testing.assert_allclose(search.cv_results_["mean_test_accuracy"],
                               own["mean_test_accuracy"])
    proba = search.predict_proba(sample.head(10))
    assert proba.shape == (10, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(search.predict(sample.head(10))) <= set(search.classes_)
    labels = search.classes_[proba.argmax(axis=1)]
    assert list(labels) == list(search.predict(sample.head(10)))


@pytest.mark.local
def test_arrays_in_labels_out_as_given(tmp_path):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X, y = X[:90, :6], y[:90] == 1  # a 2-d array and a bool target
    search = foldwise.GridSearchCV({"learning_rate": [0.01]}, cv=3, epochs=3, hidden_units=[8],
                                   verbose=False, output=str(tmp_path / "run"))
    search.fit(X, y)
    assert search.classes_.tolist() == [False, True]
    assert list(search.feature_names_in_) == [f"x{i}" for i in range(6)]
    predicted = search.predict(X[:20])  # the same kind of X as fit took
    assert predicted.dtype == bool and predicted.shape == (20,)
    assert search.predict_proba(X[:20]).shape == (20, 2)
    assert 0.0 <= search.score(X, y) <= 1.0
    with pytest.raises(foldwise.FoldwiseError, match="X has 5 columns; the model was fitted on 6"):
        search.predict(X[:3, :5])


@pytest.mark.local
def test_cross_validate_returns_scikit_learns_keys(tmp_path, penguins):
    from sklearn.model_selection import cross_validate
    from sklearn.neural_network import MLPClassifier

    sample = penguins.dropna().sample(90, random_state=2).reset_index(drop=True)
    X, y = sample[["bill_length_mm", "bill_depth_mm", "island"]], sample["species"]
    scores = foldwise.cross_validate(X, y, cv=3, epochs=3, hidden_units=[8], random_state=1,
                                     verbose=False, output=str(tmp_path / "cv"))
    metrics = [k.removeprefix("test_") for k in scores if k.startswith("test_")]
    reference = cross_validate(MLPClassifier(max_iter=5), X[["bill_length_mm"]], y, cv=3,
                               scoring=metrics)
    assert set(scores) == set(reference)
    assert all(len(v) == 3 for v in scores.values())
    assert (scores["fit_time"] > 0).all()
    table = pd.read_csv(Path(scores.output) / "cv_results.csv")
    np.testing.assert_allclose(scores["test_accuracy"],
                               [table.loc[0, f"split{k}_test_accuracy"] for k in range(3)])
    names = {p.name for p in Path(scores.output).iterdir()}
    assert {"cv_results.csv", "summary.json", "folds.csv", "report.html",
            "manifest.json"} <= names
    assert "model" not in names  # cross-validation exports results, not a model


@pytest.mark.parametrize("case, arguments, message", [
    ("constant target", {"y": pd.Series([4.25] * 20, name="y")}, r"constant \(4\.25\)"),
    ("one fold", {"cv": 1}, r"--folds must be at least 2, got 1"),
    ("unknown optimizer", {"optimizer": "adagradd"}, r"unknown optimizer 'adagradd'"),
    ("wrong scoring", {"scoring": "accuracy"},
     r"--scoring 'accuracy' is not reported for regression"),
    ("bad grid key", {"param_grid": {"learning_rat": [0.1]}},
     r"unknown grid parameter 'learning_rat'; did you mean 'learning_rate'"),
    ("y of another length", {"y": pd.Series(np.arange(5.0), name="y")},
     r"X has 20 rows but y has 5"),
])
def test_bad_input_raises_foldwise_error_with_the_command_lines_message(case, arguments,
                                                                       message, tmp_path,
                                                                       capsys):
    X = pd.DataFrame({"x": np.arange(20.0), "c": list("ab") * 10})
    y = arguments.pop("y", pd.Series(np.linspace(0, 1, 20), name="y"))
    grid = arguments.pop("param_grid", {"learning_rate": [0.01]})
    output = tmp_path / "out"
    search = foldwise.GridSearchCV(grid, verbose=False, output=str(output), **arguments)
    with pytest.raises(foldwise.FoldwiseError, match=message) as raised:
        search.fit(X, y)
    assert isinstance(raised.value, ValueError)
    assert not output.exists()
    if case in ("constant target", "one fold", "unknown optimizer", "wrong scoring"):
        data = tmp_path / "t.csv"
        X.assign(y=y).to_csv(data, index=False)
        flags = {"cv": "--folds", "optimizer": "--optimizer", "scoring": "--scoring"}
        extra = [part for key, value in arguments.items() for part in (flags[key], str(value))]
        grid_file = tmp_path / "grid.yaml"
        grid_file.write_text(json.dumps(grid))
        assert main(["run", "grid-search", "--data", str(data), "--target", "y",
                     "--grid", str(grid_file), *extra]) == 2
        assert capsys.readouterr().err.strip() == f"error: {raised.value}"


def test_tables_from_x_and_y_name_and_check_columns():
    from foldwise.pipelines.api import feature_frame, table_from_xy

    X = pd.DataFrame({"y": [1.0, 2.0], 3: ["a", "b"]}, index=[10, 11])
    table, target = table_from_xy(X, np.array([0.5, 0.7]))  # unnamed: a name X lacks
    assert target == "target" and list(table.columns) == ["y", "3", "target"]
    assert list(feature_frame(np.ones((2, 3))).columns) == ["x0", "x1", "x2"]
    with pytest.raises(foldwise.FoldwiseError, match="X has no rows"):
        table_from_xy(X.iloc[:0], [])
    with pytest.raises(foldwise.FoldwiseError, match=r"read the same as text: \['1'\]"):
        feature_frame(pd.DataFrame([[1, 2]], columns=[1, "1"]))


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "afile.txt", r"output .*afile.txt is a file, not a folder"),
    (lambda tmp: tmp / "afile.txt" / "sub", r"cannot create output folder .*afile.txt/sub"),
])
def test_an_output_that_cannot_be_a_folder_is_refused_before_any_step(make, message, tmp_path):
    (tmp_path / "afile.txt").write_text("keep")
    X = pd.DataFrame({"x": np.arange(20.0)})
    search = foldwise.GridSearchCV({"learning_rate": [0.01]}, verbose=False,
                                   output=str(make(tmp_path)))
    with pytest.raises(foldwise.FoldwiseError, match=message):
        search.fit(X, pd.Series(np.linspace(0, 1, 20), name="y"))
    assert (tmp_path / "afile.txt").read_text() == "keep"


def test_kfp_local_finds_the_docker_client_from_the_clone_root():
    """In the repository's root, `docker` is the Docker API client, not the docker/ folder."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", "from kfp.local import task_dispatcher\n"
                           "import docker\nprint(docker.DockerClient.__name__)"],
                          cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "DockerClient"


@pytest.mark.local
def test_the_python_api_runs_from_the_clone_root(tmp_path):
    """Where a user who just ran `make demo` opens a notebook."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import foldwise, pandas as pd\n"
            "t = pd.read_csv('examples/penguins.csv')\n"
            "r = foldwise.cross_validate(t.drop(columns=['species']), t['species'], cv=2,\n"
            f"    epochs=1, verbose=False, output={str(tmp_path / 'run')!r})\n"
            "print(len(r['test_accuracy']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "2"


def test_a_one_hot_y_is_taken_as_its_classes_as_scikeras_takes_it(penguins):
    """``to_categorical(y)``, as Keras tutorials make it: each row's class; multi-label named."""
    import keras
    import pandas as pd

    from foldwise.components.core.errors import FoldwiseError
    from foldwise.pipelines.api import table_from_xy, target_column

    table = penguins.dropna(subset=["species"]).reset_index(drop=True)
    codes = table["species"].astype("category").cat.codes.to_numpy()
    one_hot = keras.utils.to_categorical(codes, 3)
    assert target_column(one_hot).tolist() == codes.tolist()
    named = pd.DataFrame(one_hot, columns=["Adelie", "Chinstrap", "Gentoo"])
    assert target_column(named).tolist() == table["species"].tolist()
    assert target_column(codes.reshape(-1, 1)).tolist() == codes.tolist()  # a column vector
    built, target = table_from_xy(table.drop(columns="species"), one_hot)
    assert built[target].tolist() == codes.tolist()
    twice = one_hot.copy()
    twice[4, :] = 1
    with pytest.raises(FoldwiseError, match=r"y is one-hot but row 4 has 3 ones, several "
                                            r"classes \(multi-label targets"):
        target_column(twice)
    none = one_hot.copy()
    none[7, :] = 0
    with pytest.raises(FoldwiseError, match=r"row 7 has 0 ones, no class"):
        target_column(none)
    with pytest.raises(FoldwiseError, match=r"y must be one column of targets \(or one-hot"):
        target_column(np.full((5, 2), 0.5))
    plan = foldwise.GridSearchCV({"learning_rate": [0.01]}, cv=3, verbose=False).plan(
        table.drop(columns="species"), named)
    assert plan["tasks"].min() >= 1
