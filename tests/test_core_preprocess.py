import numpy as np
import pandas as pd
import pytest

from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.data.preprocess import PreprocessOptions, infer_task, preprocess
from foldwise.components.core.errors import FoldwiseError


def run(table, **options):
    options.setdefault("folds", 3)
    return preprocess(table, PreprocessOptions(**options))


def test_penguins_roles_task_classes_and_dropped_rows(penguins):
    prepared, schema = run(penguins, target="species", folds=5)
    assert schema["task"] == "classification"
    assert schema["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert schema["numeric"] == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                                 "body_mass_g", "year"]
    assert schema["categorical"] == ["island", "sex"]
    assert schema["rows_used"] == 344 and schema["rows_dropped_missing_target"] == []
    assert sorted(prepared[FOLD_COLUMN].unique()) == [0, 1, 2, 3, 4]
    assert prepared["species"].tolist()[:2] == [0, 0]


def test_rows_without_target_are_dropped_and_listed(penguins):
    table = penguins.copy()
    already = np.flatnonzero(penguins["body_mass_g"].isna()).tolist()
    assert already == [3, 271]
    table.loc[[10, 20], "body_mass_g"] = np.nan
    prepared, schema = run(table, target="body_mass_g", folds=5)
    assert schema["task"] == "regression"
    assert schema["rows_dropped_missing_target"] == [3, 10, 20, 271]
    assert schema["rows_used"] == 340
    assert not set(prepared[ROW_COLUMN]) & {3, 10, 20, 271}
    assert len(table) == 344


def test_stratified_folds_keep_class_shares(penguins):
    prepared, schema = run(penguins, target="species", folds=5, seed=1)
    assert schema["fold_strategy"] == "stratified"
    counts = pd.crosstab(prepared[FOLD_COLUMN], prepared["species"])
    assert (counts.max() - counts.min()).max() <= 1


def test_folds_are_reproducible_from_the_seed_and_change_with_it(penguins):
    first, _ = run(penguins, target="body_mass_g", folds=5, seed=7)
    again, _ = run(penguins, target="body_mass_g", folds=5, seed=7)
    other, _ = run(penguins, target="body_mass_g", folds=5, seed=8)
    assert first[FOLD_COLUMN].tolist() == again[FOLD_COLUMN].tolist()
    assert first[FOLD_COLUMN].tolist() != other[FOLD_COLUMN].tolist()


def test_regression_folds_are_shuffled_not_blocks():
    table = pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30.0)})
    prepared, schema = run(table, target="y", folds=3)
    assert schema["fold_strategy"] == "kfold"
    assert prepared[FOLD_COLUMN].tolist() != sorted(prepared[FOLD_COLUMN].tolist())


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_group_folds_keep_each_group_in_one_fold(task):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({
        "x": rng.normal(size=60), "patient": np.repeat([f"p{i}" for i in range(12)], 5),
        "y": np.tile([0, 1], 30) if task == "classification" else rng.normal(size=60),
    })
    prepared, schema = run(table, target="y", folds=3, group_column="patient", task=task)
    assert schema["fold_strategy"] in ("group", "stratified_group")
    assert prepared.groupby("patient")[FOLD_COLUMN].nunique().max() == 1
    assert "patient" not in schema["numeric"] + schema["categorical"]


def test_overrides_and_drop(penguins):
    _, schema = run(penguins, target="species", categorical=("year",), drop=("sex",))
    assert "year" in schema["categorical"] and "year" not in schema["numeric"]
    assert "sex" not in schema["categorical"]


def test_numeric_override_coerces_text_numbers():
    table = pd.DataFrame({"x": ["1", "2.5", None, "4"], "y": [1.0, 2.0, 3.5, 4.5]})
    prepared, schema = run(table, target="y", numeric=("x",), folds=2)
    assert schema["numeric"] == ["x"]
    assert prepared["x"].isna().tolist() == [False, False, True, False]


def test_input_table_is_not_mutated(penguins):
    before = penguins.copy()
    run(penguins, target="species", categorical=("year",))
    pd.testing.assert_frame_equal(penguins, before)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a", "b", "a"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 1, 0], "classification"),
        ([1, 2, 3, 2, 1], "classification"),
        ([1.5, 2.25, 3.0, 4.0], "regression"),
        ([1.0, 2.0, 3.0, 4.0], "regression"),
        ([7.0, 7.0, 7.0], "regression"),
        (list(range(50)), "regression"),
    ],
)
def test_task_inference(values, expected):
    assert infer_task(pd.Series(values), None)[0] == expected


def test_task_override_wins():
    assert infer_task(pd.Series([1, 2, 3]), "regression") == ("regression", "--task")


def test_non_ascii_columns_work():
    table = pd.DataFrame({"größe": np.arange(12.0), "färbung": list("abc") * 4,
                          "目标": [0, 1] * 6})
    prepared, schema = run(table, target="目标")
    assert schema["numeric"] == ["größe"] and schema["categorical"] == ["färbung"]


@pytest.mark.parametrize(
    ("table", "options", "match"),
    [
        (pd.DataFrame({"x": range(9), "y": range(9)}), {"target": "why"},
         r"--target column 'why' is not in the table; did you mean 'y'\?"),
        (pd.DataFrame({"x": range(9), "y": [None] * 9}), {"target": "y"},
         r"target column 'y' has no values"),
        (pd.DataFrame({"x": range(9), "y": ["a"] * 9}), {"target": "y"},
         r"single class \('a'\)"),
        (pd.DataFrame({"x": range(9), "y": ["a"] * 7 + ["b"] * 2}), {"target": "y"},
         r"classes 'b' \(2 rows\) have fewer rows than --folds 3.*use --folds 2 or fewer"),
        (pd.DataFrame({"x": range(9), "y": ["a"] * 8 + ["b"]}), {"target": "y"},
         r"'b' \(1 rows\).*remove those rows or merge those classes"),
        (pd.DataFrame({"x": range(9), "y": [2.5] * 9}), {"target": "y"},
         r"constant \(2\.5\) on all 9 rows"),
        (pd.DataFrame({"x": [1, 2], "y": [1.5, 2.5]}), {"target": "y"},
         r"2 rows, fewer than --folds 3"),
        (pd.DataFrame({"x": [1.0, np.inf] + [3.0] * 7, "y": np.arange(9.0)}), {"target": "y"},
         r"column 'x' has 1 infinite values"),
        (pd.DataFrame({"x": range(9), "y": [1.5, np.inf] + [2.0] * 7}), {"target": "y"},
         r"column 'y' has 1 infinite values"),
        # beyond float32, which the models compute in and prediction refuses: rows named as
        # the table has them (the row without a target is not counted out)
        (pd.DataFrame({"x": [1.0, 2.0, 3.0, 1e39] + [1.0] * 5 + [1e39] * 2,
                       "y": [1.0, None] + list(np.arange(9.0))}), {"target": "y"},
         r"column 'x' has 3 values beyond float32's range, which the models compute in \(such "
         r"as 1e\+39 in data row 4\): check them for unit or entry errors, or rescale"),
        (pd.DataFrame({"x": [True, False] * 4 + [True], "y": np.arange(9.0)}),
         {"target": "y", "numeric": ("x",)},
         r"column 'x' holds true/false values, which foldwise reads as categories"),
        (pd.DataFrame({"x": range(9), "y": [1.5, -4e38] + [2.0] * 7}), {"target": "y"},
         r"column 'y' has 1 values beyond float32's range, .*-4e\+38 in data row 2"),
        (pd.DataFrame({"x": range(9), "y": np.arange(9.0)}), {"target": "y", "folds": 1},
         r"--folds must be at least 2, got 1"),
        (pd.DataFrame({"x": ["1", "zwei"] * 5, "y": np.arange(10.0)}),
         {"target": "y", "numeric": ("x",)}, r"column 'x' is treated as numeric.*'zwei'"),
        (pd.DataFrame({"x": range(9), "y": np.arange(9.0)}),
         {"target": "y", "categorical": ("x",), "numeric": ("x",)}, r"both --categorical"),
        (pd.DataFrame({"x": range(9), "y": np.arange(9.0)}),
         {"target": "y", "drop": ("y",)}, r"--drop names \['y'\], which is the target"),
        (pd.DataFrame({"y": np.arange(9.0)}), {"target": "y"}, r"no feature columns"),
        (pd.DataFrame({"x": [None] * 9, "z": range(9), "y": np.arange(9.0)}), {"target": "y"},
         r"column 'x' has no values at all.*--drop x"),
        (pd.DataFrame({"when": pd.date_range("2020", periods=9), "y": np.arange(9.0)}),
         {"target": "y"}, r"column 'when' holds dates"),
        (pd.DataFrame({"x": range(9), "g": ["a", "b"] * 4 + ["a"], "y": np.arange(9.0)}),
         {"target": "y", "group_column": "g"}, r"2 distinct groups, fewer than --folds 3"),
        (pd.DataFrame({"__fold__": range(9), "y": np.arange(9.0)}), {"target": "y"},
         r"reserved by foldwise"),
    ],
)
def test_bad_input_is_a_clear_error(table, options, match):
    with pytest.raises(FoldwiseError, match=match):
        run(table, **options)
