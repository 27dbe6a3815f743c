import json

import keras
import numpy as np
import pandas as pd
import pytest

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.model import build_model, normalize_spec
from foldwise.components.core.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.serving import (
    build_serving_model,
    encode,
    fit_preprocessing,
    input_name,
    prediction_table,
    serving_inputs,
)


@pytest.fixture(scope="module")
def fitted(penguins):
    table = penguins.copy()
    table["sex"] = table["sex"].where(table.index % 7 != 0)  # more missing categories
    prepared, schema = preprocess(table, PreprocessOptions(target="body_mass_g", folds=3))
    state = fit_preprocessing(prepared, schema, "robust")
    spec = normalize_spec({"hidden_units": [6]}, "regression")
    inner = build_model(spec, len(state["features"]), "regression", None)
    serving = build_serving_model(inner, state, schema, {"mean": 4200.0, "scale": 800.0})
    return table, prepared, schema, state, inner, serving


def test_serving_model_on_raw_rows_equals_the_pipelines_path(fitted):
    table, prepared, schema, state, inner, serving = fitted
    raw = table.loc[prepared["__row__"]].reset_index(drop=True)
    served = serving.predict(serving_inputs(raw, state), verbose=0)[:, 0]
    expected = inner.predict(encode(prepared, state), verbose=0)[:, 0] * 800.0 + 4200.0
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-3)


def test_unseen_and_missing_categories_and_missing_numbers(fitted):
    _, _, schema, state, _, serving = fitted
    rows = pd.DataFrame({"island": ["Atlantis", None], "bill_length_mm": [np.nan, 40.0],
                         "bill_depth_mm": [18.0, 18.0], "flipper_length_mm": [200, 200],
                         "sex": [None, "male"], "year": [2008, 2008], "species": ["x", "y"]})
    from foldwise.components.core.serving import RawFeatures

    encoded = np.asarray(RawFeatures(state)(serving_inputs(rows, state)))
    features = state["features"]
    assert encoded[0, features.index("island=Biscoe")] == 0  # unseen: all zeros
    assert encoded[0, [i for i, f in enumerate(features) if f.startswith("island=")]].sum() == 0
    assert encoded[0, features.index("sex=<missing>")] == 1
    median = state["scaler"]["columns"]["bill_length_mm"]
    assert encoded[0, 0] == pytest.approx((median["median"] - median["center"]) /
                                          median["scale"], abs=1e-6)


def test_saved_model_loads_with_safe_mode_and_as_savedmodel(fitted, tmp_path):
    import tensorflow as tf

    table, prepared, schema, state, _, serving = fitted
    serving.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    inputs = serving_inputs(table.head(5), state)
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0),
                               serving.predict(inputs, verbose=0), rtol=1e-6)
    serving.export(str(tmp_path / "savedmodel"), format="tf_saved_model", verbose=False)
    signature = tf.saved_model.load(str(tmp_path / "savedmodel")).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {i["input"] for i in state["inputs"]}
    out = list(signature(**inputs).values())[0].numpy()
    np.testing.assert_allclose(out, serving.predict(inputs, verbose=0), rtol=1e-5)


def test_inputs_are_checked(fitted):
    table, _, _, state, _, _ = fitted
    with pytest.raises(FoldwiseError, match="lacks columns the model needs: island"):
        serving_inputs(table.drop(columns="island"), state)
    with pytest.raises(FoldwiseError, match="'bill_depth_mm' must be numeric but holds 'deep'"):
        serving_inputs(table.head(2).assign(bill_depth_mm=["deep", 1.0]), state)


def test_input_names_are_signature_safe():
    assert input_name(0, "zielwert €") == "f0_zielwert"
    assert input_name(3, "größe") == "f3_gr_e"
    assert input_name(1, "€€") == "f1"


def test_prediction_table_shapes():
    schema = {"task": "classification", "classes": ["a", "b"]}
    out = prediction_table(np.array([[0.2, 0.8], [0.9, 0.1]]), schema)
    assert list(out.columns) == ["predicted_class", "proba_a", "proba_b"]
    assert out["predicted_class"].tolist() == ["b", "a"]
    assert json.loads(out.to_json())["proba_a"]["0"] == pytest.approx(0.2)
