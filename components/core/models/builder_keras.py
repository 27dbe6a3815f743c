"""A user's own Keras model, adapted to Keras: what it takes, how it is called, its loss.

A builder is any function that returns a Keras model, written as users write them for
scikeras, Keras 3's ``SKLearnRegressor`` or by hand::

    def create_model(hidden_units=64): ...          # closes over a global input_dim, compiles
    def create_model(input_shape): ...              # softmax, categorical_crossentropy
    def dynamic_model(X, y, loss, layers=[10]): ... # Keras 3 wrapper convention
    def create_model(meta, units=64, dropout=0.2): ...  # scikeras convention

Its code travels with the configurations (``models.builder_code``: ``builder_reference``,
``load_builder``). Here :func:`check_builder_params` holds a configuration against the
builder's arguments, :func:`route` passes the builder, by name, what it asks for (see
:data:`SUPPLIED`) and :func:`build` calls it for one fold: seeded, always a fresh model,
compiled from the spec when the builder leaves it uncompiled, its output checked against the
task. :func:`loss_form` says in which form targets go in and how outputs come back as user
values. ``models.builder_checks`` tries every configuration before a search.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from foldwise.components.core.data.table import suggest
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.builder_code import (
    callable_name,
    describe_value,
    error_text,
    where_raised,
)
from foldwise.components.core.models.keras_model import (
    BINARY_LOSSES,
    DEFAULT_LOSS,
    MULTICLASS_LOSSES,
    OPTIMIZER_PARAMS,
    OPTIMIZERS,
    REGRESSION_LOSSES,
    make_optimizer,
    output_kind,
    resolve_custom_loss,
    seed_everything,
)
from foldwise.components.core.models.targets import TargetForm

ESTIMATOR = "keras_builder"
# Training options: they go to Keras' fit (FIT_KEYS) or to compiling an uncompiled model
# (COMPILE_KEYS), unless the builder names them as arguments; then it gets them.
FIT_KEYS = ("epochs", "batch_size", "early_stopping", "patience", "validation_fraction",
            "target_scaling", "mixed_precision")
COMPILE_KEYS = ("optimizer", *OPTIMIZER_PARAMS, "loss")
TRAINING_KEYS = (*FIT_KEYS, *COMPILE_KEYS)
# What foldwise supplies from the fold's data to a builder argument of that name.
SUPPLIED = ("meta", "X", "y", "input_shape", "input_dim", "n_features", "n_features_in",
            "n_classes", "n_outputs")
RESERVED = ("estimator", "builder")
MODEL_PREFIX = "model__"  # scikeras' spelling of a builder argument in a grid
SPARSE_LOSSES = ("sparse_categorical_crossentropy",)
HINGE_LOSSES = ("hinge", "squared_hinge", "categorical_hinge")  # outputs are scores
LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
                "msle": "mean_squared_logarithmic_error",
                "mape": "mean_absolute_percentage_error", "kld": "kl_divergence",
                "kullback_leibler_divergence": "kl_divergence", "logcosh": "log_cosh"}
# ----- what a builder takes -------------------------------------------------------------------
@dataclass(frozen=True)
class BuilderArguments:
    """The arguments a builder takes by name.

    Attributes:
        names: Every argument that can be passed by name.
        required: Those without a default.
        var_keyword: Whether it takes ``**kwargs`` (then every builder parameter goes in).
    """

    names: tuple[str, ...]
    required: tuple[str, ...]
    var_keyword: bool


def builder_arguments(fn: Any) -> BuilderArguments:
    """Read a builder's signature.

    Raises:
        FoldwiseError: It has no readable signature, or a required positional-only argument
            (foldwise passes everything by name).
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as err:
        raise FoldwiseError(f"cannot read the arguments of the model builder {callable_name(fn)}: "
                            f"{err}") from err
    names, required, var_keyword = [], [], False
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            var_keyword = True
        elif parameter.kind is parameter.POSITIONAL_ONLY:
            if parameter.default is parameter.empty:
                raise FoldwiseError(
                    f"the model builder {callable_name(fn)} takes {parameter.name!r} by "
                    "position only; "
                    "foldwise passes arguments by name: drop the '/' from its signature")
        elif parameter.kind is not parameter.VAR_POSITIONAL:
            names.append(parameter.name)
            if parameter.default is parameter.empty:
                required.append(parameter.name)
    return BuilderArguments(tuple(names), tuple(required), var_keyword)


def builder_params(params: dict) -> dict:
    """A spec's parameters meant for the builder: not training options, ``model__`` stripped."""
    chosen = {}
    for key, value in params.items():
        if key.startswith(MODEL_PREFIX):
            chosen[key[len(MODEL_PREFIX):]] = value
        elif key not in TRAINING_KEYS and key not in RESERVED:
            chosen[key] = value
    return chosen


def check_builder_params(fn: Any, params: dict) -> None:
    """Refuse, before anything runs, parameters the builder and training cannot use.

    Args:
        fn: The builder.
        params: A configuration: builder parameters (``units`` or ``model__units``) and
            training options (``epochs``, ``learning_rate``...).

    Raises:
        FoldwiseError: A key neither the builder nor training takes (with a suggestion), a
            key foldwise supplies from the data, or a builder argument without a default that
            gets no value.
    """
    arguments = builder_arguments(fn)
    known = [*arguments.names, *TRAINING_KEYS]
    for key in params:
        if key in RESERVED or key in TRAINING_KEYS:
            continue
        name = key[len(MODEL_PREFIX):] if key.startswith(MODEL_PREFIX) else key
        if name in SUPPLIED:
            raise FoldwiseError(
                f"parameter {key!r} is what foldwise gives the model builder from the data; "
                "leave it out of the grid")
        if name not in arguments.names and not arguments.var_keyword:
            takes = ", ".join(arguments.names) or "no arguments"
            raise FoldwiseError(
                f"unknown parameter {key!r}: neither the model builder "
                f"{callable_name(fn)} (it takes "
                f"{takes}) nor training takes it{suggest(name, known)}")
    given = set(builder_params(params)) | set(params)
    for name in arguments.required:
        if name not in given and name not in SUPPLIED and name not in TRAINING_KEYS:
            raise FoldwiseError(
                f"the model builder {callable_name(fn)} needs a value for {name!r} (it has no "
                f"default): give it in the grid or as a fixed parameter"
                f"{suggest(name, list(SUPPLIED))}")


# ----- the fold's data, as a builder sees it --------------------------------------------------
@dataclass(frozen=True)
class BuildContext:
    """The fold's data a builder may ask for.

    Attributes:
        x: The fold's model-ready training features.
        y: The fold's training targets: class indices, or regression values as the model
            learns them (scaled).
        task: ``regression`` or ``classification``.
        n_classes: Number of classes (classification), else ``None``.
        target: The target column's name.
        classes: The class labels, in index order (classification).
        feature_names: The model-ready columns' names, in input order.
        raw_columns: For each raw column, the indices of its model-ready columns (one for a
            number, one per category for a one-hot encoded column: for embeddings).
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    n_classes: int | None = None
    target: str = ""
    classes: list | None = None
    feature_names: list[str] | None = None
    raw_columns: dict[str, list[int]] | None = None

    @property
    def kind(self) -> str:
        """``regression``, ``binary`` or ``multiclass``."""
        return output_kind(self.task, self.n_classes)

    @property
    def n_outputs(self) -> int:
        """Output units foldwise's own model ends in: 1, or one per class (multiclass)."""
        return self.n_classes if self.kind == "multiclass" else 1

    def meta(self) -> dict:
        """The ``meta`` dict of scikeras' convention: ``n_features_in_``, ``n_classes_``..."""
        n_features = int(self.x.shape[1])
        return {
            "n_features_in_": n_features, "n_outputs_": self.n_outputs,
            "n_classes_": self.n_classes,
            "classes_": (list(self.classes) if self.classes is not None else
                         None if self.n_classes is None else list(range(self.n_classes))),
            "task": self.task, "target": self.target,
            "target_type_": {"regression": "continuous"}.get(self.kind, self.kind),
            "feature_names_in_": list(self.feature_names or
                                      [f"x{i}" for i in range(n_features)]),
            "raw_columns": dict(self.raw_columns or
                                {name: [i] for i, name in enumerate(self.feature_names or [])}),
            "X_shape_": tuple(self.x.shape), "y_dtype_": str(self.y.dtype),
        }

    def supplied(self, name: str) -> Any:
        """The value of a :data:`SUPPLIED` argument."""
        n_features = int(self.x.shape[1])
        if name == "meta":
            return self.meta()
        if name == "X":
            return self.x
        if name == "y":  # as Keras' SKLearnClassifier hands it: one-hot
            if self.task == "classification":
                return np.eye(self.n_classes, dtype="float32")[self.y.astype(int)]
            return self.y.astype("float32").reshape(-1, 1)
        if name == "input_shape":
            return (n_features,)
        if name == "n_classes":
            return self.n_classes
        if name == "n_outputs":
            return self.n_outputs
        return n_features  # input_dim, n_features, n_features_in


def route(fn: Any, params: dict, context: BuildContext) -> dict:
    """The keyword arguments to call a builder with.

    The builder parameters it names (``model__units`` as ``units``; all of them when it takes
    ``**kwargs``), the training options it names (a builder that takes ``learning_rate``
    compiles with it; one that takes ``loss`` without a default gets the spec's loss or the
    task's default), and what it asks for among :data:`SUPPLIED`.
    """
    arguments = builder_arguments(fn)
    kwargs = {key: value for key, value in builder_params(params).items()
              if arguments.var_keyword or key in arguments.names}
    for key in TRAINING_KEYS:
        if key in arguments.names and key not in kwargs:
            if key in params:
                kwargs[key] = params[key]
            elif key in arguments.required:
                kwargs[key] = _training_default(key, params, context.kind)
    for name in SUPPLIED:
        if name in arguments.names:
            kwargs[name] = context.supplied(name)
    return kwargs


def _training_default(key: str, params: dict, kind: str) -> Any:
    if key == "loss":
        return DEFAULT_LOSS[kind]
    optimizer = params.get("optimizer", "adam")
    if key == "optimizer":
        return optimizer
    return OPTIMIZERS[optimizer].get(key)


# ----- building one fold's model --------------------------------------------------------------
_HANDED_OUT: weakref.WeakSet = weakref.WeakSet()


def build(fn: Any, params: dict, context: BuildContext, seed: int):
    """A fresh, compiled Keras model from the builder, checked against the task.

    Seeds Keras, calls the builder with :func:`route`'s arguments, and makes sure the model
    is fresh: a model the builder keeps (a global, or one it returned before) is cloned with
    new seeded weights and compiled as it was. A model the builder compiled keeps its
    optimizer, loss and metrics; an uncompiled one is compiled with the spec's optimizer and
    hyperparameters and loss (the task's default unless the spec names one; from logits when
    the model ends in a linear layer).

    Args:
        fn: The builder (:func:`load_builder`).
        params: The configuration (a normalized ``keras_builder`` spec).
        context: The fold's data.
        seed: Seed of the initial weights.

    Raises:
        FoldwiseError: The builder raises (its message and where), returns no Keras model,
            compiles its own optimizer or loss while the spec sets one it does not take, or
            the model's output or loss does not fit the task (see :func:`loss_form`).
    """
    import keras


    seed_everything(seed)
    arguments = builder_arguments(fn)
    kwargs = route(fn, params, context)
    try:
        model = fn(**kwargs)
    except FoldwiseError:
        raise
    except Exception as err:
        raise FoldwiseError(
            f"the model builder {callable_name(fn)} raised {error_text(err)} (at "
            f"{where_raised(err, fn.__code__.co_filename if hasattr(fn, '__code__') else None)})"
        ) from err
    if not isinstance(model, keras.Model):
        raise FoldwiseError(
            f"the model builder {callable_name(fn)} returned {describe_value(model)}, "
            "not a Keras model: "
            "it must return a keras.Model (keras.Sequential([...]) or keras.Model(inputs, "
            "outputs))")
    if model in _HANDED_OUT or _kept_by(fn, model):
        model = _fresh_copy(model, fn)
    _HANDED_OUT.add(model)
    if model.compiled:
        foreign = [key for key in COMPILE_KEYS if key in params and key not in arguments.names]
        if foreign:
            what = "loss" if foreign[0] == "loss" else "optimizer"
            raise FoldwiseError(
                f"the builder compiles its own {what}; make {foreign[0]} an argument of "
                f"{callable_name(fn)} (or leave the model uncompiled for foldwise to compile)")
    else:
        spec = {"optimizer": params.get("optimizer", "adam")}
        spec.update({key: params.get(key, default)
                     for key, default in OPTIMIZERS[spec["optimizer"]].items()})
        model.compile(optimizer=make_optimizer(spec),
                      loss=_foldwise_loss(model, params.get("loss") or
                                          DEFAULT_LOSS[context.kind]))
    loss_form(model, context.kind, context.n_classes, output_units(model, context.x))
    return model


def _foldwise_loss(model, loss: str):
    """The loss foldwise compiles an uncompiled model with.

    A cross-entropy on a model whose last layer is linear takes its outputs as logits
    (``from_logits=True``), as a scikeras builder ending in ``Dense(meta["n_outputs_"])``
    needs; a custom loss is imported from its ``module:function``.
    """
    import keras

    if ":" in loss:
        return resolve_custom_loss(loss)
    classes = {"binary_crossentropy": keras.losses.BinaryCrossentropy,
               "binary_focal_crossentropy": keras.losses.BinaryFocalCrossentropy,
               "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
               "categorical_focal_crossentropy": keras.losses.CategoricalFocalCrossentropy,
               "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy}
    last = model.layers[-1] if model.layers else None
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if loss in classes and activation == "linear":
        return classes[loss](from_logits=True)
    return loss


def _kept_by(fn: Any, model: Any) -> bool:
    """Whether the builder holds ``model`` in a global or closure variable."""
    held = list(getattr(fn, "__globals__", {}).values())
    held += [cell.cell_contents for cell in (getattr(fn, "__closure__", None) or ())
             if _has_contents(cell)]
    return any(value is model for value in held)


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _fresh_copy(model, fn: Any):
    """A clone with new (seeded) weights, compiled as ``model`` was."""
    import keras

    try:
        clone = keras.models.clone_model(model)
    except Exception as err:
        raise FoldwiseError(
            f"the model builder {callable_name(fn)} returned a model it keeps (a global, or one it "
            f"returned before), and that model cannot be cloned ({error_text(err)}): build a "
            "new model inside the function on every call") from err
    if model.compiled and not clone.compiled:
        clone.compile_from_config(model.get_compile_config())
    return clone


def output_units(model, x: np.ndarray) -> int:
    """The width of the model's one output, from a forward pass on one row.

    Raises:
        FoldwiseError: The model has several outputs, or not one row of values per input row.
    """
    import keras

    try:
        out = model(x[:1], training=False)
    except Exception as err:
        raise FoldwiseError(
            f"the model cannot take the fold's {x.shape[1]} model-ready input columns: "
            f"{error_text(err)}") from err
    if isinstance(out, (list, tuple, dict)):
        raise FoldwiseError(f"the model has {len(out)} outputs; foldwise trains models with one "
                            "output (one unit per class, or one value)")
    shape = tuple(keras.ops.shape(out))
    if len(shape) != 2:
        raise FoldwiseError(f"the model's output has shape {shape}; it must be (rows, units): "
                            "end the model in a Dense layer")
    return int(shape[1])


# ----- targets in, user values out ------------------------------------------------------------
@dataclass(frozen=True)
class LossForm:
    """How a compiled model learns and answers.

    Attributes:
        loss: The loss' name (``custom`` for one foldwise does not know).
        target: ``values`` (regression, scaled), ``binary`` (one 0/1 column), ``one_hot``
            or ``sparse`` (integer labels).
        logits: Whether outputs are logits or scores (``from_logits=True``, hinge losses)
            rather than probabilities.
        units: The output layer's width.
    """

    loss: str
    target: str
    logits: bool
    units: int

    def targets(self, n_classes: int | None, scaling: dict | None):
        """The :class:`~foldwise.components.core.models.targets.TargetForm` of this loss."""
        return TargetForm(self.target, n_classes, scaling, self.logits)


def loss_form(model, kind: str, n_classes: int | None, units: int) -> LossForm:
    """The target form a compiled model's loss expects, checked against the task.

    Raises:
        FoldwiseError: The loss does not fit the target (a classification loss on a
            regression target, or the reverse), or the output's width does not fit the task
            ("the model ends in 1 unit but the target has 3 classes").
    """
    loss, logits = _loss_identity(getattr(model, "loss", None))
    family = _loss_family(loss)
    if kind == "regression":
        if family not in ("regression", None):
            raise FoldwiseError(
                f"loss {loss!r} does not fit a regression target; use "
                f"{', '.join(REGRESSION_LOSSES[:4])} or another regression loss")
        if units != 1:
            raise FoldwiseError(f"the model ends in {units} units but a regression target "
                                "needs 1")
        return LossForm(loss, "values", False, units)
    if family == "regression" and kind == "multiclass":
        raise FoldwiseError(
            f"loss {loss!r} does not fit a target with {n_classes} classes; use "
            "categorical_crossentropy (one-hot) or sparse_categorical_crossentropy")
    if family == "binary" and kind == "multiclass" and units == 1:
        raise FoldwiseError(
            f"loss {loss!r} fits two classes but the target has {n_classes}: end the model in "
            f"{n_classes} softmax units with categorical_crossentropy or "
            "sparse_categorical_crossentropy")
    if family in ("sparse", "categorical") and units != n_classes:
        raise FoldwiseError(
            f"the model ends in {units} unit{'s' * (units != 1)} but the target has "
            f"{n_classes} classes: {loss} needs one unit per class"
            + ("; for two classes, one sigmoid unit takes binary_crossentropy"
               if units == 1 else ""))
    if units == 1 and kind == "binary":
        return LossForm(loss, "binary", logits, units)
    if units != n_classes:
        takes = ("1 sigmoid unit or 2 softmax units" if kind == "binary"
                 else f"{n_classes} units (softmax)")
        raise FoldwiseError(
            f"the model ends in {units} unit{'s' * (units != 1)} but the target has "
            f"{n_classes} classes: end it in {takes}")
    return LossForm(loss, "sparse" if family == "sparse" else "one_hot", logits, units)


def _loss_identity(loss: Any) -> tuple[str, bool]:
    """``(name, from_logits)`` of a compiled loss: a name, a function or a Loss object."""
    if isinstance(loss, (list, tuple, dict)):
        raise FoldwiseError("the model is compiled with several losses; foldwise trains "
                            "models with one output and one loss")
    if loss is None:
        return "custom", False
    if isinstance(loss, str):
        return LOSS_ALIASES.get(loss, loss), loss in HINGE_LOSSES
    function = getattr(loss, "fn", None)  # keras.losses.LossFunctionWrapper
    name = getattr(function or loss, "__name__", None) or getattr(loss, "name", "custom")
    name = LOSS_ALIASES.get(name, name)
    config = {}
    if hasattr(loss, "get_config"):
        try:
            config = loss.get_config() or {}
        except Exception:  # a custom Loss without a config: nothing to learn from it
            config = {}
    logits = bool(config.get("from_logits", False)) or name in HINGE_LOSSES
    return name, logits


def _loss_family(name: str) -> str | None:
    if name in SPARSE_LOSSES:
        return "sparse"
    if name in MULTICLASS_LOSSES:
        return "categorical"
    if name in BINARY_LOSSES:
        return "binary"
    if name in REGRESSION_LOSSES:
        return "regression"
    return None  # a custom loss: the output's width decides

