"""Time-ordered and repeated folds: which rows each fold trains and scores on, and what uses it."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold, TimeSeriesSplit

from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.data.fold_transforms import scale_fold
from foldwise.components.core.data.folds import (
    assignment_frame,
    fold_ids,
    fold_view,
    split_columns,
)
from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.results.aggregate import (
    pooled_predictions,
    standard_error_correction,
)
from foldwise.components.core.scoring.stats import within_one_standard_error


def sales(rows: int = 90, seed: int = 0) -> pd.DataFrame:
    """A daily table, shuffled: the file's order is not the time order."""
    rng = np.random.default_rng(seed)
    day = pd.date_range("2024-01-01", periods=rows)
    table = pd.DataFrame({"day": day.strftime("%Y-%m-%d"), "x": rng.normal(size=rows),
                          "store": rng.choice(["a", "b", "c"], rows),
                          "sales": np.arange(rows, dtype=float) + rng.normal(size=rows)})
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def run(table, **options):
    return preprocess(table, PreprocessOptions(**options))


@pytest.mark.parametrize(("gap", "test_size"), [(0, 0), (3, 0), (2, 10)])
def test_time_folds_are_scikit_learns_time_series_split_in_the_order_columns_order(
        gap, test_size):
    table = sales()
    prepared, schema = run(table, target="sales", folds=4, split="time", order_column="day",
                           gap=gap, test_size=test_size)
    assert schema["fold_strategy"] == "time" and schema["folds"] == 4
    assert "day" not in schema["numeric"] + schema["categorical"]  # the time, not a feature
    by_time = np.argsort(pd.to_datetime(table["day"]).to_numpy())  # input rows in time order
    expected = TimeSeriesSplit(n_splits=4, gap=gap, test_size=test_size or None).split(
        np.zeros((len(table), 1)))
    days = pd.to_datetime(table["day"]).to_numpy()
    for fold, (train, validation) in zip(fold_ids(prepared), expected, strict=True):
        view = fold_view(prepared, fold)
        rows = view[ROW_COLUMN].to_numpy()
        scored = view[FOLD_COLUMN].to_numpy() == fold
        assert set(rows[~scored]) == set(by_time[train])
        assert set(rows[scored]) == set(by_time[validation])
        # Every training row lies before every validation row, with the gap between.
        assert days[rows[~scored]].max() < days[rows[scored]].min()
        assert (days[rows[scored]].min() - days[rows[~scored]].max()) == np.timedelta64(
            gap + 1, "D")


def test_time_folds_in_the_tables_own_order_without_an_order_column():
    table = pd.DataFrame({"x": np.arange(40.0), "y": np.arange(40.0)})
    prepared, schema = run(table, target="y", folds=3, split="time")
    assert schema["splits"]["order_column"] is None
    for fold in fold_ids(prepared):
        view = fold_view(prepared, fold)
        scored = view[FOLD_COLUMN] == fold
        assert view.loc[~scored, ROW_COLUMN].max() < view.loc[scored, ROW_COLUMN].min()


def test_time_folds_fit_each_folds_scaling_on_its_earlier_rows_only():
    table = sales()
    prepared, _ = run(table, target="sales", folds=3, split="time", order_column="day", gap=2)
    for fold in fold_ids(prepared):
        scaled, state = scale_fold(prepared, ["x"], fold, "standard")
        view = fold_view(prepared, fold)
        training = view[view[FOLD_COLUMN] != fold]
        assert len(scaled) == len(view) < len(prepared)  # later rows are in no part of it
        assert math.isclose(state["columns"]["x"]["center"], float(training["x"].mean()),
                            rel_tol=1e-9)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_repeated_folds_are_scikit_learns_repeated_k_fold(task):
    rng = np.random.default_rng(1)
    y = np.tile([0, 1, 2], 20) if task == "classification" else rng.normal(size=60)
    table = pd.DataFrame({"x": rng.normal(size=60), "y": y})
    prepared, schema = run(table, target="y", folds=4, repeats=3, seed=5, task=task)
    assert schema["folds"] == 12 and fold_ids(prepared) == list(range(12))
    assert schema["splits"] == {"split": "kfold", "folds_per_repeat": 4, "repeats": 3}
    splitter = (RepeatedStratifiedKFold if task == "classification" else RepeatedKFold)(
        n_splits=4, n_repeats=3, random_state=5)
    for fold, (train, validation) in enumerate(splitter.split(np.zeros((60, 1)), y)):
        view = fold_view(prepared, fold)
        scored = view[FOLD_COLUMN].to_numpy() == fold
        assert set(view[ROW_COLUMN].to_numpy()[scored]) == set(validation)
        assert set(view[ROW_COLUMN].to_numpy()[~scored]) == set(train)
    # Each repetition validates every row exactly once.
    roles = assignment_frame(prepared)
    for repeat in range(3):
        block = roles[[f"fold_{repeat * 4 + k}" for k in range(4)]]
        assert ((block == "validation").sum(axis=1) == 1).all()


def test_one_repeat_and_plain_k_fold_keep_the_single_fold_column():
    table = pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30.0)})
    plain, _ = run(table, target="y", folds=3)
    once, _ = run(table, target="y", folds=3, repeats=1)
    assert not split_columns(plain) and plain.equals(once)
    assert list(assignment_frame(plain).columns) == ["row", "fold"]
    assert fold_view(plain, 1) is plain


def test_a_repeated_tables_out_of_fold_predictions_hold_one_line_per_row_and_repetition():
    frames = [pd.DataFrame({"row": rows, "fold": fold, "y_pred": 0.0})
              for fold, rows in enumerate([[0, 1], [2, 3], [1, 3], [0, 2]])]
    pooled = pooled_predictions(frames, repeats=2)
    assert pooled["row"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(FoldwiseError, match="folds overlap"):
        pooled_predictions(frames, repeats=1)


def test_repeated_folds_widen_the_one_standard_error_band():
    schema = {"splits": {"split": "kfold", "folds_per_repeat": 5, "repeats": 3}}
    assert standard_error_correction(schema) == pytest.approx(0.25)
    assert standard_error_correction({"splits": {"repeats": 1, "folds_per_repeat": 5}}) == 0
    assert standard_error_correction({}) == 0
    means, stds = [0.90, 0.885, 0.86], [0.03, 0.03, 0.03]
    # 15 scores taken for independent: the band is 0.03 * sqrt(15/14) / sqrt(15) = 0.008.
    assert within_one_standard_error(means, stds, 15) == [0]
    # Nadeau and Bengio's correction: 0.03 * sqrt(15/14) * sqrt(1/15 + 1/4) = 0.0175.
    assert within_one_standard_error(means, stds, 15, 0.25) == [0, 1]


@pytest.mark.parametrize(("options", "message"), [
    ({"split": "time", "order_column": "day", "repeats": 2}, "the same every time"),
    ({"split": "time", "order_column": "day", "group_column": "store"},
     "--group-column cannot be combined with --split time"),
    ({"repeats": 2, "group_column": "store"}, "--repeats cannot be combined with --group"),
    ({"order_column": "day"}, "--order-column applies only to time-ordered folds"),
    ({"test_size": 5, "gap": 1}, "--gap, --test-size apply only to time-ordered folds"),
    ({"split": "time", "order_column": "sales"}, "cannot be the target or group column"),
    ({"split": "time", "order_column": "dya"}, "'dya' is not in the table; did you mean 'day'"),
    ({"split": "time", "folds": 4, "test_size": 30}, r"4 validation blocks of 30 rows leave"),
    ({"split": "time", "categorical": ["day"], "order_column": "day"},
     "which is the target, group or order column"),
])
def test_fold_options_that_do_not_go_together_are_refused(options, message):
    with pytest.raises(FoldwiseError, match=message):
        run(sales(), target="sales", **{"folds": 3, **options})


def test_an_order_column_of_numbers_orders_the_rows():
    table = pd.DataFrame({"t": [5, 1, 4, 2, 3, 9, 8, 7, 6, 0, 11, 10],
                          "x": np.arange(12.0), "y": np.arange(12.0)})
    prepared, _ = run(table, target="y", folds=2, split="time", order_column="t")
    first = fold_view(prepared, 0)
    trained = table["t"].to_numpy()[first.loc[first[FOLD_COLUMN] != 0, ROW_COLUMN]]
    scored = table["t"].to_numpy()[first.loc[first[FOLD_COLUMN] == 0, ROW_COLUMN]]
    assert sorted(trained) == [0, 1, 2, 3] and sorted(scored) == [4, 5, 6, 7]  # 12 // 3


def test_scikit_learn_splitters_passed_as_cv_become_fold_options():
    from sklearn.model_selection import GroupKFold, KFold, LeaveOneOut

    from foldwise.pipelines.api import splitter_options

    assert splitter_options(5) == {}
    assert splitter_options(KFold(4, shuffle=True, random_state=3)) == {"folds": 4, "seed": 3}
    assert splitter_options(RepeatedStratifiedKFold(n_splits=3, n_repeats=4, random_state=1)) \
        == {"folds": 3, "repeats": 4, "seed": 1}
    assert splitter_options(TimeSeriesSplit(n_splits=4, gap=2, test_size=7)) == {
        "folds": 4, "split": "time", "gap": 2, "test_size": 7}
    assert splitter_options(GroupKFold(3), "patient") == {"folds": 3}
    for cv, message in [(GroupKFold(3), "needs group_column"),
                        (LeaveOneOut(), "not a splitter foldwise runs"),
                        (TimeSeriesSplit(3, max_train_size=10), "max_train_size")]:
        with pytest.raises(FoldwiseError, match=message):
            splitter_options(cv)


@pytest.fixture(scope="module")
def time_run(tmp_path_factory):
    """A time-ordered cross-validation through the command line on kfp.local."""
    from foldwise.pipelines.cli import main

    folder = tmp_path_factory.mktemp("time")
    sales().to_csv(folder / "sales.csv", index=False)
    code = main(["run", "cross-validation", "--data", str(folder / "sales.csv"), "--target",
                 "sales", "--split", "time", "--order-column", "day", "--gap", "2", "--folds",
                 "3", "--epochs", "3", "--importance", "off", "--output", str(folder / "out")])
    assert code == 0
    return folder / "out"


@pytest.mark.local
def test_a_time_ordered_run_scores_each_block_after_training_on_the_rows_before(time_run):
    import json

    summary = json.loads((time_run / "summary.json").read_text())
    assert summary["folds"] == 3 and summary["fold_strategy"] == "time"
    assert summary["splits"]["order_column"] == "day" and summary["splits"]["gap"] == 2
    folds = pd.read_csv(time_run / "folds.csv")
    assert list(folds.columns) == ["row", "fold", "fold_0", "fold_1", "fold_2"]
    table = sales()
    days = pd.to_datetime(table["day"]).to_numpy()[folds["row"]]
    for fold in range(3):
        roles = folds[f"fold_{fold}"]
        assert days[roles == "train"].max() < days[roles == "validation"].min()
    cv_results = pd.read_csv(time_run / "cv_results.csv")
    assert [f"split{k}_test_r2" in cv_results for k in range(4)] == [True] * 3 + [False]
    # The trend the later blocks extrapolate is learnt: the last block scores a finite r2.
    assert np.isfinite(cv_results["split2_test_r2"]).all()


def test_a_time_ordered_fold_that_never_trains_on_a_class_it_scores_is_named():
    table = pd.DataFrame({"x": np.arange(40.0), "y": ["a"] * 20 + ["b"] * 20})
    _, schema = run(table, target="y", folds=3, split="time")  # blocks of 10 after 10 rows
    notes = [w for w in schema["warnings"] if w.startswith("time-ordered fold")]
    assert notes == ["time-ordered fold 1 scores class 'b' but trains on no row of it, so its "
                     "model cannot predict it (is the table ordered by the target?)"]


@pytest.mark.local
def test_repeated_folds_from_python_as_scikit_learns_repeated_k_fold(tmp_path):
    import foldwise

    table = sales(60)
    X, y = table.drop(columns=["sales", "day"]), table["sales"]
    search = foldwise.GridSearchCV({"learning_rate": [1e-3, 1e-2]}, epochs=2, hidden_units=[4],
                                   cv=RepeatedKFold(n_splits=2, n_repeats=2, random_state=3),
                                   importance="off", verbose=False, output=str(tmp_path / "out"))
    search.fit(X, y)
    assert search.n_splits_ == 4 and "split3_test_r2" in search.cv_results_
    assert search.summary_["splits"] == {"split": "kfold", "folds_per_repeat": 2, "repeats": 2}
    assert search.summary_["seed"] == 3
    folds = pd.read_csv(tmp_path / "out" / "folds.csv")
    expected = RepeatedKFold(n_splits=2, n_repeats=2, random_state=3).split(X)
    for fold, (_, validation) in enumerate(expected):
        assert set(folds.loc[folds[f"fold_{fold}"] == "validation", "row"]) == set(validation)


def test_the_compiled_pipelines_take_the_fold_options_as_parameters(tmp_path):
    import yaml
    from kfp import compiler

    from foldwise.pipelines.dags.grid_search import grid_search

    path = tmp_path / "grid.yaml"
    compiler.Compiler().compile(grid_search, str(path))
    ir = yaml.safe_load(path.read_text())
    parameters = ir["root"]["inputDefinitions"]["parameters"]
    assert {name: parameters[name].get("defaultValue") for name in
            ("split", "order_column", "gap", "test_size", "repeats")} == {
        "split": "kfold", "order_column": "", "gap": 0.0, "test_size": 0.0, "repeats": 1.0}
    preprocess = ir["root"]["dag"]["tasks"]["preprocess"]["inputs"]["parameters"]
    for name in ("split", "order_column", "gap", "test_size", "repeats"):
        assert preprocess[name] == {"componentInputParameter": name}
