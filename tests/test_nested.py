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


def test_a_staged_nested_pipeline_has_a_flat_loop_per_stage_then_the_outer_folds(tmp_path):
    import yaml
    from kfp import compiler

    from foldwise.pipelines.dags.cluster import LOCAL
    from foldwise.pipelines.dags.nested_cv import build_nested_cv

    path = tmp_path / "staged.yaml"
    compiler.Compiler().compile(build_nested_cv(LOCAL, 3), str(path))
    ir = yaml.safe_load(path.read_text())
    tasks = ir["root"]["dag"]["tasks"]
    loops = sorted(t["taskInfo"]["name"] for t in tasks.values() if "parameterIterator" in t)
    assert loops == ["outer-trials", "trials", "trials-stage-1", "trials-stage-2"]
    stages = sorted(name for name, t in tasks.items()
                    if t["componentRef"]["name"].startswith("comp-nested-stage"))
    assert len(stages) == 3
    assert tasks["nested-choose"]["inputs"]["parameters"]["fold_results"][
        "taskOutputParameter"]["producerTask"] == "nested-stage-3"


def test_the_command_line_runs_nested_cv_and_prints_the_answer(nested_run, capsys):
    from foldwise.pipelines.display import format_nested

    _, output = nested_run
    text = format_nested(json.loads((Path(output) / "summary.json").read_text()))
    assert "nested   r2 " in text and "the inner best minus the outer score" in text
    assert text.count("\n") >= OUTER + 4


def test_staged_inner_searches_advance_together_each_on_its_own_plan():
    from foldwise.components.core.search import nested as staged

    def make(folds):
        return {"folds": folds, "stage": 0, "results": [f"uri-{folds[0]}"],
                "candidates": [{"config_id": f"c{folds[0]}"}],
                "tasks": [{"configs": [{"config_id": "a"}], "folds": folds[:1]}]}

    plan = staged.first({"inner": [[0, 1], [2, 3]]}, make)
    assert [task["folds"] for task in plan["tasks"]] == [[0], [2]]
    moved = staged.advance(plan, lambda p: {**p, "stage": p["stage"] + 1,
                                            "results": [*p["results"], "shared"],
                                            "tasks": [{"configs": [], "folds": p["folds"][1:]}]})
    assert [p["stage"] for p in moved["outer"]] == [1, 1]
    assert [task["folds"] for task in moved["tasks"]] == [[1], [3]]
    assert moved["results"] == ["uri-0", "shared", "uri-2"]  # each URI once
    assert set(staged.configurations(plan)) == {"a", "c0", "c2"}  # tasks' and candidates'
    assert set(staged.configurations(moved)) == {"c0", "c2"}
    with pytest.raises(FoldwiseError, match="compile it without --rungs"):
        staged.advance({"tasks": []}, lambda p: p)


@pytest.fixture(scope="module")
def staged_runs(tmp_path_factory):
    """Nested cross-validation of a halving search and of a Bayesian search (Python API)."""
    import foldwise

    X, y = diabetes()
    X, y = X.head(160), y.head(160)
    folder = tmp_path_factory.mktemp("staged")
    halving = foldwise.cross_validate(
        foldwise.HalvingGridSearchCV({"learning_rate": [1e-4, 1e-3, 1e-2]}, cv=3, factor=3,
                                     epochs=3, hidden_units=[8]),
        X, y, cv=2, verbose=False, output=str(folder / "halving"))
    bayes = foldwise.cross_validate(
        foldwise.BayesSearchCV({"learning_rate": (1e-4, 1e-2, "log-uniform")}, n_iter=3,
                               n_points=3, cv=2, epochs=3, hidden_units=[8]),
        X, y, cv=2, verbose=False, output=str(folder / "bayes"))
    return {"halving": (halving, folder / "halving"), "bayes": (bayes, folder / "bayes")}


@pytest.mark.local
def test_a_halving_inner_search_chooses_among_each_outer_folds_last_rung(staged_runs):
    scores, output = staged_runs["halving"]
    table = pd.read_csv(output / "cv_results.csv")
    summary = json.loads((output / "summary.json").read_text())
    assert "iter" in table and np.isfinite(scores["test_r2"]).all()
    for row in summary["nested"]["folds"]:
        mine = table[table["outer_fold"] == row["outer_fold"]]
        assert len(mine[mine["iter"] == 0]) == 3  # every candidate in its first rung
        last = mine[mine["iter"] == mine["iter"].max()]
        assert row["config_id"] in set(last["config_id"])  # the winner of its own last rung
        assert int(last["n_resources"].max()) == 3  # a rung of 1 fold, then of all 3


@pytest.mark.local
def test_a_bayesian_inner_search_chooses_a_configuration_scored_on_every_inner_fold(
        staged_runs):
    scores, output = staged_runs["bayes"]
    table = pd.read_csv(output / "cv_results.csv")
    summary = json.loads((output / "summary.json").read_text())
    assert "round" in table and np.isfinite(scores["test_r2"]).all()
    for row in summary["nested"]["folds"]:
        mine = table[table["outer_fold"] == row["outer_fold"]].set_index("config_id")
        assert mine.loc[row["config_id"], "n_resources"] == 2  # both of its inner folds
        assert 1e-4 <= row["searched"]["learning_rate"] <= 1e-2


def test_every_nested_folds_scaling_and_categories_come_from_its_own_training_rows():
    """Both levels, with a category that lives in a few rows only: an inner fold knows it
    only if its own training rows (inside its outer fold's training rows) hold it."""
    from foldwise.components.core.data.fold_transforms import encode_fold, scale_fold

    rng = np.random.default_rng(4)
    rows = 90
    table = pd.DataFrame({"x": rng.normal(size=rows), "shop": rng.choice(["a", "b"], rows),
                          "y": rng.normal(size=rows)})
    table.loc[[5, 40, 77], "shop"] = "rare"
    prepared, schema = preprocess(table, PreprocessOptions(target="y", folds=3, outer_folds=3,
                                                           seed=1))
    nested = schema["nested"]
    knows_rare = []
    for o, outer_fold in enumerate(nested["outer"]):
        outer_view = fold_view(prepared, outer_fold)
        outer_training = set(outer_view.loc[outer_view[FOLD_COLUMN] != outer_fold, ROW_COLUMN])
        for fold in [*nested["inner"][o], outer_fold]:
            scaled, state = scale_fold(prepared, ["x"], fold, "standard")
            _, _, categories = encode_fold(scaled, {"numeric": ["x"], "categorical": ["shop"],
                                                    "target": "y"}, fold)
            view = fold_view(prepared, fold)
            trained = view.loc[view[FOLD_COLUMN] != fold, ROW_COLUMN].to_numpy()
            if fold != outer_fold:
                assert set(view[ROW_COLUMN]) == outer_training  # the outer training rows only
            assert state["columns"]["x"]["center"] == pytest.approx(
                float(table["x"].to_numpy()[trained].mean()))
            assert categories["columns"]["shop"] == sorted(set(table["shop"].to_numpy()[trained]))
            knows_rare.append("rare" in categories["columns"]["shop"])
    assert any(knows_rare) and not all(knows_rare)  # the test can tell the levels apart
