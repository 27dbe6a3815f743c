"""Users' builders written against ``tensorflow.keras`` train under JAX, without TensorFlow.

Under Keras 3, ``tensorflow.keras`` and ``tf.keras`` *are* Keras: code that only builds a
Keras model through them needs nothing of TensorFlow. While :func:`keras_as_tensorflow` is
active, ``import tensorflow`` gives a stand-in whose ``keras`` is Keras itself
(``from tensorflow.keras import layers`` and ``tf.keras.Sequential`` work), and any real
TensorFlow operation (``tf.reduce_mean``, ``tf.random.set_seed``, ``import
tensorflow.python``) raises :class:`NeedsTensorFlow` naming it. A builder that raises it was
found, by trying, to need TensorFlow: it trains through TensorFlow's ``fit`` instead.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from contextlib import contextmanager

_ALIAS = "tensorflow.keras"


class NeedsTensorFlow(RuntimeError):
    """A builder ran a TensorFlow operation (``operation``), which JAX cannot run."""

    def __init__(self, operation: str):
        super().__init__(f"the model builder uses {operation}, a TensorFlow operation, "
                         "which Keras' JAX backend cannot run")
        self.operation = operation


def operation_needed(err: BaseException) -> str | None:
    """The TensorFlow operation behind ``err`` (anywhere in its chain of causes), or ``None``."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, NeedsTensorFlow):
        cause = cause.__cause__ or cause.__context__
    return None if cause is None else cause.operation


class _StandIn(types.ModuleType):
    """``tensorflow`` with only ``keras``: anything else names the operation and raises."""

    def __getattr__(self, name: str):
        if name == "keras":
            import keras

            return keras
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise NeedsTensorFlow(f"tf.{name}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of ``tensorflow`` and its submodules while the stand-in is active."""

    def __init__(self, standin: _StandIn):
        self.standin = standin

    def find_spec(self, fullname, path, target=None):  # noqa: D102 - importlib's hook
        if fullname == "tensorflow" or fullname.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):  # noqa: D102 - importlib's hook
        name = spec.name
        if name == "tensorflow":
            return self.standin
        if name == _ALIAS or name.startswith(_ALIAS + "."):
            return importlib.import_module("keras" + name[len(_ALIAS):])
        raise NeedsTensorFlow(f"import {name}")

    def exec_module(self, module):  # noqa: D102 - importlib's hook; nothing to run
        return None


@contextmanager
def keras_as_tensorflow():
    """While active, ``tensorflow`` is the stand-in (see the module docstring).

    Only where TensorFlow is kept out (a JAX step: ``core.training.vmapped.block_tensorflow``);
    elsewhere a no-op. What
    the stand-in answered stays with the code that imported it (a builder's module keeps
    its ``tf``), so a TensorFlow operation reached later still raises
    :class:`NeedsTensorFlow`.
    """
    if "tensorflow" not in sys.modules or sys.modules["tensorflow"] is not None:
        yield  # TensorFlow is imported, or may be: the real one answers
        return
    from keras.src.utils import module_utils

    # Keras asks once whether TensorFlow is there: the answer must be "no", not the
    # stand-in, or serializing a model would reach for tf.TensorShape.
    module_utils.tensorflow.available  # noqa: B018
    standin = _StandIn("tensorflow")
    standin.__path__ = []  # a package: its submodules are looked up through the finder
    finder = _Finder(standin)
    sys.meta_path.insert(0, finder)
    sys.modules["tensorflow"] = standin
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "tensorflow" or n.startswith("tensorflow.")]:
            del sys.modules[name]
        sys.modules["tensorflow"] = None
