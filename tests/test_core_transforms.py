import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler

from foldwise.components.core.columns import FOLD_COLUMN
from foldwise.components.core.data.encoding import (
    apply_one_hot,
    encoded_feature_names,
    fit_one_hot,
)
from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.data.scaling import apply_scaler, fit_scaler
from foldwise.components.core.errors import FoldwiseError

SKLEARN_SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}


@pytest.fixture(scope="module")
def prepared(penguins):
    table, schema = preprocess(penguins, PreprocessOptions(target="species", folds=5, seed=3))
    return table, schema


@pytest.mark.parametrize("method", ["standard", "minmax", "robust"])
@pytest.mark.parametrize("fold", [0, 3])
def test_fold_statistics_equal_sklearn_fitted_on_that_folds_training_rows(prepared, method,
                                                                          fold):
    table, schema = prepared
    numeric = schema["numeric"]
    train = table[table[FOLD_COLUMN] != fold]
    state = fit_scaler(train, numeric, method)
    reference = make_pipeline(SimpleImputer(strategy="median"), SKLEARN_SCALERS[method]())
    reference.fit(train[numeric].to_numpy())
    imputer = reference[0]
    np.testing.assert_allclose([state["columns"][c]["median"] for c in numeric],
                               imputer.statistics_)
    # The whole table (validation rows included) is transformed like sklearn does.
    ours = apply_scaler(table, state)[numeric].to_numpy()
    np.testing.assert_allclose(ours, reference.transform(table[numeric].to_numpy()), atol=1e-12)


def test_statistics_differ_between_folds_and_ignore_validation_rows(prepared):
    table, schema = prepared
    numeric = schema["numeric"]
    states = [fit_scaler(table[table[FOLD_COLUMN] != k], numeric) for k in range(5)]
    means = {round(s["columns"]["body_mass_g"]["center"], 6) for s in states}
    assert len(means) == 5
    # Changing a validation row changes nothing that is fitted for that fold.
    poisoned = table.copy()
    poisoned.loc[poisoned[FOLD_COLUMN] == 2, "body_mass_g"] = 1e9
    again = fit_scaler(poisoned[poisoned[FOLD_COLUMN] != 2], numeric)
    assert again == states[2]


def test_scaling_none_only_imputes():
    frame = pd.DataFrame({"x": [1.0, None, 5.0]})
    state = fit_scaler(frame, ["x"], "none")
    assert apply_scaler(frame, state)["x"].tolist() == [1.0, 3.0, 5.0]


def test_constant_and_empty_training_columns_do_not_divide_by_zero():
    frame = pd.DataFrame({"flat": [2.0, 2.0, 2.0], "gone": [None, None, None]})
    state = fit_scaler(frame, ["flat", "gone"])
    out = apply_scaler(pd.DataFrame({"flat": [2.0, 3.0], "gone": [None, 1.0]}), state)
    assert out["flat"].tolist() == [0.0, 1.0]
    assert out["gone"].tolist() == [0.0, 1.0]


def test_unknown_scaler_is_refused():
    with pytest.raises(FoldwiseError, match="--scaler must be one of"):
        fit_scaler(pd.DataFrame({"x": [1.0]}), ["x"], "zscore")


def test_transforms_do_not_mutate_their_inputs(prepared):
    table, schema = prepared
    before = table.copy()
    state = fit_scaler(table, schema["numeric"])
    apply_scaler(table, state)
    encoder = fit_one_hot(table, schema["categorical"])
    apply_one_hot(table, encoder)
    pd.testing.assert_frame_equal(table, before)


def test_one_hot_categories_come_only_from_training_rows():
    frame = pd.DataFrame({"c": ["a", "b", None, "z", "a"], FOLD_COLUMN: [0, 0, 0, 1, 1]})
    state = fit_one_hot(frame[frame[FOLD_COLUMN] != 1], ["c"])
    assert state["columns"]["c"] == ["a", "b", None]  # 'z' is only in the validation fold
    encoded = apply_one_hot(frame, state)
    names = encoded_feature_names([], state)
    assert names == ["c=a", "c=b", "c=<missing>"]
    assert encoded[names].to_numpy().tolist() == [
        [1, 0, 0], [0, 1, 0], [0, 0, 1],
        [0, 0, 0],  # unseen in training: all zeros
        [1, 0, 0],
    ]


def test_missing_seen_only_in_validation_encodes_as_zeros():
    state = fit_one_hot(pd.DataFrame({"c": ["a", "b"]}), ["c"])
    encoded = apply_one_hot(pd.DataFrame({"c": [None, "b"]}), state)
    assert encoded[["c=a", "c=b"]].to_numpy().tolist() == [[0, 0], [0, 1]]


def test_one_hot_matches_sklearn_on_a_penguin_fold(prepared):
    table, schema = prepared
    categorical = schema["categorical"]
    train = table[table[FOLD_COLUMN] != 1]
    state = fit_one_hot(train, categorical)
    ours = apply_one_hot(table, state)[encoded_feature_names([], state)].to_numpy()
    as_object = table[categorical].astype(object).where(table[categorical].notna(), "~missing")
    reference = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    reference.fit(as_object[table[FOLD_COLUMN] != 1])
    np.testing.assert_array_equal(ours, reference.transform(as_object))
