"""An exported model, loaded to predict raw rows: ``foldwise predict`` and ``load_model``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from foldwise.components.core.errors import FoldwiseError, one_line

MODEL_FILES = ("model.keras", "preprocessing.json", "schema.json")


AGAIN = ("export the model again, or restore the file (manifest.json beside the model holds "
         "every file's SHA-256)")


def _model_file(path: Path, keys: tuple[str, ...]) -> dict:
    """One of an export's JSON files, checked to hold what a prediction reads from it.

    Raises:
        FoldwiseError: It is not readable UTF-8 JSON, or not a mapping with ``keys``.
    """
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FoldwiseError(f"{path} is damaged ({reason}): {AGAIN}") from None
    missing = [key for key in keys if not isinstance(found, dict) or key not in found]
    if missing:
        raise FoldwiseError(f"{path} is damaged (it lacks {', '.join(missing)}): {AGAIN}")
    return found


class ServingModel:
    """A foldwise model folder: the network with its preprocessing folded in.

    It takes raw rows (a DataFrame with the training table's columns, in any order, extra
    columns ignored) and answers as scikit-learn estimators do: :meth:`predict` gives values
    (regression) or class labels; :meth:`predict_proba` class probabilities.

    Attributes:
        keras_model: The Keras model (one named input per raw column).
        schema: The training table's schema (task, target, classes, columns).
        preprocessing: The fitted imputation, scaling and category state.
        classes_: The class labels (classification), else ``None``.
        folder: Where it was loaded from (a path or ``gs://`` prefix).
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        for name in MODEL_FILES:
            if not (folder / name).is_file():
                raise FoldwiseError(
                    f"{folder} is not a foldwise model folder (no {name}): give a grid-search "
                    "export folder or its 'model' folder")
        with quiet_stderr():  # TensorFlow writes start-up chatter straight to descriptor 2
            import keras

            import foldwise.components.core.serving.serving_model  # noqa: F401 - registers its layers
        config = folder / "config.json"
        params = _model_file(config, ("params",))["params"] if config.is_file() else {}
        from foldwise.components.core.models.estimators import role_of

        if role_of(params) == "user":  # its module registers custom layers
            from foldwise.components.core.models.builder_code import load_builder

            load_builder(params["builder"])
        self.folder = folder
        self.schema = _model_file(folder / "schema.json", ("task", "target"))
        self.preprocessing = _model_file(folder / "preprocessing.json", ("inputs",))
        try:
            with quiet_stderr():  # the first device use prints CUDA probing on CPU machines
                self.keras_model = keras.saving.load_model(folder / "model.keras",
                                                           safe_mode=True)
        except Exception as err:  # Keras raises ValueError, OSError, zipfile errors, ...
            reason = one_line(err)[:200] or type(err).__name__
            raise FoldwiseError(f"{folder / 'model.keras'} is damaged ({reason}): "
                                f"{AGAIN}") from None
        classes = self.schema.get("classes")
        self.classes_ = np.asarray(classes) if classes else None

    def _outputs(self, table) -> np.ndarray:
        from foldwise.components.core.serving.serving_model import serving_inputs

        if len(table) == 0:  # Keras cannot run a model on no rows
            return np.zeros((0, len(self.classes_) if self.classes_ is not None else 1))
        return np.asarray(self.keras_model.predict(
            serving_inputs(table, self.preprocessing), batch_size=4096, verbose=0))

    def prediction_table(self, table):
        """One line per row: ``row``, then the prediction (and class probabilities)."""
        from foldwise.components.core.serving.serving_model import prediction_table

        outputs = self._outputs(table)
        values = np.asarray(outputs, dtype="float64")
        if values.size and not np.isfinite(values).all():
            bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
            raise FoldwiseError(
                f"{len(bad)} row{'s' * (len(bad) != 1)} (the first is row {int(bad[0])}) give no "
                "finite prediction: their values are far outside what the model was trained on "
                "(overflow); check those rows for unit or entry errors")
        result = prediction_table(outputs, self.schema)
        result.insert(0, "row", range(len(table)))
        return result

    def request_body(self, X) -> dict:
        """Raw rows as the JSON body the deployed SavedModel takes.

        ``{"instances": [{input: value, ...}, ...]}``, for TensorFlow Serving's, Vertex AI's
        and KServe's ``predict``: each input is named after its column (where a signature can
        take the name; ``preprocessing.json`` lists them all), numbers as numbers (a missing
        one as ``NaN``), categories as text (a missing one as ``""``).
        """
        from foldwise.components.core.serving.serving_model import request_body

        return request_body(_frame(X), self.preprocessing)

    def predict(self, X) -> np.ndarray:
        """Predicted values (regression) or class labels (classification) of raw rows."""
        table = self.prediction_table(_frame(X))
        return table.iloc[:, 1].to_numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of raw rows, columns in :attr:`classes_` order."""
        if self.classes_ is None:
            raise FoldwiseError("predict_proba is for classifiers; this model is a regressor")
        table = self.prediction_table(_frame(X))
        return table[[c for c in table.columns if c.startswith("proba_")]].to_numpy()


def _frame(X):
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return X.rename(columns=str)  # columns are matched by name, as text
    raise FoldwiseError(f"X must be a pandas DataFrame with the training table's columns (by "
                        f"name), got {type(X).__name__}")


def load_model(uri: str | Path) -> ServingModel:
    """Load an exported model to predict raw rows.

    Args:
        uri: An export folder, its ``model/`` folder, or a promotion folder (its current
            version), local or ``gs://``.
    """
    from foldwise.components import storage
    from foldwise.pipelines.runs import model_folder

    folder = model_folder(str(uri))
    if not storage.is_gcs(folder):
        return ServingModel(folder)
    with tempfile.TemporaryDirectory(prefix="foldwise-model-") as local:
        storage.download_folder(folder, Path(local))
        model = ServingModel(local)  # everything is in memory once loaded
    model.folder = folder
    return model


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null for a moment (Python errors still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
