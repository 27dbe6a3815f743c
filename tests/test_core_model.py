import sys
from pathlib import Path

import numpy as np
import pytest

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.keras_model import (
    ACTIVATIONS,
    BINARY_LOSSES,
    MULTICLASS_LOSSES,
    OPTIMIZERS,
    REGRESSION_LOSSES,
    build_model,
)
from foldwise.components.core.models.spec import config_id, normalize_spec

sys.path.insert(0, str(Path(__file__).parent))


def test_defaults_are_filled_and_only_the_optimizers_own_hyperparameters_kept():
    spec = normalize_spec({"optimizer": "sgd", "momentum": 0.9}, "regression")
    assert spec["optimizer"] == "sgd" and spec["momentum"] == 0.9
    assert spec["learning_rate"] == 0.01  # Keras' SGD default
    assert "beta_1" not in spec and spec["loss"] == "mean_squared_error"
    assert normalize_spec({}, "classification", 2)["loss"] == "binary_crossentropy"
    assert normalize_spec({}, "classification", 3)["loss"] == "categorical_crossentropy"


def test_whole_floats_from_kfp_json_are_accepted_as_integers():
    spec = normalize_spec({"epochs": 3.0, "batch_size": 16.0, "hidden_units": [8.0, 4.0]},
                          "regression")
    assert (spec["epochs"], spec["batch_size"], spec["hidden_units"]) == (3, 16, [8, 4])
    assert isinstance(spec["epochs"], int)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"optimizer": "adamm"}, r"unknown optimizer 'adamm'; did you mean 'adam'"),
        ({"activation": "rellu"}, r"unknown activation 'rellu'; did you mean 'relu'"),
        ({"loss": "mean_squared_eror"}, r"unknown loss 'mean_squared_eror'; did you mean"),
        ({"loss": "categorical_crossentropy"}, r"does not fit a regression target"),
        ({"hidden_units": [64, 0]},
         r"hidden_units must be a positive whole number, got 0 in \[64, 0\]"),
        ({"hidden_units": [-3]}, r"hidden_units must be a positive whole number, got -3"),
        ({"hidden_units": 64}, r"hidden_units must be a list"),
        ({"epochs": 0}, r"epochs must be a positive whole number, got 0"),
        ({"epochs": 2.5}, r"epochs must be a positive whole number, got 2.5"),
        ({"batch_size": -1}, r"batch_size must be a positive whole number"),
        ({"learning_rate": 0}, r"learning_rate must be in \(0.0, inf\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0.0, 1.0\)"),
        # every number of a grid is finite and in range, however YAML wrote it (.inf, 1e400)
        ({"learning_rate": float("inf")}, r"learning_rate must be a finite number, got inf"),
        ({"l2": float("inf")}, r"l2 must be a finite number, got inf"),
        ({"beta_1": float("-inf")}, r"beta_1 must be a finite number, got -inf"),
        ({"learning_rate": float("nan")}, r"learning_rate must be a number, got nan"),
        ({"epochs": float("inf")}, r"epochs must be a positive whole number, got inf"),
        ({"epochs": 1e12}, r"epochs must be at most 1,000,000, got 1e\+12"),
        ({"hidden_units": [1e30]}, r"hidden_units must be at most 65,536, got 1e\+30"),
        ({"batch_size": 2**40}, r"batch_size must be at most 2,147,483,647"),
        ({"beta_1": 0.9, "optimizer": "sgd"},
         r"beta_1 does not apply to optimizer 'sgd', which takes learning_rate, momentum"),
        ({"momentum": 0.9}, r"momentum does not apply to optimizer 'adam'.*sgd, rmsprop"),
        ({"units": [3]}, r"unknown model parameter 'units'"),
        ({"early_stopping": "yes"}, r"early_stopping must be true or false"),
        ({"loss": "no_such_module_xyz:f"}, r"cannot import module 'no_such_module_xyz'"),
        ({"loss": "helpers.custom_losses:nothing"}, r"has no function 'nothing'"),
        ({"estimator": "xgboost"}, r"unknown estimator 'xgboost'"),
        ({"estimator": "sklearn_mlp", "dropout": 0.1},
         r"dropout does not apply to the sklearn_mlp baseline"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(spec, match):
    with pytest.raises(FoldwiseError, match=match):
        normalize_spec(spec, "regression")


def test_multiclass_refuses_binary_loss():
    with pytest.raises(FoldwiseError, match="does not fit a multiclass target"):
        normalize_spec({"loss": "binary_crossentropy"}, "classification", 3)


def test_config_id_is_stable_and_distinguishes_configs():
    a = normalize_spec({"learning_rate": 0.01}, "regression")
    assert config_id(a) == config_id(dict(reversed(list(a.items()))))
    assert config_id(a) != config_id(normalize_spec({"learning_rate": 0.02}, "regression"))


def test_every_listed_name_is_known_to_keras():
    import keras

    for name in ACTIVATIONS:
        keras.activations.get(name)
    for name in REGRESSION_LOSSES + BINARY_LOSSES + MULTICLASS_LOSSES:
        keras.losses.get(name)
    for name, params in OPTIMIZERS.items():
        optimizer = keras.optimizers.get(name)
        for key, default in params.items():
            assert optimizer.get_config()[key] == pytest.approx(default), (name, key)


@pytest.mark.parametrize(
    ("task", "n_classes", "units", "activation", "loss"),
    [("regression", None, 1, "linear", "mean_squared_error"),
     ("classification", 2, 1, "sigmoid", "binary_crossentropy"),
     ("classification", 3, 3, "softmax", "categorical_crossentropy")],
)
def test_output_layer_and_loss_follow_the_task(task, n_classes, units, activation, loss):
    spec = normalize_spec({"hidden_units": [5, 4], "dropout": 0.1, "l2": 0.01}, task, n_classes)
    model = build_model(spec, 7, task, n_classes)
    last = model.layers[-1]
    assert last.units == units and last.activation.__name__ == activation
    assert model.loss == loss
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [layer.units for layer in dense] == [5, 4, units]
    assert dense[0].kernel_regularizer is not None
    assert model.predict(np.zeros((2, 7), "float32"), verbose=0).shape == (2, units)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_optimizer_hyperparameters_reach_keras(name):
    first = next(iter(OPTIMIZERS[name]))
    values = {"optimizer": name, "learning_rate": 0.0123}
    if first != "learning_rate":
        values[first] = 0.5
    spec = normalize_spec(values, "regression")
    config = build_model(spec, 3, "regression", None).optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(0.0123)
    for key in OPTIMIZERS[name]:
        assert config[key] == pytest.approx(spec[key])


def test_custom_loss_by_module_and_function():
    spec = normalize_spec({"loss": "helpers.custom_losses:scaled_mae"}, "regression")
    model = build_model(spec, 2, "regression", None)
    loss = model.compute_loss(x=None, y=np.ones((4, 1), "float32"),
                              y_pred=np.zeros((4, 1), "float32"))
    assert float(loss) == pytest.approx(2.0)
