"""Call a function in a fresh process whose Keras runs on JAX, as a pipeline step's does.

The test process runs Keras on TensorFlow (the user's side: export, serving); what the
pipeline's train steps compute is computed again here the way they compute it:

    result = in_jax.call("helpers.inprocess", "scores_here", table, "y", spec, 0, 3)

Arguments and the result travel pickled (test-internal values, never a user's file).
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def call(module: str, function: str, *args, **kwargs):
    """``module.function(*args, **kwargs)`` in a JAX process; its return value."""
    done = subprocess.run([sys.executable, __file__], input=pickle.dumps(
        (module, function, args, kwargs)), capture_output=True, timeout=900,
        env={**os.environ, "KERAS_BACKEND": "jax"})
    if done.returncode != 0:
        raise RuntimeError(f"{module}.{function} failed under JAX:\n"
                           f"{done.stderr.decode(errors='replace')[-4000:]}")
    return pickle.loads(done.stdout)


def _main() -> None:
    sys.path.insert(0, str(TESTS))
    from foldwise.components.core.training.vmapped import select_backend

    select_backend()
    import importlib

    module, function, args, kwargs = pickle.loads(sys.stdin.buffer.read())
    result = getattr(importlib.import_module(module), function)(*args, **kwargs)
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), pickle.dumps(result))


if __name__ == "__main__":
    _main()
