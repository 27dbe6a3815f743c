"""Nested cross-validation: its folds, its choices, its answer, against scikit-learn's."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold, StratifiedKFold

from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.data.folds import fold_view
from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.results.nested import choices, outer_summary

OUTER, INNER, SEED = 4, 3, 0
GRID = {"learning_rate": [1e-4, 1e-3, 1e-2]}
FIXED = {"hidden_units": [16], "epochs": 30, "batch_size": 32}
# How far training noise (and Keras against scikit-learn's MLP, the same network, optimizer
# and epochs) may move a score: the bound on the inner means of two configurations that the
# two tools chose differently, and on the mean of the outer scores; one fold's outer score,
# scored on a quarter of 442 rows, may move twice as far.
NOISE = 0.08


def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True)
    return data.data, data.target.rename("progression")


def test_nested_folds_are_scikit_learns_outer_folds_and_their_training_rows_inner_folds():
    X, y = diabetes()
    prepared, schema = preprocess(X.assign(progression=y), PreprocessOptions(
        target="progression", folds=INNER, outer_folds=OUTER, seed=SEED))
    nested = schema["nested"]
    assert schema["folds"] == OUTER * INNER + OUTER
    assert nested["inner"][1] == [3, 4, 5] and nested["outer"] == [12, 13, 14, 15]
    outer_splits = list(KFold(OUTER, shuffle=True, random_state=SEED).split(X))
    for o, (train, test) in enumerate(outer_splits):
        view = fold_view(prepared, nested["outer"][o])
        scored = view[FOLD_COLUMN] == nested["outer"][o]
        assert set(view.loc[scored, ROW_COLUMN]) == set(test)
        assert set(view.loc[~scored, ROW_COLUMN]) == set(train)
        # GridSearchCV(cv=KFold(...)) splits the rows cross_validate hands it, in order.
        inner_splits = KFold(INNER, shuffle=True, random_state=SEED).split(train)
        for i, (inner_train, inner_test) in enumerate(inner_splits):
            view = fold_view(prepared, nested["inner"][o][i])
            scored = view[FOLD_COLUMN] == nested["inner"][o][i]
            assert set(view.loc[scored, ROW_COLUMN]) == set(train[inner_test])
            assert set(view.loc[~scored, ROW_COLUMN]) == set(train[inner_train])
            assert not set(view[ROW_COLUMN]) & set(test)  # no outer validation row inside


def test_nested_classification_folds_are_stratified_at_both_levels(penguins):
    prepared, schema = preprocess(penguins, PreprocessOptions(
        target="species", folds=3, outer_folds=3, seed=2))
    assert schema["fold_strategy"] == "nested_stratified"
    y = prepared["species"].to_numpy()
    outer = list(StratifiedKFold(3, shuffle=True, random_state=2).split(y, y))
    train = outer[1][0]
    inner = list(StratifiedKFold(3, shuffle=True, random_state=2).split(train, y[train]))
    view = fold_view(prepared, schema["nested"]["inner"][1][2])
    scored = view[FOLD_COLUMN] == schema["nested"]["inner"][1][2]
    assert set(view.loc[scored, ROW_COLUMN]) == set(
        prepared[ROW_COLUMN].to_numpy()[train[inner[2][1]]])


@pytest.mark.parametrize(("table", "options", "message"), [
    (pd.DataFrame({"x": np.arange(11.0), "y": np.arange(11.0)}), {"folds": 3, "outer_folds": 4},
     r"11 rows, too few for nested cross-validation of 4 outer folds of 3 inner folds \(at "
     r"least 12 rows\)"),
    (pd.DataFrame({"x": np.arange(40.0), "y": ["a"] * 37 + ["b"] * 3}),
     {"folds": 3, "outer_folds": 3},
     r"outer fold 0's training rows hold only 2 rows of a class, fewer than --folds 3"),
    (pd.DataFrame({"x": np.arange(40.0), "y": np.arange(40.0)}),
     {"folds": 3, "outer_folds": 4, "repeats": 2}, "leave --split time and --repeats out"),
    (pd.DataFrame({"x": np.arange(40.0), "y": np.arange(40.0)}),
     {"folds": 3, "outer_folds": 1}, "--outer-folds must be at least 2, got 1"),
])
def test_a_table_too_small_for_nested_folds_is_refused(table, options, message):
    with pytest.raises(FoldwiseError, match=message):
        preprocess(table, PreprocessOptions(target="y", **options))


def result(config: str, fold: int, score: float, lr: float) -> dict:
    return {"config_id": config, "params": {"estimator": "keras", "learning_rate": lr},
            "fold": fold, "scores": {"r2": score}, "fit_time": 1.0, "score_time": 0.1,
            "fit_error": "", "n_train": 20, "n_validation": 10}


def test_each_outer_fold_chooses_on_its_own_inner_folds_only():
    schema = {"nested": {"outer_folds": 2, "inner_folds": 2, "inner": [[0, 1], [2, 3]],
                         "outer": [4, 5]}}
    # Configuration a wins outer fold 0's inner folds, b outer fold 1's.
    inner = [result("a", 0, 0.9, 0.1), result("a", 1, 0.8, 0.1), result("b", 0, 0.5, 0.2),
             result("b", 1, 0.6, 0.2), result("a", 2, 0.1, 0.1), result("a", 3, 0.2, 0.1),
             result("b", 2, 0.7, 0.2), result("b", 3, 0.7, 0.2)]
    tables, chosen = choices(inner, schema, ["r2"], "r2")
    assert [c["config_id"] for c in chosen] == ["a", "b"]
    assert [c["fold"] for c in chosen] == [4, 5]
    assert chosen[0]["inner_mean"] == pytest.approx(0.85)
    assert list(tables["outer_fold"]) == [0, 0, 1, 1]
    assert "split0_test_r2" in tables and "split2_test_r2" not in tables  # inner numbering
    answer = outer_summary(chosen, [result("a", 4, 0.75, 0.1), result("b", 5, 0.5, 0.2)],
                           ["r2"], "r2")
    assert answer["metrics"]["r2"] == {"mean": pytest.approx(0.625), "std": pytest.approx(0.125),
                                       "folds": 2}
    assert answer["wins"] == {"a": 1, "b": 1} and answer["best_config_id"] == "a"
    # Optimism: inner best minus outer score, averaged: ((0.85 - 0.75) + (0.7 - 0.5)) / 2.
    assert answer["optimism"] == pytest.approx(0.15)


def test_an_outer_fold_whose_every_configuration_failed_scores_nan_with_its_error():
    schema = {"nested": {"outer_folds": 1, "inner_folds": 2, "inner": [[0, 1]], "outer": [2]}}
    failed = [{**result("a", k, math.nan, 0.1), "fit_error": "diverged"} for k in (0, 1)]
    _, chosen = choices(failed, schema, ["r2"], "r2")
    assert chosen[0]["config_id"] is None and chosen[0]["error"] == "diverged"
    answer = outer_summary(chosen, [], ["r2"], "r2")
    assert answer["folds"][0]["test"]["r2"] is None and answer["folds"][0]["fit_error"]
    assert answer["metrics"]["r2"]["mean"] is None and answer["best_config_id"] is None


@pytest.fixture(scope="module")
def nested_run(tmp_path_factory):
    """``foldwise.cross_validate(foldwise.GridSearchCV(...), X, y, cv=4)`` on diabetes."""
    import foldwise

    X, y = diabetes()
    output = tmp_path_factory.mktemp("nested") / "out"
    search = foldwise.GridSearchCV(GRID, cv=INNER, random_state=SEED, **FIXED)
    scores = foldwise.cross_validate(search, X, y, cv=OUTER, verbose=False, output=str(output))
    return scores, output


def sklearn_nested():
    """scikit-learn's ``cross_validate(GridSearchCV(...))`` of the same MLP, preprocessing and
    folds: median imputation and standard scaling, a standardized target."""
    import warnings

    from sklearn.compose import TransformedTargetRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import GridSearchCV, cross_validate
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = diabetes()
    mlp = MLPRegressor(hidden_layer_sizes=(16,), batch_size=32, max_iter=30, tol=0.0,
                       n_iter_no_change=31, random_state=SEED)
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                          TransformedTargetRegressor(mlp, transformer=StandardScaler()))
    search = GridSearchCV(model, {"transformedtargetregressor__regressor__learning_rate_init":
                                  GRID["learning_rate"]},
                          cv=KFold(INNER, shuffle=True, random_state=SEED), scoring="r2")
    with warnings.catch_warnings():  # 30 epochs, as foldwise trains: not converged
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_validate(search, X, y, cv=KFold(OUTER, shuffle=True, random_state=SEED),
                              scoring="r2", return_estimator=True)


@pytest.mark.local
def test_nested_cv_chooses_and_scores_as_scikit_learns_nested_cross_validate(nested_run):
    scores, output = nested_run
    summary = json.loads((Path(output) / "summary.json").read_text())
    nested = summary["nested"]
    reference = sklearn_nested()
    assert len(scores["test_r2"]) == OUTER and np.isfinite(scores["test_r2"]).all()
    inner_tables = pd.read_csv(Path(output) / "cv_results.csv")
    for o, fitted in enumerate(reference["estimator"]):
        theirs = fitted.best_params_[
            "transformedtargetregressor__regressor__learning_rate_init"]
        ours = nested["folds"][o]["params"]["learning_rate"]
        if not math.isclose(ours, theirs):  # a near tie: training noise decided it
            table = inner_tables[inner_tables["outer_fold"] == o]
            by_lr = {json.loads(p)["learning_rate"]: m
                     for p, m in zip(table["params"], table["mean_test_r2"], strict=True)}
            assert by_lr[ours] - by_lr[theirs] <= NOISE, (o, ours, theirs, by_lr)
    # The slowest learning rate loses everywhere, by far more than noise, in both tools.
    assert all(row["params"]["learning_rate"] != 1e-4 for row in nested["folds"])
    assert abs(scores["test_r2"].mean() - reference["test_score"].mean()) <= NOISE, (
        scores["test_r2"], reference["test_score"])
    assert np.abs(scores["test_r2"] - reference["test_score"]).max() <= 2 * NOISE, (
        scores["test_r2"], reference["test_score"])
    assert summary["metrics"]["r2"]["mean"] == pytest.approx(float(np.mean(scores["test_r2"])))
    assert sum(nested["wins"].values()) == OUTER
    inner_best = np.array([row["inner_mean"] for row in nested["folds"]])
    assert nested["optimism"] == pytest.approx(float(np.mean(inner_best - scores["test_r2"])))


@pytest.mark.local
def test_every_inner_transform_is_fitted_on_its_outer_folds_training_rows_only(nested_run):
    _, output = nested_run
    X, _ = diabetes()
    summary = json.loads((Path(output) / "summary.json").read_text())
    roles = pd.read_csv(Path(output) / "folds.csv")
    states = json.loads(next((Path(output) / "pipeline").rglob("scaler_state")).read_text())
    by_fold = {int(state["fold"]): state for state in states["folds"]}
    assert len(by_fold) == OUTER * INNER + OUTER
    inner_of = [[o * INNER + i for i in range(INNER)] for o in range(OUTER)]
    for o in range(OUTER):
        outer_fold = OUTER * INNER + o
        outer_validation = set(roles.loc[roles[f"fold_{outer_fold}"] == "validation", "row"])
        outer_training = set(roles.loc[roles[f"fold_{outer_fold}"] == "train", "row"])
        for fold in inner_of[o]:
            trained = roles.loc[roles[f"fold_{fold}"] == "train", "row"].to_numpy()
            inner_validation = set(roles.loc[roles[f"fold_{fold}"] == "validation", "row"])
            # The inner fold's rows: the outer training rows, split again; never its outer
            # validation rows.
            assert set(trained) | inner_validation == outer_training
            assert not (set(trained) | inner_validation) & outer_validation
            for column in ("bmi", "s5"):
                expected = float(X[column].to_numpy()[trained].mean())
                assert by_fold[fold]["columns"][column]["center"] == pytest.approx(expected)
        trained = roles.loc[roles[f"fold_{outer_fold}"] == "train", "row"].to_numpy()
        assert by_fold[outer_fold]["columns"]["bmi"]["center"] == pytest.approx(
            float(X["bmi"].to_numpy()[trained].mean()))
    assert summary["outer_folds"] == OUTER and summary["inner_folds"] == INNER


def test_the_nested_pipeline_compiles_to_two_flat_loops_that_read_artifacts_only(tmp_path):
    import yaml
    from kfp import compiler

    from foldwise.pipelines.dags.nested_cv import nested_cv

    path = tmp_path / "nested.yaml"
    compiler.Compiler().compile(nested_cv, str(path))
    ir = yaml.safe_load(path.read_text())
    tasks = ir["root"]["dag"]["tasks"]
    found = {t["taskInfo"]["name"]: (t, ir["components"][t["componentRef"]["name"]])
             for t in tasks.values() if "parameterIterator" in t}
    assert set(found) == {"trials", "outer-trials"}
    assert found["outer-trials"][0]["parameterIterator"]["items"]["inputParameter"].endswith(
        "nested-choose-Output")
    for _, component in found.values():
        (train,) = component["dag"]["tasks"].values()  # one train task, no inner loop
        assert "parameterIterator" not in train
        for key, source in train["inputs"].get("parameters", {}).items():
            assert "taskOutputParameter" not in source, key  # kfp.local's loop bug
    assert tasks["preprocess"]["inputs"]["parameters"]["outer_folds"] == {
        "componentInputParameter": "outer_folds"}
    assert ir["root"]["inputDefinitions"]["parameters"]["outer_folds"]["defaultValue"] == 5
    # The outer folds train the configurations the inner searches chose, on the same tables.
    (outer_train,) = found["outer-trials"][1]["dag"]["tasks"].values()
    outer_train = outer_train["inputs"]["artifacts"]
    assert outer_train["plan"]["componentInputArtifact"].endswith("nested-choose-plan")
    assert outer_train["fold_data"]["componentInputArtifact"].endswith(
        "one-hot-encode-folds-fold_data")
    assert tasks["export"]["inputs"]["artifacts"]["cv_results"]["taskOutputArtifact"] == {
        "outputArtifactKey": "cv_results", "producerTask": "nested-choose"}


def test_the_command_line_runs_nested_cv_and_prints_the_answer(nested_run, capsys):
    from foldwise.pipelines.display import format_nested

    _, output = nested_run
    text = format_nested(json.loads((Path(output) / "summary.json").read_text()))
    assert "nested   r2 " in text and "the inner best minus the outer score" in text
    assert text.count("\n") >= OUTER + 4
