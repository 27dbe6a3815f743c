"""A user's own Keras model: the function that builds it, found, shipped, called and checked.

A builder is any function that returns a Keras model, written as users write them for
scikeras, Keras 3's ``SKLearnRegressor`` or by hand::

    def create_model(hidden_units=64): ...          # closes over a global input_dim, compiles
    def create_model(input_shape): ...              # softmax, categorical_crossentropy
    def dynamic_model(X, y, loss, layers=[10]): ... # Keras 3 wrapper convention
    def create_model(meta, units=64, dropout=0.2): ...  # scikeras convention

:func:`builder_reference` turns a callable, ``path/to/file.py:function`` or
``package.module:function`` into a JSON description that travels with a configuration (its
``builder`` key); :func:`load_builder` turns it back into the function where a step runs.
:func:`route` passes the builder, by name, what it asks for (see :data:`SUPPLIED`) and
:func:`build` calls it for one fold: seeded, always a fresh model, compiled from the spec when
the builder leaves it uncompiled, its output checked against the task. :func:`loss_form` says
in which form targets go in and how outputs come back as user values.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import json
import linecache
import sys
import textwrap
import traceback
import types
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.model import (
    BINARY_LOSSES,
    DEFAULT_LOSS,
    MULTICLASS_LOSSES,
    OPTIMIZER_PARAMS,
    OPTIMIZERS,
    REGRESSION_LOSSES,
    make_optimizer,
    output_kind,
    resolve_custom_loss,
)
from foldwise.components.core.table import suggest
from foldwise.components.core.tensorflow_standin import keras_as_tensorflow

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
_MODULE_PREFIX = "foldwise_builder_"


# ----- the reference that travels -------------------------------------------------------------
def builder_reference(model: Any) -> dict:
    """A JSON description of a model builder that a pipeline step can load.

    Args:
        model: A function; ``"path/to/file.py:function"`` (the file's text travels); or
            ``"package.module:function"`` (imported where the step runs: install it there).
            A function from an importable module travels as ``module:function``; one
            defined in a notebook or script (``__main__``) travels as its own source with
            the imports, plain values (numbers, text, lists), functions and classes of the
            notebook it uses.

    Returns:
        ``{"function", "module", "file", "source", "sha256"}``: ``module`` for an importable
        builder, else ``source`` (the text to run) and ``file`` (the file's name, for
        messages), the keys that do not apply left out; ``sha256`` identifies the code (the
        source, or the module's file where it can be read), so that another builder is
        another configuration.

    Raises:
        FoldwiseError: The file or module is missing or cannot be imported, the function is
            not in it, or it is not callable.
    """
    if isinstance(model, str):
        reference = _text_reference(model)
    elif callable(model):
        reference = _callable_reference(model)
    else:
        raise FoldwiseError(
            f"model must be a function that builds a Keras model, 'path/to/file.py:function' "
            f"or 'package.module:function', got {_describe(model)}")
    load_builder(reference)  # the errors a user can fix, here rather than in a step
    # Pipeline parameters hold no nulls (KFP's protobuf values): a key not set is left out.
    return {key: value for key, value in reference.items() if value is not None}


def _text_reference(text: str) -> dict:
    where, colon, function = text.rpartition(":")
    if not colon or not where or not function.isidentifier():
        raise FoldwiseError(
            f"model {text!r} must be 'path/to/file.py:function' or 'package.module:function'")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise FoldwiseError(f"model builder file {where} does not exist")
        return _source_reference(function, path.read_text(encoding="utf-8"), path.name)
    return _module_reference(function, where)


def _source_reference(function: str, source: str, file: str) -> dict:
    return {"function": function, "module": None, "file": file, "source": source,
            "sha256": hashlib.sha256(source.encode()).hexdigest()}


def _module_reference(function: str, module_name: str) -> dict:
    module = _import(module_name)
    try:
        identity = inspect.getsource(module)
    except (OSError, TypeError):  # no readable file (compiled, namespace): its name then
        identity = module_name
    return {"function": function, "module": module_name, "file": None, "source": None,
            "sha256": hashlib.sha256(identity.encode()).hexdigest()}


def _callable_reference(fn: Any) -> dict:
    name = getattr(fn, "__name__", None)
    qualname = getattr(fn, "__qualname__", name) or ""
    if not name or name == "<lambda>" or "<locals>" in qualname or "." in qualname:
        raise FoldwiseError(
            f"the model builder must be a function defined at the top of a module, script or "
            f"notebook, got {_describe(fn)}")
    module_name = getattr(fn, "__module__", None)
    module = sys.modules.get(module_name or "")
    shipped = getattr(module, "__foldwise_reference__", None)
    if shipped is not None:  # loaded from a reference already: the same code travels
        return {**shipped, "function": name}
    if module is None or module_name == "__main__":
        return _source_reference(name, _notebook_source(fn), "<notebook>")
    if _installed(module):  # part of an installed package: the image installs it too
        return _module_reference(name, module_name)
    try:  # a module of the user's own (beside a notebook, on a path set at run time): ships
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return _source_reference(name, _notebook_source(fn), "<notebook>")
    return _source_reference(name, source, Path(getattr(module, "__file__", name)).name)


def _installed(module: types.ModuleType) -> bool:
    """Whether a module comes from an installed distribution (site-packages)."""
    parts = Path(getattr(module, "__file__", None) or "").parts
    return "site-packages" in parts or "dist-packages" in parts


def _importable(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def _notebook_source(fn: Any) -> str:
    """The source of a function defined in ``__main__``, with what it uses of its globals.

    Not the whole script: that would run its top-level code (a search, say) again.
    """
    namespace = fn.__globals__
    imports, values, definitions = [], [], []
    pending, seen = [fn.__name__], set()
    while pending:
        name = pending.pop(0)
        if name in seen or name not in namespace:
            continue
        seen.add(name)
        value = namespace[name]
        if isinstance(value, types.ModuleType):
            alias = "" if value.__name__ == name else f" as {name}"
            imports.append(f"import {value.__name__}{alias}")
        elif (inspect.isfunction(value) or inspect.isclass(value)) and \
                value.__module__ == fn.__module__:
            try:
                text = textwrap.dedent(inspect.getsource(value))
            except (OSError, TypeError) as err:
                raise FoldwiseError(
                    f"the source of {name!r}, which the model builder uses, cannot be read "
                    f"({err}): put the builder in a .py file and pass 'file.py:"
                    f"{fn.__name__}'") from err
            definitions.append(text)
            pending.extend(_names_used(text))
        elif (inspect.isfunction(value) or inspect.isclass(value)) and \
                getattr(importlib.import_module(value.__module__), value.__qualname__,
                        None) is value:
            alias = "" if value.__qualname__ == name else f" as {name}"
            imports.append(f"from {value.__module__} import {value.__qualname__}{alias}")
        elif _literal(value):
            values.append(f"{name} = {value!r}")
        else:
            raise FoldwiseError(
                f"the model builder {fn.__name__} uses the global {name!r}, "
                f"{_describe(value)}, which cannot travel with the run: build it inside the "
                f"function, or put the builder in a .py file and pass "
                f"'file.py:{fn.__name__}'")
    # Dependencies were found after their users: define them first.
    return "\n".join([*imports, *values, "", *reversed(definitions)])


def _names_used(source: str) -> list[str]:
    return sorted({node.id for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)})


def _literal(value: Any) -> bool:
    """Whether ``repr(value)`` rebuilds it: numbers, text, and lists, tuples, dicts of them."""
    try:
        return ast.literal_eval(repr(value)) == value
    except (SyntaxError, ValueError):
        return False


def _json_value(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def load_builder(reference: dict) -> Any:
    """The builder function a :func:`builder_reference` describes.

    Source travels into a module of its own, registered in ``sys.modules`` under a name
    derived from its ``sha256``: loading it again gives the same module, so the Keras
    objects it registers (``@keras.saving.register_keras_serializable``) register once.

    Raises:
        FoldwiseError: The module cannot be imported or raises on import (its message and
            where), the function is not in it, or it is not callable.
    """
    function = reference.get("function") if isinstance(reference, dict) else None
    if not isinstance(function, str) or "sha256" not in reference:
        raise FoldwiseError(f"not a model builder reference: {reference!r}")
    if reference.get("source") is not None:
        module, where = _source_module(reference), reference.get("file") or "the builder"
    else:
        module, where = _import(reference["module"]), f"module {reference['module']!r}"
    if not hasattr(module, function):
        defined = [name for name, value in vars(module).items()
                   if inspect.isfunction(value) and not name.startswith("_")]
        raise FoldwiseError(
            f"{where} has no function {function!r}{suggest(function, defined)}")
    fn = getattr(module, function)
    if not callable(fn):
        raise FoldwiseError(f"{function!r} in {where} is {_describe(fn)}, not a function that "
                            "builds a Keras model")
    return fn


def _source_module(reference: dict) -> types.ModuleType:
    name = _MODULE_PREFIX + reference["sha256"][:16]
    if name in sys.modules:
        return sys.modules[name]
    filename = reference.get("file") or "<builder>"
    source = reference["source"]
    # Tracebacks and inspect.getsource read the lines from here.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__foldwise_reference__ = {k: v for k, v in reference.items() if k != "function"}
    sys.modules[name] = module
    try:
        with keras_as_tensorflow():
            exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - user's code
    except Exception as err:
        del sys.modules[name]
        raise FoldwiseError(f"the model builder's file {filename} raised on import: "
                            f"{_error_text(err)} (at {_where(err, filename)})") from err
    return module


def _import(module_name: str) -> types.ModuleType:
    try:
        with keras_as_tensorflow():
            return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise FoldwiseError(
                f"cannot import the model builder's module {module_name!r} ({err}): install "
                "it where the pipeline runs, or give its file as 'path/to/file.py:function'"
            ) from err
        raise _import_error(module_name, err) from err
    except Exception as err:
        raise _import_error(module_name, err) from err


def _import_error(module_name: str, err: Exception) -> FoldwiseError:
    return FoldwiseError(f"the model builder's module {module_name!r} raised on import: "
                         f"{_error_text(err)} (at {_where(err, None)})")


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
        raise FoldwiseError(f"cannot read the arguments of the model builder {_name(fn)}: "
                            f"{err}") from err
    names, required, var_keyword = [], [], False
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            var_keyword = True
        elif parameter.kind is parameter.POSITIONAL_ONLY:
            if parameter.default is parameter.empty:
                raise FoldwiseError(
                    f"the model builder {_name(fn)} takes {parameter.name!r} by position only; "
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
                f"unknown parameter {key!r}: neither the model builder {_name(fn)} (it takes "
                f"{takes}) nor training takes it{suggest(name, known)}")
    given = set(builder_params(params)) | set(params)
    for name in arguments.required:
        if name not in given and name not in SUPPLIED and name not in TRAINING_KEYS:
            raise FoldwiseError(
                f"the model builder {_name(fn)} needs a value for {name!r} (it has no "
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

    from foldwise.components.core.estimators import seed_everything

    seed_everything(seed)
    arguments = builder_arguments(fn)
    kwargs = route(fn, params, context)
    try:
        model = fn(**kwargs)
    except FoldwiseError:
        raise
    except Exception as err:
        raise FoldwiseError(
            f"the model builder {_name(fn)} raised {_error_text(err)} (at "
            f"{_where(err, fn.__code__.co_filename if hasattr(fn, '__code__') else None)})"
        ) from err
    if not isinstance(model, keras.Model):
        raise FoldwiseError(
            f"the model builder {_name(fn)} returned {_describe(model)}, not a Keras model: "
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
                f"{_name(fn)} (or leave the model uncompiled for foldwise to compile)")
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
            f"the model builder {_name(fn)} returned a model it keeps (a global, or one it "
            f"returned before), and that model cannot be cloned ({_error_text(err)}): build a "
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
            f"{_error_text(err)}") from err
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
        """The :class:`~foldwise.components.core.targets.TargetForm` of this loss."""
        from foldwise.components.core.targets import TargetForm

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


def lean(params: dict) -> dict:
    """A configuration with its builder's reference but not its source.

    Configurations travel to the steps as parameters, many at a time: the builder's text
    travels once, in the run's fixed model options, and :func:`with_source` puts it back.
    """
    if not isinstance(params.get("builder"), dict):
        return params
    return {**params, "builder": {k: v for k, v in params["builder"].items() if k != "source"}}


def with_source(params: dict, reference: dict | None) -> dict:
    """A configuration whose builder is ``reference`` (same digest), with its source back."""
    ours = params.get("builder")
    if (not isinstance(ours, dict) or not reference
            or ours.get("sha256") != reference.get("sha256")):
        return params
    return {**params, "builder": dict(reference)}


def check_configs(configs: list[dict], prepared, schema: dict, scaler: str, seed: int,
                  reference: dict | None = None) -> None:
    """Build every user-builder configuration once, on all rows, before any step runs.

    What only building shows (the builder raises, returns no Keras model, compiles what the
    configuration sets, an output or loss that does not fit the task) is then one error up
    front, not a failed configuration after minutes of steps.

    Args:
        configs: The run's configurations (``{"config_id", "params"}``); others are skipped.
        prepared: The preprocessed table (all rows).
        schema: Its schema.
        scaler: The run's scaler.
        seed: The run's seed.
        reference: The builder with its source (:func:`with_source`).

    Raises:
        FoldwiseError: The first configuration that cannot be built (named).
    """
    from foldwise.components.core.encoding import raw_column_indices
    from foldwise.components.core.estimators import standard_target_scaling
    from foldwise.components.core.jsonio import class_count
    from foldwise.components.core.serving import encode, fit_preprocessing

    ours = [c for c in configs if c["params"].get("estimator") == ESTIMATOR]
    if not ours:
        return
    state = fit_preprocessing(prepared, schema, scaler)
    x = encode(prepared, state)
    y = prepared[schema["target"]].to_numpy()
    n_classes = class_count(schema)
    kind = output_kind(schema["task"], n_classes)
    for config in ours:
        params = with_source(config["params"], reference)
        if kind == "regression":
            from foldwise.components.core.targets import TargetForm

            y_seen = TargetForm.of_mlp(kind, None, standard_target_scaling(
                y, kind, params)).scaled(y)
        else:
            y_seen = y
        context = BuildContext(x, y_seen, schema["task"], n_classes, schema["target"],
                               schema["classes"], list(state["features"]),
                               raw_column_indices(state["features"], schema["categorical"],
                                                  schema["numeric"]))
        try:
            build(load_builder(params["builder"]), params, context, seed)
        except FoldwiseError as err:
            shown = builder_params(params)
            raise FoldwiseError(f"configuration {json.dumps(shown)}: {err}" if shown
                                else str(err)) from None


def tensorflow_operations(configs: list[dict], schema: dict, reference: dict | None,
                          seed: int = 0) -> dict[str, str]:
    """Which users' builder configurations run TensorFlow operations, found by trying them.

    Each is built, and its loss computed on a few rows, as the one engine would
    (``Estimator.prepare``, with ``tensorflow.keras`` answered by Keras), on stand-in rows
    of the table's columns (one model-ready column per raw column). Imports alone decide
    nothing: ``from tensorflow import keras`` needs no TensorFlow under Keras 3.

    Returns:
        ``{config_id: operation}`` (such as ``"tf.reduce_mean"``) for each that needs
        TensorFlow; other failures are left for the configuration's own trials to report.
    """
    from foldwise.components.core.estimators import KERAS_BUILDER
    from foldwise.components.core.jsonio import class_count
    from foldwise.components.core.model import normalize_spec
    from foldwise.components.core.tensorflow_standin import operation_needed
    from foldwise.components.core.training import FoldData

    ours = [c for c in configs if c["params"].get("estimator") == ESTIMATOR]
    if not ours:
        return {}
    n_classes = class_count(schema)
    kind = output_kind(schema["task"], n_classes)
    columns = [*schema.get("numeric", []), *schema.get("categorical", [])] or ["x0"]
    rows = 16
    x = np.random.default_rng(seed).normal(size=(rows, len(columns))).astype("float32")
    y = (np.arange(rows) % n_classes if n_classes else np.linspace(-1.0, 1.0, rows))
    data = FoldData(x, y, x[:4], y[:4], np.arange(4), list(columns),
                    {name: [i] for i, name in enumerate(columns)}, schema.get("target", ""),
                    schema.get("classes"))
    found = {}
    for config in ours:
        params = with_source(config["params"], reference)
        try:
            spec = normalize_spec(params, schema["task"], n_classes)
            KERAS_BUILDER.prepare(data, kind, n_classes, spec, seed, None)
        except Exception as err:
            operation = operation_needed(err)
            if operation is not None:
                found[config["config_id"]] = operation
    return found


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
    from foldwise.components.core.model import _check_loss, normalize_spec

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
        if not _json_value(list(value) if isinstance(value, tuple) else value):
            raise FoldwiseError(f"model builder parameter {key!r} must be a JSON value "
                                f"(number, text, true/false, list, mapping), got "
                                f"{_describe(value)}")
        full[key] = _whole_numbers(list(value) if isinstance(value, tuple) else value)
    if reference.get("source") is not None or _importable(reference.get("module") or ""):
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


# ----- messages -------------------------------------------------------------------------------
def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(value).__name__} ({text})"


def _error_text(err: BaseException) -> str:
    message = str(err)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _where(err: BaseException, filename: str | None) -> str:
    """``file:line`` of the deepest frame in ``filename`` (else the deepest frame at all)."""
    if isinstance(err, SyntaxError) and err.lineno:
        return f"{err.filename or filename}:{err.lineno}"
    frames = traceback.extract_tb(err.__traceback__)
    own = [frame for frame in frames if filename and frame.filename == filename]
    frame = (own or frames or [None])[-1]
    if frame is None:
        return "unknown place"
    return f"{Path(frame.filename).name}:{frame.lineno}"
