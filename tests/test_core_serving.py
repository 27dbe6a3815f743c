import json

import keras
import numpy as np
import pandas as pd
import pytest

from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.data.whole_table import (
    encode,
    fit_preprocessing,
    input_name,
    input_names,
)
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.keras_model import build_model
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.serving.serving_model import (
    build_serving_model,
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
    from foldwise.components.core.serving.serving_model import RawFeatures

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
    # true/false are not read as 1 and 0 (training reads them as a category, or refuses them)
    for flags in ([True, False], pd.Series([1.5, True], dtype=object)):
        with pytest.raises(FoldwiseError, match=r"'bill_depth_mm' must be numeric but holds "
                                                r"True \(row \d\): the model was trained on "
                                                r"numbers there"):
            serving_inputs(table.head(2).assign(bill_depth_mm=flags), state)


def test_input_names_are_signature_safe():
    assert input_name(0, "zielwert €") == "f0_zielwert"
    assert input_name(3, "größe") == "f3_gr_e"
    assert input_name(1, "€€") == "f1"


def test_columns_keep_their_names_where_a_signature_can_take_them(tmp_path):
    import tensorflow as tf

    columns = ["bill_length_mm", "Sex", "body mass (g)", "class", "_x", "2nd", "f2_body_mass_g",
               "größe", "a.b"]
    names = input_names(columns)
    assert names == ["bill_length_mm", "Sex", "f2_body_mass_g_", "f3_class", "f4_x", "f5_2nd",
                     "f2_body_mass_g", "f7_gr_e", "f8_a_b"]
    # TensorFlow keeps every one of them as the exported signature's input name.
    inputs = {n: keras.Input(shape=(), name=n, dtype="float32") for n in names}
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.ops.stack(list(inputs.values()),
                                                                      axis=-1)))
    model.export(str(tmp_path / "names"), format="tf_saved_model", verbose=False)
    signature = tf.saved_model.load(str(tmp_path / "names")).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == set(names)


def test_models_exported_with_one_column_inputs_still_serve(fitted):
    """Before inputs took one value per row they took ``(rows, 1)``; such exports still load."""
    table, prepared, schema, state, inner, serving = fitted
    old = {**state, "inputs": [{k: v for k, v in i.items() if k != "shape"}
                               for i in state["inputs"]]}
    old_model = build_serving_model(inner, old, schema, {"mean": 4200.0, "scale": 800.0})
    assert old_model.inputs[0].shape == (None, 1)
    np.testing.assert_allclose(
        old_model.predict(serving_inputs(table.head(9), old), verbose=0),
        serving.predict(serving_inputs(table.head(9), state), verbose=0), rtol=1e-6)


def test_prediction_table_shapes():
    schema = {"task": "classification", "classes": ["a", "b"]}
    out = prediction_table(np.array([[0.2, 0.8], [0.9, 0.1]]), schema)
    assert list(out.columns) == ["predicted_class", "proba_a", "proba_b"]
    assert out["predicted_class"].tolist() == ["b", "a"]
    assert json.loads(out.to_json())["proba_a"]["0"] == pytest.approx(0.2)


def test_request_body_of_odd_column_names_is_answered_as_the_model_answers(penguins, tmp_path):
    """Columns a signature cannot name travel under their listed input names; categories
    as text, missing values as NaN and ""; the SavedModel answers as the Keras model."""
    from helpers import tfserving

    from foldwise.components.core.serving.serving_model import request_body

    table = penguins.rename(columns={"bill_length_mm": "bill length (mm)", "island": "class"})
    table["year"] = table["year"].astype("category")  # numbers, read as categories
    prepared, schema = preprocess(table, PreprocessOptions(target="species", folds=3,
                                                           categorical=["year"]))
    state = fit_preprocessing(prepared, schema, "standard")
    spec = normalize_spec({"hidden_units": [5]}, "classification", 3)
    inner = build_model(spec, len(state["features"]), "classification", 3)
    serving = build_serving_model(inner, state, schema, None)
    serving.export(str(tmp_path / "savedmodel"), format="tf_saved_model", verbose=False)
    rows = table.head(12).drop(columns="species")
    rows.loc[rows.index[1], "bill length (mm)"] = np.nan
    rows.loc[rows.index[2], "class"] = None
    body = request_body(rows, state)
    named = {i["column"]: i["input"] for i in state["inputs"]}
    assert named["bill length (mm)"].startswith("f") and named["class"].endswith("_class")
    assert named["sex"] == "sex" and named["flipper_length_mm"] == "flipper_length_mm"
    instance = body["instances"][2]
    assert list(instance) == [i["input"] for i in state["inputs"]]
    assert instance[named["class"]] == "" and instance[named["year"]] == "2007"
    assert instance["bill_depth_mm"] == rows["bill_depth_mm"].iloc[2]  # as written, not float32
    text = json.dumps(body)
    assert "NaN" in text
    answer = tfserving.predict(tmp_path / "savedmodel", text)
    np.testing.assert_allclose(answer["predictions"],
                               serving.predict(serving_inputs(rows, state), verbose=0),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not the signature's"):  # raw names are refused
        tfserving.predict(tmp_path / "savedmodel", json.dumps(
            {"instances": [rows.iloc[0].to_dict()]}, default=str))


def test_columns_named_like_the_models_own_parts_serve(tmp_path):
    """A column may be called what a layer is called; the serving model's parts have names
    no input can have."""
    from helpers import tfserving

    from foldwise.components.core.serving.serving_model import request_body

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"prediction": rng.normal(size=40), "raw_features": rng.normal(size=40),
                          "functional": rng.normal(size=40), "sequential": rng.normal(size=40),
                          "foldwise_serving": rng.choice(["a", "b"], 40), "y": rng.normal(size=40)})
    prepared, schema = preprocess(table, PreprocessOptions(target="y", folds=3))
    state = fit_preprocessing(prepared, schema, "standard")
    assert [i["input"] for i in state["inputs"]] == ["prediction", "raw_features", "functional",
                                                    "sequential", "foldwise_serving"]
    inner = build_model(normalize_spec({"hidden_units": [4]}, "regression"),
                        len(state["features"]), "regression", None)
    serving = build_serving_model(inner, state, schema, None)
    serving.export(str(tmp_path / "savedmodel"), format="tf_saved_model", verbose=False)
    answer = tfserving.predict(tmp_path / "savedmodel", json.dumps(request_body(table, state)))
    np.testing.assert_allclose(np.asarray(answer["predictions"]),
                               serving.predict(serving_inputs(table, state), verbose=0),
                               rtol=1e-5, atol=1e-6)
