"""A configuration's checks and normal form, for every estimator, before anything trains.

:func:`normalize_spec` checks a JSON spec and fills its defaults from the option table: for
foldwise's Keras MLP, the scikit-learn MLP baseline and a user's builder
(:func:`normalize_builder_spec`) alike; :func:`config_id` names a configuration. Validation
needs no TensorFlow or Keras import (the Keras names it checks against live in
``models.keras_model``, checked against Keras by a test), so a command line can refuse a bad
spec in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from typing import Any

from foldwise.components.core import options
from foldwise.components.core.data.table import suggest
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.builder_code import (
    describe_value,
    importable,
    json_value,
    load_builder,
)
from foldwise.components.core.models.builder_keras import (
    COMPILE_KEYS,
    ESTIMATOR,
    FIT_KEYS,
    RESERVED,
    SPARSE_LOSSES,
    TRAINING_KEYS,
    check_builder_params,
)
from foldwise.components.core.models.estimators import estimator_names, named, role_of
from foldwise.components.core.models.keras_model import (
    ACTIVATIONS,
    BINARY_LOSSES,
    DEFAULT_LOSS,
    MLP_ACTIVATIONS,
    MULTICLASS_LOSSES,
    OPTIMIZER_PARAMS,
    OPTIMIZERS,
    REGRESSION_LOSSES,
    output_kind,
    resolve_custom_loss,
)

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


def normalize_spec(spec: dict, task: str, n_classes: int | None = None) -> dict:
    """Check a model spec and fill in defaults.

    Args:
        spec: Any subset of :data:`SPEC_KEYS`; optimizer hyperparameters must belong to the
            chosen optimizer. A ``keras_builder`` spec (a user's own model) holds its builder
            reference and parameters instead
            (:func:`~foldwise.components.core.models.spec.normalize_builder_spec`).
        task: ``classification`` or ``regression``.
        n_classes: Number of classes (classification), to check the loss fits the output.

    Returns:
        The complete spec: every model key, and the chosen optimizer's hyperparameters only.

    Raises:
        FoldwiseError: Unknown key or name (with a suggestion), a value out of range, or a
            hyperparameter that does not apply to the chosen optimizer.
    """
    role = _role(spec)
    if role == "user":  # a user's builder: core.models.builder_keras checks it

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
    """The estimator's role (``core.models.estimators``); ``mlp`` for a name it does not know."""
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
    """The registered baseline estimator's name (``core.models.estimators``)."""
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


# The largest whole numbers a configuration may hold: beyond them a model cannot be built or
# a run cannot end (a width of 1e30 from a grid, epochs of 1e12), however the numbers are
# written.
MOST = {"hidden_units": 65_536, "epochs": 1_000_000, "batch_size": 2**31 - 1,
        "patience": 1_000_000}


def _as_positive_int(key: str, value: Any, context: str = "") -> int:
    """A positive whole number; whole floats (``32.0``, as KFP's JSON hands them) are accepted."""
    whole = isinstance(value, numbers.Integral) or (
        isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value <= 0:
        raise FoldwiseError(f"{key} must be a positive whole number, got {value!r}{context}")
    if key in MOST and value > MOST[key]:
        raise FoldwiseError(f"{key} must be at most {MOST[key]:,}, got {value:g}{context}")
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


# ----- a keras_builder spec -------------------------------------------------------------------
def normalize_builder_spec(spec: dict, task: str, n_classes: int | None = None) -> dict:
    """Check and complete a ``keras_builder`` configuration.

    The training options foldwise knows are normalized as for its own model: the fit options
    (:data:`FIT_KEYS`) filled with their defaults, the compile options (optimizer, its
    hyperparameters, loss) kept only when given, so a builder's own defaults and compilation
    stand. Builder parameters stay as given (JSON values). When the builder can be loaded
    here, the parameters are checked against its arguments (:func:`check_builder_params`).

    Raises:
        FoldwiseError: No builder reference, a bad training option, a value that is not JSON,
            or a parameter the builder cannot take.
    """
    reference = spec.get("builder")
    if not isinstance(reference, dict) or not isinstance(reference.get("function"), str) \
            or "sha256" not in reference:
        raise FoldwiseError("a keras_builder configuration needs its builder: the reference "
                            "builder_reference(model) gives, under 'builder'")
    training = {key: spec[key] for key in TRAINING_KEYS if key in spec}
    checked = normalize_spec({k: v for k, v in training.items() if k != "loss"}, task,
                             n_classes)
    full: dict = {"estimator": ESTIMATOR, "builder": dict(reference)}
    full.update({key: checked[key] for key in FIT_KEYS})
    full.update({key: checked[key] for key in COMPILE_KEYS if key in training and key != "loss"})
    if "loss" in training:
        loss = training["loss"]
        sparse = loss in SPARSE_LOSSES and task == "classification"
        binary_as_two = loss in MULTICLASS_LOSSES and output_kind(task, n_classes) == "binary"
        full["loss"] = loss if sparse or binary_as_two else _check_loss(loss, task, n_classes)
    for key, value in spec.items():
        if key in TRAINING_KEYS or key in RESERVED:
            continue
        if not json_value(list(value) if isinstance(value, tuple) else value):
            raise FoldwiseError(f"model builder parameter {key!r} must be a JSON value "
                                f"(finite number, text, true/false, list, mapping), got "
                                f"{describe_value(value)}")
        full[key] = _whole_numbers(list(value) if isinstance(value, tuple) else value)
    if reference.get("source") is not None or importable(reference.get("module") or ""):
        check_builder_params(load_builder(reference), full)
    return full


def _whole_numbers(value: Any) -> Any:
    """Whole floats as ints, inside lists and mappings too.

    KFP hands every number of a parameter over as a float (protobuf values): a builder's
    ``units=32`` must not arrive as ``32.0``. Normalizing in every process alike keeps a
    configuration's id the same before and after it travels.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value

