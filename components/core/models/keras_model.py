"""The Keras side of a model spec.

The names foldwise checks specs against (activations, losses, optimizers), the built-in Keras
MLP, the output kind of a learning problem, and seeding. Building needs Keras; the names do
not.
"""

from __future__ import annotations

import importlib

import numpy as np

from foldwise.components.core.errors import FoldwiseError

ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "glu", "hard_sigmoid", "hard_silu", "hard_swish",
    "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "mish", "relu", "relu6", "selu",
    "sigmoid", "silu", "softplus", "softsign", "sparse_plus", "squareplus", "swish", "tanh",
    "tanh_shrink",
)

REGRESSION_LOSSES = (
    "mean_squared_error", "mse", "mean_absolute_error", "mae", "huber", "log_cosh",
    "mean_squared_logarithmic_error", "msle", "mean_absolute_percentage_error", "mape",
    "poisson",
)

BINARY_LOSSES = ("binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge")
MULTICLASS_LOSSES = (
    "categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge",
    "kl_divergence",
)

DEFAULT_LOSS = {"regression": "mean_squared_error", "binary": "binary_crossentropy",
                "multiclass": "categorical_crossentropy"}
# Each optimizer's tunable hyperparameters with Keras' own defaults.
OPTIMIZERS: dict[str, dict[str, float]] = {
    "adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "adamw": {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999,
              "epsilon": 1e-7},
    "sgd": {"learning_rate": 0.01, "momentum": 0.0},
    "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7},
}

OPTIMIZER_PARAMS = sorted({name for params in OPTIMIZERS.values() for name in params})
MLP_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "linear": "identity"}


def output_kind(task: str, n_classes: int | None) -> str:
    """``regression``, ``binary`` or ``multiclass``."""
    if task == "regression":
        return "regression"
    return "binary" if n_classes == 2 else "multiclass"


def resolve_custom_loss(reference: str):
    """Import a custom loss given as ``module:function`` (e.g. ``my_losses:pinball``).

    The module must be importable where the step runs (installed in the image).
    """
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise FoldwiseError(
            f"custom loss {reference!r}: cannot import module {module_name!r} ({err}); install "
            "it where the pipeline runs"
        ) from err
    function = getattr(module, attribute, None)
    if not callable(function):
        raise FoldwiseError(
            f"custom loss {reference!r}: module {module_name!r} has no function {attribute!r}"
        )
    return function


def build_model(spec: dict, n_features: int, task: str, n_classes: int | None):
    """Build and compile a fresh Keras model from a normalized spec.

    Output layer and loss follow the task: linear + MSE for regression, sigmoid + binary
    cross-entropy for two classes, softmax + categorical cross-entropy (one-hot labels) for
    more, unless the spec names another loss.
    """
    import keras

    kind = output_kind(task, n_classes)
    regularizer = keras.regularizers.L2(spec["l2"]) if spec["l2"] > 0 else None
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for units in spec["hidden_units"]:
        x = keras.layers.Dense(units, activation=spec["activation"],
                               kernel_regularizer=regularizer)(x)
        if spec["dropout"] > 0:
            x = keras.layers.Dropout(spec["dropout"])(x)
    # The output layer computes in float32 also under mixed precision, for stable losses.
    if kind == "regression":
        outputs = keras.layers.Dense(1, name="prediction", dtype="float32")(x)
    elif kind == "binary":
        outputs = keras.layers.Dense(1, activation="sigmoid", name="probability",
                                     dtype="float32")(x)
    else:
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="probability",
                                     dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    loss = spec["loss"]
    model.compile(optimizer=make_optimizer(spec),
                  loss=resolve_custom_loss(loss) if ":" in loss else loss)
    return model


def make_optimizer(spec: dict):
    """The Keras optimizer named in the spec, with the spec's hyperparameters."""
    import keras

    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
               "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    name = spec["optimizer"]
    return classes[name](**{key: spec[key] for key in OPTIMIZERS[name]})


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend, and ask TensorFlow for deterministic ops.

    Under another backend, what ``keras.utils.set_random_seed`` does except seeding
    TensorFlow, which it would import (seconds) only to seed it.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()
        return
    import random

    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)

