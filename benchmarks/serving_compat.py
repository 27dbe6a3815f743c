"""Does the serving image's TensorFlow answer as foldwise's SavedModels do here?

Vertex AI's newest prebuilt TensorFlow serving image runs TensorFlow 2.15; foldwise saves
with the pinned 2.21. This exports a regressor and a classifier the way the refit step does
(preprocessing folded in, one input per column), then loads each in another Python's
TensorFlow and compares its answers with this TensorFlow's on the same raw rows:

    python3.11 -m venv /tmp/tf215 && /tmp/tf215/bin/pip install tensorflow-cpu==2.15.1
    .venv/bin/python benchmarks/serving_compat.py --python /tmp/tf215/bin/python

Exit 0 when every answer agrees to 1e-5.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.data.whole_table import fit_preprocessing
from foldwise.components.core.models.keras_model import build_model
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.serving.serving_model import build_serving_model, serving_inputs

LOADER = """
import json, sys
import numpy as np
import tensorflow as tf
folder = sys.argv[1]
out = {"tensorflow": tf.__version__}
for task in ("regression", "classification"):
    data = dict(np.load(f"{folder}/{task}.npz", allow_pickle=True))
    expected = data.pop("expected")
    signature = tf.saved_model.load(f"{folder}/{task}").signatures["serving_default"]
    (got,) = signature(**{k: tf.constant(v) for k, v in data.items()}).values()
    out[task] = float(np.abs(got.numpy() - expected).max())
print(json.dumps(out))
"""


def export(folder: Path) -> None:
    """A regressor and a classifier on penguins, saved as the refit saves them."""
    from palmerpenguins import load_penguins

    table = load_penguins()
    for target, task in (("body_mass_g", "regression"), ("species", "classification")):
        prepared, schema = preprocess(table, PreprocessOptions(target=target, folds=3))
        state = fit_preprocessing(prepared, schema, "standard")
        n_classes = len(schema.get("classes") or []) or None
        spec = normalize_spec({"hidden_units": [8]}, schema["task"], n_classes)
        inner = build_model(spec, len(state["features"]), schema["task"], n_classes)
        scaling = {"mean": 4200.0, "scale": 800.0} if task == "regression" else None
        serving = build_serving_model(inner, state, schema, scaling)
        serving.export(str(folder / task), format="tf_saved_model", verbose=False)
        inputs = serving_inputs(table.head(40), state)
        np.savez(folder / f"{task}.npz", expected=serving.predict(inputs, verbose=0),
                 **{name: tensor.numpy() for name, tensor in inputs.items()})


def main() -> int:
    """Export here, load there, compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="a Python with another TensorFlow")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="foldwise-compat-") as scratch:
        export(Path(scratch))
        answer = subprocess.run([args.python, "-c", LOADER, scratch], capture_output=True,
                                text=True)
    if answer.returncode != 0:
        print(answer.stderr[-2000:], file=sys.stderr)
        return 1
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    import tensorflow as tf

    print(f"saved with TensorFlow {tf.__version__}, served by {result['tensorflow']}: "
          f"largest difference {result['regression']:g} (regressor), "
          f"{result['classification']:g} (classifier)")
    return 0 if max(result["regression"], result["classification"]) <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
