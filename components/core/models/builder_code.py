"""A user's builder as code that travels.

A reference to it (a callable, a file's function, a module's function, a notebook cell's
source) and the function loaded back where a step runs; the messages that name a builder.
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
from pathlib import Path
from typing import Any

from foldwise.components.core.data.table import suggest
from foldwise.components.core.errors import FoldwiseError, without_escapes
from foldwise.components.core.models.tensorflow_standin import keras_as_tensorflow

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
            f"or 'package.module:function', got {describe_value(model)}")
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
            f"notebook, got {describe_value(fn)}")
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


def importable(module_name: str) -> bool:
    """Whether ``module_name`` can be imported here (without importing it)."""
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
                f"{describe_value(value)}, which cannot travel with the run: build it inside the "
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


def json_value(value: Any) -> bool:
    """Whether ``value`` survives a JSON round trip unchanged (no infinity or NaN in it)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
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
        raise FoldwiseError(f"{function!r} in {where} is {describe_value(fn)}, not a function that "
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
                            f"{error_text(err)} (at {where_raised(err, filename)})") from err
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
                         f"{error_text(err)} (at {where_raised(err, None)})")


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


# ----- messages -------------------------------------------------------------------------------
def callable_name(fn: Any) -> str:
    """A builder's name for messages."""
    return getattr(fn, "__name__", None) or repr(fn)


def describe_value(value: Any) -> str:
    """A value's type and a short ``repr``, for messages."""
    if value is None:
        return "None"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"a {type(value).__name__} ({text})"


def error_text(err: BaseException) -> str:
    """An exception as ``Type: message``, on one line and without terminal escape codes.

    Keras wraps a layer's error in a block (``Exception encountered when calling ...``, the
    message in bold, then ``Arguments received by ...``): only the message is kept.
    """
    lines = [line.strip() for line in without_escapes(err).splitlines()]
    if lines and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
    for index, line in enumerate(lines):
        if line.startswith("Arguments received by"):
            lines = lines[:index]
            break
    message = " ".join(line for line in lines if line)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def where_raised(err: BaseException, filename: str | None) -> str:
    """``file:line`` of the deepest frame in ``filename`` (else the deepest frame at all)."""
    if isinstance(err, SyntaxError) and err.lineno:
        return f"{err.filename or filename}:{err.lineno}"
    frames = traceback.extract_tb(err.__traceback__)
    own = [frame for frame in frames if filename and frame.filename == filename]
    frame = (own or frames or [None])[-1]
    if frame is None:
        return "unknown place"
    return f"{Path(frame.filename).name}:{frame.lineno}"

