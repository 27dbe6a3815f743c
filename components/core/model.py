"""A Keras model from a JSON-serialisable spec, validated before anything is trained.

Validation needs no TensorFlow import (the names below are checked against Keras by a test),
so a command line can refuse a bad spec in milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import numbers
from typing import Any

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.table import suggest

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

# Every model option's default, from the option table (optimizer hyperparameters: above).
MODEL_DEFAULTS: dict[str, Any] = {
    name: default for name, default in options.defaults(options.MODEL).items()
    if name not in OPTIMIZER_PARAMS
}
TARGET_SCALINGS = options.choices("target_scaling")
SPEC_KEYS = sorted([*MODEL_DEFAULTS, *OPTIMIZER_PARAMS])
ESTIMATORS = options.choices("estimator")
# The estimators whose best configuration is refitted and exported (Keras models).
# The scikit-learn MLP baseline: its parameters, and Keras activations it has a twin for.
MLP_KEYS = ("estimator", "hidden_units", "activation", "l2", "learning_rate", "beta_1",
            "beta_2", "epsilon", "epochs", "batch_size", "early_stopping", "patience",
            "validation_fraction", "target_scaling")
MLP_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "linear": "identity"}


def output_kind(task: str, n_classes: int | None) -> str:
    """``regression``, ``binary`` or ``multiclass``."""
    if task == "regression":
        return "regression"
    return "binary" if n_classes == 2 else "multiclass"


def normalize_spec(spec: dict, task: str, n_classes: int | None = None) -> dict:
    """Check a model spec and fill in defaults.

    Args:
        spec: Any subset of :data:`SPEC_KEYS`; optimizer hyperparameters must belong to the
            chosen optimizer. A ``keras_builder`` spec (a user's own model) holds its builder
            reference and parameters instead
            (:func:`~foldwise.components.core.builders.normalize_builder_spec`).
        task: ``classification`` or ``regression``.
        n_classes: Number of classes (classification), to check the loss fits the output.

    Returns:
        The complete spec: every model key, and the chosen optimizer's hyperparameters only.

    Raises:
        FoldwiseError: Unknown key or name (with a suggestion), a value out of range, or a
            hyperparameter that does not apply to the chosen optimizer.
    """
    role = _role(spec)
    if role == "user":  # a user's builder: core.builders checks it
        from foldwise.components.core.builders import normalize_builder_spec

        return normalize_builder_spec(spec, task, n_classes)
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        key = unknown[0]
        raise FoldwiseError(
            f"unknown model parameter {key!r}{suggest(key, SPEC_KEYS)} "
            f"(known: {', '.join(SPEC_KEYS)})"
        )
    _check_name("estimator", spec.get("estimator", "keras"), ESTIMATORS)
    if role == "baseline":
        return _normalize_mlp_spec(spec, task, n_classes)
    full = {**MODEL_DEFAULTS, **{k: v for k, v in spec.items() if k in MODEL_DEFAULTS}}
    optimizer = full["optimizer"]
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise FoldwiseError(
            f"unknown optimizer {optimizer!r}{suggest(str(optimizer), list(OPTIMIZERS))} "
            f"(known: {', '.join(OPTIMIZERS)})"
        )
    optimizer = full["optimizer"] = optimizer.lower()
    accepted = OPTIMIZERS[optimizer]
    for key in spec:
        if key in OPTIMIZER_PARAMS and key not in accepted:
            users = [name for name, params in OPTIMIZERS.items() if key in params]
            raise FoldwiseError(
                f"{key} does not apply to optimizer {optimizer!r}, which takes "
                f"{', '.join(accepted)}; {key} belongs to {', '.join(users)}"
            )
    for key, default in accepted.items():
        full[key] = spec.get(key, default)

    full["hidden_units"] = _as_units(full["hidden_units"])
    _check_name("activation", full["activation"], ACTIVATIONS)
    for key in ("dropout", "l2", "validation_fraction"):
        options.check_bounded(key, full[key])
    for key in ("epochs", "batch_size", "patience"):
        full[key] = _as_positive_int(key, full[key])
    for key in ("early_stopping", "mixed_precision"):
        if not isinstance(full[key], bool):
            raise FoldwiseError(f"{key} must be true or false, got {full[key]!r}")
    _check_name("target_scaling", full["target_scaling"], TARGET_SCALINGS)
    for key in accepted:  # the optimizer's own: learning rate, moments, decay, ...
        options.check_bounded(key, full[key])
    for key in ("dropout", "l2", "validation_fraction", *accepted):
        full[key] = float(full[key])
    full["loss"] = _check_loss(full["loss"], task, n_classes)
    return full


def _role(spec: dict) -> str:
    """The estimator's role (``core.estimators``); ``mlp`` for a name it does not know."""
    from foldwise.components.core.estimators import estimator_names, role_of

    name = spec.get("estimator") or "keras"
    return role_of(spec) if name in estimator_names() else "mlp"


def _normalize_mlp_spec(spec: dict, task: str, n_classes: int | None) -> dict:
    """Check and complete the spec of a scikit-learn ``MLPRegressor``/``MLPClassifier``."""
    foreign = [k for k in spec if k not in MLP_KEYS]
    if foreign:
        raise FoldwiseError(
            f"{foreign[0]} does not apply to the sklearn_mlp baseline, which takes "
            f"{', '.join(MLP_KEYS[1:])}")
    # Checked as the Keras twin with Adam (scikit-learn's solver), which fills the defaults.
    keras_like = normalize_spec({k: v for k, v in spec.items() if k != "estimator"}, task,
                                n_classes)
    if keras_like["activation"] not in MLP_ACTIVATIONS:
        raise FoldwiseError(
            f"activation {keras_like['activation']!r} has no scikit-learn MLP counterpart; the "
            f"sklearn_mlp baseline takes {', '.join(MLP_ACTIVATIONS)}")
    return {**{k: keras_like[k] for k in MLP_KEYS if k in keras_like},
            "estimator": _baseline_name()}


def baseline_for(params: dict) -> dict:
    """The scikit-learn MLP matching a Keras configuration.

    Same hidden layers, activation, L2 penalty, learning rate, batch size, epochs, early
    stopping and target scaling; scikit-learn's Adam solver (with the configuration's Adam
    moments where it has them).
    """
    return {**{k: params[k] for k in MLP_KEYS if k in params}, "estimator": _baseline_name()}


def _baseline_name() -> str:
    """The registered baseline estimator's name (``core.estimators``)."""
    from foldwise.components.core.estimators import named

    (name,) = named("baseline")
    return name


def _as_units(units: Any) -> list[int]:
    if not isinstance(units, (list, tuple)):
        raise FoldwiseError(f"hidden_units must be a list of layer sizes such as [64, 32], got "
                            f"{units!r}")
    return [_as_positive_int("hidden_units", value, context=f" in {list(units)}")
            for value in units]


def _check_name(key: str, value: Any, known: tuple[str, ...]) -> None:
    if value not in known:
        raise FoldwiseError(
            f"unknown {key} {value!r}{suggest(str(value), list(known))} (known: "
            f"{', '.join(known)})"
        )


def _as_positive_int(key: str, value: Any, context: str = "") -> int:
    """A positive whole number; whole floats (``32.0``, as KFP's JSON hands them) are accepted."""
    whole = isinstance(value, numbers.Integral) or (
        isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value <= 0:
        raise FoldwiseError(f"{key} must be a positive whole number, got {value!r}{context}")
    return int(value)


def _check_loss(loss: Any, task: str, n_classes: int | None) -> str:
    kind = output_kind(task, n_classes)
    if loss is None:
        return DEFAULT_LOSS[kind]
    if not isinstance(loss, str):
        raise FoldwiseError(f"loss must be a name, got {loss!r}")
    if ":" in loss:
        resolve_custom_loss(loss)
        return loss
    allowed = {"regression": REGRESSION_LOSSES, "binary": BINARY_LOSSES + REGRESSION_LOSSES,
               "multiclass": MULTICLASS_LOSSES}[kind]
    every = REGRESSION_LOSSES + BINARY_LOSSES + MULTICLASS_LOSSES
    if loss in every and loss not in allowed:
        raise FoldwiseError(
            f"loss {loss!r} does not fit a {kind} target; use one of {', '.join(allowed)}"
        )
    if loss not in allowed:
        raise FoldwiseError(
            f"unknown loss {loss!r}{suggest(loss, list(allowed))}: use a Keras loss name "
            f"({', '.join(allowed)}) or a custom loss as 'module:function'"
        )
    return loss


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


def config_id(params: dict) -> str:
    """A stable identifier of a configuration: a hash of its canonical JSON.

    A user's builder counts by its reference (function, file or module, and the digest of
    its code), not by the text it carries: the same whether or not the source rides along.
    """
    if isinstance(params.get("builder"), dict):
        params = {**params, "builder": {k: v for k, v in params["builder"].items()
                                        if k != "source"}}
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return "cfg-" + hashlib.sha256(canonical.encode()).hexdigest()[:10]


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
