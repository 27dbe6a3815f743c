"""A user's own Keras builder: referenced, loaded, routed, built fresh per fold, trained."""

import json
import linecache
import math
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
from foldwise.components.core.data.encoding import raw_column_indices
from foldwise.components.core.data.fold_data import (
    FoldData,
    fold_file,
    split_fold,
    write_fold_table,
)
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.builder_code import builder_reference, load_builder
from foldwise.components.core.models.builder_keras import (
    BuildContext,
    LossForm,
    build,
    builder_arguments,
    check_builder_params,
    loss_form,
    output_units,
    route,
)
from foldwise.components.core.models.estimators import get_estimator
from foldwise.components.core.models.spec import config_id, normalize_spec
from foldwise.components.core.training.fit import train_folds
from foldwise.components.core.training.trials import run_trials

# ----- the four builder forms of issue 11 -----------------------------------------------------
input_dim = 3


def closes_over_input_dim(hidden_units=8):
    model = keras.Sequential([keras.Input((input_dim,)),
                              keras.layers.Dense(hidden_units, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def takes_input_shape(input_shape):
    model = keras.Sequential([keras.Input(input_shape),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.2),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.2),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def dynamic_model(X, y, loss, layers=[10]):  # noqa: B006 - as Keras' own example writes it
    inputs = keras.Input(shape=(X.shape[1],))
    hidden = inputs
    for size in layers:
        hidden = keras.layers.Dense(size, activation="relu")(hidden)
    n_outputs = y.shape[1] if len(y.shape) > 1 else 1
    model = keras.Model(inputs, keras.layers.Dense(n_outputs, activation="softmax")(hidden))
    model.compile(loss=loss, optimizer="rmsprop")
    return model


def scikeras_style(meta, units=64, dropout=0.2):
    model = keras.Sequential([keras.Input((meta["n_features_in_"],)),
                              keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dropout(dropout),
                              keras.layers.Dense(meta["n_outputs_"])])
    return model  # left uncompiled: foldwise compiles it


def uncompiled(units=4):
    return keras.Sequential([keras.Input((input_dim,)), keras.layers.Dense(units),
                             keras.layers.Dense(1)])


def compiles_with(learning_rate=0.01):
    model = uncompiled()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def fold(task, rows=60):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 3)).astype("float32")
    y = 50.0 + 20.0 * x[:, 0] - 10.0 * x[:, 2]
    if task == "classification":
        y = np.digitize(x[:, 0], [-0.4, 0.4]).astype("int64")
    cut = rows * 3 // 4
    return FoldData(x[:cut], y[:cut], x[cut:], y[cut:], np.arange(cut, rows),
                    ["a", "b", "c"], None, "y", ["low", "mid", "high"]
                    if task == "classification" else None)


def context(task="regression", n_classes=None, rows=20):
    data = fold(task, rows)
    return BuildContext(data.x_train, data.y_train, task, n_classes)


def spec(fn, task="regression", n_classes=None, **params):
    return normalize_spec({"estimator": "keras_builder", "builder": builder_reference(fn),
                           "epochs": 2, "batch_size": 16, **params}, task, n_classes)


@pytest.mark.parametrize(("fn", "task", "params"), [
    (closes_over_input_dim, "regression", {"hidden_units": 6}),
    (takes_input_shape, "classification", {}),
    (dynamic_model, "classification", {"layers": [6]}),
    (scikeras_style, "regression", {"model__units": 8, "dropout": 0.1,
                                    "learning_rate": 0.01, "early_stopping": True}),
    (scikeras_style, "classification", {"units": 8}),  # linear outputs: compiled from logits
])
def test_the_four_builder_forms_fit_predict_and_save(fn, task, params, tmp_path):
    n_classes = 3 if task == "classification" else None
    kind = "multiclass" if n_classes else "regression"
    data = fold(task)
    config = spec(fn, task, n_classes, **params)
    # a module of the user's own, not installed: its text travels with the run
    assert config["builder"]["file"] == "test_core_builders.py"
    assert "def scikeras_style" in config["builder"]["source"]
    assert "module" not in config["builder"]
    estimator = get_estimator("keras_builder")
    state = estimator.target_scaling(data.y_train, kind, config)
    fitted = estimator.fit(data, kind, n_classes, config, 0, state, None)
    assert len(fitted.history["loss"]) == 2
    assert ("val_loss" in fitted.history) == config["early_stopping"]
    predicted = estimator.predict(fitted.model, data.x_validation, kind, n_classes, state)
    if task == "regression":
        assert predicted.shape == (15,) and state is not None
        assert abs(np.mean(predicted) - state["mean"]) < 3 * state["scale"]  # unscaled
    else:
        assert predicted.shape == (15, 3)
        np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-9)
    estimator.save(fitted.model, str(tmp_path))
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(
        estimator.predict(loaded, data.x_validation, kind, n_classes, state), predicted,
        rtol=1e-5)


def test_arguments_are_routed_by_name():
    arguments = builder_arguments(dynamic_model)
    assert arguments.names == ("X", "y", "loss", "layers") and not arguments.var_keyword
    assert arguments.required == ("X", "y", "loss")
    ctx = context("classification", 3)
    kwargs = route(dynamic_model, {"layers": [4], "epochs": 3}, ctx)
    assert set(kwargs) == {"X", "y", "loss", "layers"}
    assert kwargs["loss"] == "categorical_crossentropy" and kwargs["y"].shape == (15, 3)
    kwargs = route(scikeras_style, {"model__units": 5, "learning_rate": 0.1}, ctx)
    assert kwargs["units"] == 5 and "learning_rate" not in kwargs  # for training
    meta = kwargs["meta"]
    assert meta["n_features_in_"] == 3 and meta["n_outputs_"] == 3
    assert meta["classes_"] == [0, 1, 2] and meta["target_type_"] == "multiclass"

    def everything(input_shape, input_dim, n_features, n_classes, n_outputs, **kwargs):
        return kwargs

    kwargs = route(everything, {"units": 2, "epochs": 3}, ctx)
    assert kwargs == {"units": 2, "input_shape": (3,), "input_dim": 3, "n_features": 3,
                      "n_classes": 3, "n_outputs": 3}
    assert route(compiles_with, {"learning_rate": 0.5}, ctx) == {"learning_rate": 0.5}


def test_a_builder_that_compiles_gets_the_optimizer_parameters_it_names():
    model = build(compiles_with, spec(compiles_with, learning_rate=0.05), context(), 0)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_an_uncompiled_model_is_compiled_from_the_spec():
    config = spec(uncompiled, optimizer="sgd", learning_rate=0.07, momentum=0.5)
    model = build(uncompiled, config, context(), 0)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.07)
    assert float(model.optimizer.momentum) == pytest.approx(0.5)
    assert model.loss == "mean_squared_error"
    logits = build(scikeras_style, spec(scikeras_style, "classification", 3),
                   context("classification", 3), 0)
    assert loss_form(logits, "multiclass", 3, 3) == LossForm("categorical_crossentropy",
                                                             "one_hot", True, 3)


def test_a_compiled_builder_refuses_optimizer_parameters_it_does_not_take():
    with pytest.raises(FoldwiseError, match="the builder compiles its own optimizer; make "
                                            "learning_rate an argument of closes_over_input_dim"):
        build(closes_over_input_dim, spec(closes_over_input_dim, learning_rate=0.1),
              context(), 0)
    with pytest.raises(FoldwiseError, match="compiles its own loss; make loss an argument"):
        build(closes_over_input_dim, spec(closes_over_input_dim, loss="mae"), context(), 0)


# ----- references: a file, a module, a notebook ----------------------------------------------
MODELS_PY = """
import keras

def create_model(units=4):
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(units),
                             keras.layers.Dense(1)])

def broken(units=4):
    layers = [keras.layers.Dense(units)]
    return layers[3]

def not_a_model():
    return {"layers": 2}

create_modle_typo = 3
"""


def test_a_file_reference_carries_the_source_and_loads_once(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS_PY)
    reference = builder_reference(f"{path}:create_model")
    assert "module" not in reference and reference["source"] == MODELS_PY
    assert reference["file"] == "models.py" and json.loads(json.dumps(reference)) == reference
    first, again = load_builder(reference), load_builder(json.loads(json.dumps(reference)))
    assert first is again and first.__module__.startswith("foldwise_builder_")
    # The loaded function refers back to the same shipped code.
    assert builder_reference(first) == reference
    other = builder_reference(f"{path}:not_a_model")
    assert other["sha256"] == reference["sha256"]  # same module, another function
    assert config_id(spec(first)) != config_id(spec(load_builder(other)))


def test_a_module_reference_is_imported(tmp_path, monkeypatch):
    (tmp_path / "user_models_for_foldwise.py").write_text(MODELS_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    reference = builder_reference("user_models_for_foldwise:create_model")
    assert reference["module"] == "user_models_for_foldwise" and "source" not in reference
    fn = load_builder(reference)
    assert fn.__module__ == "user_models_for_foldwise"
    # the same function handed over as a callable: not installed, so its text travels
    shipped = builder_reference(fn)
    assert "module" not in shipped and shipped["source"] == MODELS_PY


NOTEBOOK_CELL = """
def helper(units):
    return keras.layers.Dense(units, name="hidden")

def create_model():
    return keras.Sequential([keras.Input((3,)), helper(width), keras.layers.Dense(1)])
"""


def test_a_notebook_function_travels_with_what_it_uses():
    # As IPython runs a cell: compiled under a made-up file name kept in linecache.
    filename = "<ipython-input-7-foldwise>"
    linecache.cache[filename] = (len(NOTEBOOK_CELL), None, NOTEBOOK_CELL.splitlines(True),
                                 filename)
    notebook = {"__name__": "__main__", "keras": keras, "np": np, "width": 5,
                "data": pd.DataFrame({"a": [1]})}
    exec(compile(NOTEBOOK_CELL, filename, "exec"), notebook)
    reference = builder_reference(notebook["create_model"])
    assert "module" not in reference and reference["file"] == "<notebook>"
    assert "import keras\nwidth = 5\n" in reference["source"]
    assert "numpy" not in reference["source"] and "data =" not in reference["source"]
    model = load_builder(reference)()
    assert model.get_layer("hidden").units == 5

    notebook["create_model"].__globals__["width"] = np.ones(3)  # cannot travel: said so
    with pytest.raises(FoldwiseError, match=r"uses the global 'width', a ndarray .* cannot "
                                            r"travel with the run"):
        builder_reference(notebook["create_model"])


# ----- custom layers, embeddings -------------------------------------------------------------
CUSTOM_LAYER_PY = """
import keras


@keras.saving.register_keras_serializable(package="foldwise_test")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def create_model(input_dim, factor=0.5):
    inputs = keras.Input((input_dim,))
    hidden = Scale(factor)(keras.layers.Dense(4, activation="relu")(inputs))
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))
"""


def test_a_custom_registered_layer_reloads_safely_after_the_builder_loads(tmp_path):
    path = tmp_path / "custom_layers.py"
    path.write_text(CUSTOM_LAYER_PY)
    reference = builder_reference(f"{path}:create_model")
    data = fold("regression")
    config = normalize_spec({"estimator": "keras_builder", "builder": reference, "epochs": 1,
                             "factor": 0.25}, "regression")
    estimator = get_estimator("keras_builder")
    state = estimator.target_scaling(data.y_train, "regression", config)
    fitted = estimator.fit(data, "regression", None, config, 0, state, None)
    estimator.save(fitted.model, str(tmp_path))
    expected = fitted.model.predict(data.x_validation, verbose=0)
    np.save(tmp_path / "x.npy", data.x_validation)
    np.save(tmp_path / "expected.npy", expected)
    (tmp_path / "reference.json").write_text(json.dumps(reference))
    # A fresh process, as a serving step: the model loads once the builder's module does.
    script = textwrap.dedent(f"""
        import json, numpy as np, keras
        from foldwise.components.core.models.builder_code import load_builder
        folder = {str(tmp_path)!r}
        try:
            keras.saving.load_model(folder + "/model.keras", safe_mode=True)
            print("loaded without the builder")
        except Exception:
            pass
        load_builder(json.load(open(folder + "/reference.json")))
        model = keras.saving.load_model(folder + "/model.keras", safe_mode=True)
        assert type(model.layers[2]).__name__ == "Scale", model.layers
        np.testing.assert_allclose(model.predict(np.load(folder + "/x.npy"), verbose=0),
                                   np.load(folder + "/expected.npy"), rtol=1e-6)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
                          timeout=300)
    assert done.stdout.strip().splitlines() == ["ok"], done.stderr[-2000:]


def embedding_per_categorical(meta, X, size=2):
    inputs = keras.Input((X.shape[1],))
    parts = []
    for indices in meta["raw_columns"].values():
        columns = inputs[:, indices[0]:indices[-1] + 1]
        if len(indices) == 1:
            parts.append(columns)
        else:  # one-hot indicators → category index → embedding
            category = keras.ops.argmax(columns, axis=1)
            parts.append(keras.layers.Embedding(len(indices), size)(category))
    hidden = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()(parts))
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def test_a_builder_embeds_each_categorical_column_from_meta_raw_columns():
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], 40)
    table = pd.DataFrame({"size": rng.normal(size=40),
                          **{f"colour={c}": (colour == c).astype("float32")
                             for c in ["blue", "green", "red"]},
                          "y": rng.normal(size=40), ROW_COLUMN: np.arange(40),
                          FOLD_COLUMN: np.arange(40) % 2})
    features = ["size", "colour=blue", "colour=green", "colour=red"]
    schema = {"numeric": ["size"], "categorical": ["colour"], "classes": None}
    data = split_fold(table, 0, "y", features, schema)
    assert data.raw_columns == {"size": [0], "colour": [1, 2, 3]}
    config = spec(embedding_per_categorical, size=3)
    result = train_folds([data], task="regression", n_classes=None, specs=[config], seeds=[0])[0]
    assert not result.failed and result.prediction.shape == (20,)
    embedding = [layer for layer in result.model.layers
                 if isinstance(layer, keras.layers.Embedding)]
    assert [(layer.input_dim, layer.output_dim) for layer in embedding] == [(3, 3)]


def test_raw_column_indices_group_indicators_under_their_column():
    features = ["a", "b=x", "c=1", "c=2", "b=y", "c=<missing>"]
    assert raw_column_indices(features, ["c"]) == {"a": [0], "b=x": [1], "c": [2, 3, 5],
                                                   "b=y": [4]}
    assert raw_column_indices(["c=1"], ["c"], numeric=["c=1"]) == {"c=1": [0]}


# ----- fresh per fold ------------------------------------------------------------------------
GLOBAL_MODEL_PY = """
import keras

model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mae", metrics=["mse"])

def create_model():
    return model

cached = []

def caches_its_model():
    if not cached:
        cached.append(keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                                        keras.layers.Dense(1)]))
    return cached[0]
"""


@pytest.mark.parametrize("function", ["create_model", "caches_its_model"])
def test_a_builder_keeping_a_model_still_gives_each_fold_fresh_seeded_weights(function,
                                                                              tmp_path):
    path = tmp_path / "global_model.py"
    path.write_text(GLOBAL_MODEL_PY)
    fn = load_builder(builder_reference(f"{path}:{function}"))
    config = spec(fn)
    ctx = context()
    first = build(fn, config, ctx, seed=3)
    fresh = [w.copy() for w in first.get_weights()]
    first.fit(ctx.x, ctx.y.reshape(-1, 1), epochs=2, verbose=0)  # fold 1 trains
    assert any(not np.allclose(a, b) for a, b in zip(fresh, first.get_weights(), strict=True))
    second = build(fn, config, ctx, seed=3)
    assert second is not first
    for a, b in zip(fresh, second.get_weights(), strict=True):  # same seed, same start
        np.testing.assert_array_equal(a, b)
    assert int(second.optimizer.iterations) == 0  # no optimizer state carried over
    if function == "create_model":  # compiled as the builder compiled it
        assert float(second.optimizer.learning_rate) == pytest.approx(0.01)
        assert second.loss == "mae"
    third = build(fn, config, ctx, seed=4)
    assert any(not np.array_equal(a, b)
               for a, b in zip(fresh, third.get_weights(), strict=True))


# ----- targets in, values out ----------------------------------------------------------------
def dense(units, activation=None, loss="mse"):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units,
                                                                    activation=activation)])
    model.compile(optimizer="adam", loss=loss)
    return model


@pytest.mark.parametrize(("loss", "units", "kind", "n_classes", "target", "shape"), [
    ("sparse_categorical_crossentropy", 3, "multiclass", 3, "sparse", (15,)),
    ("categorical_crossentropy", 3, "multiclass", 3, "one_hot", (15, 3)),
    (keras.losses.CategoricalCrossentropy(), 3, "multiclass", 3, "one_hot", (15, 3)),
    ("binary_crossentropy", 1, "binary", 2, "binary", (15, 1)),
    ("categorical_crossentropy", 2, "binary", 2, "one_hot", (15, 2)),
    ("mse", 1, "regression", None, "values", (15, 1)),
])
def test_targets_take_the_form_the_loss_expects(loss, units, kind, n_classes, target, shape):
    y = np.arange(15) % (n_classes or 15)
    form = loss_form(dense(units, loss=loss), kind, n_classes, units)
    assert form.target == target and not form.logits
    state = {"mean": 7.0, "scale": 2.0} if kind == "regression" else None
    targets = form.targets(n_classes, state).loss_targets(y)
    assert targets.shape == shape
    if target == "sparse":
        assert targets.dtype == np.int32 and list(targets[:4]) == [0, 1, 2, 0]
    if target == "values":
        np.testing.assert_allclose(targets[:2, 0], [-3.5, -3.0])


def user_values(raw, form, scaling, n_classes=None):
    return form.targets(n_classes, scaling).user_values(raw)


def test_outputs_come_back_as_user_values():
    sigmoid = user_values(np.array([[0.25], [0.9]]), LossForm("binary_crossentropy", "binary",
                                                               False, 1), None)
    np.testing.assert_allclose(sigmoid, [[0.75, 0.25], [0.1, 0.9]])
    logits = loss_form(dense(3, loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True)), "multiclass", 3, 3)
    assert logits.target == "sparse" and logits.logits
    np.testing.assert_allclose(user_values(np.array([[0.0, 0.0, np.log(2.0)]]), logits, None),
                               [[0.25, 0.25, 0.5]])
    one_logit = LossForm("binary_crossentropy", "binary", True, 1)
    np.testing.assert_allclose(user_values(np.array([[0.0]]), one_logit, None), [[0.5, 0.5]])
    values = user_values(np.array([[1.0], [-1.0]]), LossForm("mse", "values", False, 1),
                         {"mean": 10.0, "scale": 3.0})
    np.testing.assert_allclose(values, [13.0, 7.0])


def test_one_target_form_serves_foldwise_mlp_builders_and_the_serving_layer_alike():
    """The MLP's form equals a builder's of the same loss, and the serving layer answers it."""
    from foldwise.components.core.models.targets import TargetForm
    from foldwise.components.core.serving.serving_model import UserScale

    raw = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], dtype="float32")
    mlp = TargetForm.of_mlp("multiclass", 3, None)
    builder = LossForm("categorical_crossentropy", "one_hot", False, 3).targets(3, None)
    assert mlp == builder
    np.testing.assert_allclose(mlp.user_values(raw), raw / raw.sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(mlp.loss_targets(np.array([2, 0])),
                                  [[0, 0, 1], [1, 0, 0]])
    scaled = TargetForm.of_mlp("regression", None, {"mean": 5.0, "scale": 2.0})
    y = np.array([1.0, 9.0])
    np.testing.assert_allclose(scaled.user_values(scaled.loss_targets(y)), y)
    layer = UserScale(**scaled.serving("regression"))
    np.testing.assert_allclose(np.asarray(layer(np.array([[-2.0], [2.0]], "float32"))),
                               scaled.user_values(np.array([[-2.0], [2.0]])).reshape(-1, 1))
    binary = TargetForm.of_mlp("binary", 2, None)
    served = UserScale(**binary.serving("binary"))(np.array([[0.25]], "float32"))
    np.testing.assert_allclose(np.asarray(served), binary.user_values(np.array([[0.25]])))


# ----- bad input -----------------------------------------------------------------------------
def needs_units(units, input_dim):
    return uncompiled(units)


def returns_a_list():
    return [keras.layers.Dense(1)]


def raises_inside(units=2):
    return {"units": units}["layers"]


def three_units_for_regression():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])


def one_sigmoid_unit(loss="binary_crossentropy"):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss=loss)
    return model


@pytest.mark.parametrize(("model", "message"), [
    ("missing/models.py:create_model", r"model builder file missing/models.py does not exist"),
    ("no_such_module_for_foldwise:create_model",
     r"cannot import the model builder's module 'no_such_module_for_foldwise'.*install it"),
    ("create_model", r"must be 'path/to/file.py:function' or 'package.module:function'"),
    (3, r"model must be a function .* got a int \(3\)"),
    (lambda: None, "must be a function defined at the top of a module"),
])
def test_a_reference_that_cannot_be_found_is_refused(model, message):
    with pytest.raises(FoldwiseError, match=message):
        builder_reference(model)


def test_a_missing_or_uncallable_function_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS_PY)
    with pytest.raises(FoldwiseError, match=r"models.py has no function 'create_modl'; did you "
                                            r"mean 'create_model'"):
        builder_reference(f"{path}:create_modl")
    with pytest.raises(FoldwiseError, match=r"'create_modle_typo' in models.py is a int \(3\), "
                                            "not a function"):
        builder_reference(f"{path}:create_modle_typo")


def test_a_module_raising_on_import_shows_its_message_and_where(tmp_path, monkeypatch):
    (tmp_path / "fails_on_import.py").write_text("import keras\n\nx = 1\nraise "
                                                 "RuntimeError('no GPU here')\n")
    with pytest.raises(FoldwiseError, match=r"fails_on_import.py raised on import: RuntimeError: "
                                            r"no GPU here \(at fails_on_import.py:4\)"):
        builder_reference(f"{tmp_path / 'fails_on_import.py'}:create_model")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FoldwiseError, match=r"module 'fails_on_import' raised on import: "
                                            r"RuntimeError: no GPU here \(at fails_on_import.py:4"):
        builder_reference("fails_on_import:create_model")


def test_a_builder_that_raises_shows_its_message_and_where(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS_PY)
    fn = load_builder(builder_reference(f"{path}:broken"))
    with pytest.raises(FoldwiseError, match=r"the model builder broken raised IndexError: list "
                                            r"index out of range \(at models.py:10\)"):
        build(fn, spec(fn), context(), 0)
    with pytest.raises(FoldwiseError, match=r"raises_inside raised KeyError: 'layers' \(at "
                                            r"test_core_builders.py:\d+\)"):
        build(raises_inside, spec(raises_inside), context(), 0)


@pytest.mark.parametrize(("fn", "task", "n_classes", "params", "message"), [
    (returns_a_list, "regression", None, {},
     r"returns_a_list returned a list \(\[<Dense.*, not a Keras model"),
    (uncompiled, "classification", 3, {},
     r"the model ends in 1 unit but the target has 3 classes"),
    (three_units_for_regression, "regression", None, {},
     "the model ends in 3 units but a regression target needs 1"),
    (one_sigmoid_unit, "classification", 3, {},
     r"loss 'binary_crossentropy' fits two classes but the target has 3"),
    (one_sigmoid_unit, "classification", 2, {"loss": "sparse_categorical_crossentropy"},
     r"the model ends in 1 unit but the target has 2 classes: sparse_categorical_crossentropy "
     r"needs one unit per class; for two classes, one sigmoid unit takes binary_crossentropy"),
    (one_sigmoid_unit, "regression", None, {"loss": "mse"}, None),
])
def test_a_model_that_does_not_fit_the_task_is_refused(fn, task, n_classes, params, message):
    config = spec(fn, task, n_classes, **params)
    ctx = context(task, n_classes)
    if message is None:  # regression with a sigmoid unit: shape fits, nothing to refuse
        build(fn, config, ctx, 0)
        return
    with pytest.raises(FoldwiseError, match=message):
        build(fn, config, ctx, 0)


def test_a_loss_that_does_not_fit_the_target_is_refused():
    with pytest.raises(FoldwiseError, match=r"loss 'categorical_crossentropy' does not fit a "
                                            r"regression target"):
        loss_form(dense(1, loss="categorical_crossentropy"), "regression", None, 1)
    with pytest.raises(FoldwiseError, match=r"loss 'mean_squared_error' does not fit a target "
                                            r"with 3 classes"):
        loss_form(dense(3, "softmax", loss="mse"), "multiclass", 3, 3)
    with pytest.raises(FoldwiseError, match=r"loss 'categorical_crossentropy' does not fit a "
                                            r"regression target"):
        spec(uncompiled, loss="categorical_crossentropy")


def test_parameters_are_checked_against_the_builder_before_anything_runs():
    with pytest.raises(FoldwiseError, match=r"unknown parameter 'unit': neither the model "
                                            r"builder scikeras_style \(it takes meta, units, "
                                            r"dropout\) nor training takes it; did you mean "
                                            r"'units'"):
        check_builder_params(scikeras_style, {"unit": 3})
    with pytest.raises(FoldwiseError, match=r"unknown parameter 'model__dropuot'.*did you mean "
                                            r"'dropout'"):
        spec(scikeras_style, model__dropuot=0.1)
    with pytest.raises(FoldwiseError, match=r"needs_units needs a value for 'units' \(it has "
                                            r"no default\): give it in the grid"):
        spec(needs_units)
    with pytest.raises(FoldwiseError, match="'input_dim' is what foldwise gives the model "
                                            "builder from the data"):
        check_builder_params(needs_units, {"units": 3, "input_dim": 4})
    check_builder_params(needs_units, {"model__units": 3, "epochs": 2, "learning_rate": 0.1})
    check_builder_params(lambda **kwargs: None, {"anything": 1})


def test_a_keras_builder_spec_fills_training_keys_and_keeps_builder_keys():
    config = spec(scikeras_style, model__units=8, dropout=0.0)
    assert config["estimator"] == "keras_builder" and config["model__units"] == 8
    assert {"epochs", "batch_size", "early_stopping", "patience", "validation_fraction",
            "target_scaling", "mixed_precision"} <= set(config)
    assert "optimizer" not in config and "loss" not in config  # only when given
    assert normalize_spec(config, "regression") == config  # normalizing twice changes nothing
    with pytest.raises(FoldwiseError, match="needs its builder"):
        normalize_spec({"estimator": "keras_builder", "units": 3}, "regression")
    with pytest.raises(FoldwiseError, match="must be a JSON value"):
        spec(scikeras_style, units=np.float64)
    for value in (float("inf"), [1.0, float("-inf")], {"scale": float("nan")}):
        with pytest.raises(FoldwiseError, match=r"parameter 'model__units' must be a JSON "
                                                r"value \(finite number"):
            spec(scikeras_style, model__units=value)
    with pytest.raises(FoldwiseError, match="momentum does not apply to optimizer 'adam'"):
        spec(scikeras_style, momentum=0.9)


def test_output_units_refuse_several_outputs():
    inputs = keras.Input((3,))
    two = keras.Model(inputs, [keras.layers.Dense(1)(inputs), keras.layers.Dense(1)(inputs)])
    with pytest.raises(FoldwiseError, match="the model has 2 outputs"):
        output_units(two, np.zeros((2, 3), "float32"))


# ----- end to end through the trial loop -----------------------------------------------------
def test_run_trials_trains_a_keras_builder_configuration_on_every_fold(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 2))
    table = pd.DataFrame({"a": x[:, 0], "b": x[:, 1],
                          "label": np.digitize(x[:, 0] + 0.3 * x[:, 1], [-0.4, 0.4]),
                          ROW_COLUMN: np.arange(48), FOLD_COLUMN: np.arange(48) % 2})
    (tmp_path / "folds").mkdir()
    for k in (0, 1):
        write_fold_table(table, fold_file(tmp_path / "folds", k), k, ["a", "b"])
    schema = {"task": "classification", "target": "label", "classes": ["low", "mid", "high"],
              "numeric": ["a", "b"], "categorical": []}
    params = normalize_spec({"estimator": "keras_builder", "builder": builder_reference(
        takes_input_shape), "epochs": 2, "batch_size": 8}, "classification", 3)
    configs = [{"config_id": config_id(params), "params": params}]
    out = run_trials(str(tmp_path / "folds"), schema, configs, [0, 1], seed=1,
                     model_dir=str(tmp_path / "models"))
    assert [s["fold"] for s in out.summaries] == [0, 1]
    for summary in out.summaries:
        assert summary["fit_error"] == "" and summary["params"]["estimator"] == "keras_builder"
        assert all(math.isfinite(v) for v in summary["scores"].values())
    for k in (0, 1):
        assert (tmp_path / "models" / configs[0]["config_id"] / f"fold-{k}" /
                "model.keras").is_file()
    assert list(out.predictions.columns[-3:]) == ["proba_low", "proba_mid", "proba_high"]


def test_a_builder_that_never_returns_is_stopped_with_a_message(tmp_path, penguins):
    """The check before a run builds each configuration under a time limit."""
    import os
    import time
    from pathlib import Path

    models = tmp_path / "models.py"
    models.write_text("def spins(meta):\n    while True:\n        pass\n")
    data = tmp_path / "p.csv"
    penguins.to_csv(data, index=False)
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "foldwise"), "plan", "cross-validation", "--data",
         str(data), "--target", "species", "--model", f"{models}:spins"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "FOLDWISE_BUILDER_CHECK_SECONDS": "3"})
    assert done.returncode == 2 and time.monotonic() - started < 60
    assert done.stderr.strip().splitlines() == [
        "error: the model builder did not return within 3 s (a loop that never ends, a "
        "download or a lock it waits for?): fix it, or give it longer with "
        "FOLDWISE_BUILDER_CHECK_SECONDS"]


def test_a_keras_layer_error_is_one_line_without_escape_codes(tmp_path, penguins):
    """A hard-coded input shape: Keras' bold, multi-line block becomes its one message."""
    import os
    from pathlib import Path

    models = tmp_path / "models.py"
    models.write_text(
        "import keras\n\n\ndef fixed(meta):\n"
        "    model = keras.Sequential([keras.Input(shape=(2,)),\n"
        "                              keras.layers.Dense(3, activation='softmax')])\n"
        "    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"
        "    return model\n")
    data = tmp_path / "p.csv"
    penguins.to_csv(data, index=False)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "foldwise"), "plan", "cross-validation", "--data",
         str(data), "--target", "species", "--model", f"{models}:fixed"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "FORCE_COLOR": "1"})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "\x1b" not in line and "Arguments received" not in line
    assert line.startswith("error: the model cannot take the fold's 11 model-ready input "
                           "columns: ValueError: Input 0 with name")
    assert "expected axis -1 of input shape to have value 2, but received input with shape " \
           "(1, 11)" in line
