"""A model that serves raw rows: imputation, scaling and one-hot encoding folded into Keras.

The serving model takes one input per raw feature column, one value per row (numbers as
float32, a missing number as NaN; categories as strings, a missing category as ``""``), and
returns predictions on the target's scale, or one probability per class. Each input is named
after its column wherever the column's name can name a signature input (see
:func:`input_names`), so that TensorFlow Serving, Vertex AI and KServe take rows as
``{"instances": [{column: value, ...}, ...]}`` (:func:`request_body`).

Its layers are registered with Keras under the ``foldwise`` package, so
it loads with ``safe_mode=True`` once this module is imported; its TensorFlow SavedModel needs
nothing of foldwise at all.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from foldwise.components.core.data.preprocess import true_false
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.jsonio import class_count
from foldwise.components.core.models.builder_keras import loss_form, output_units
from foldwise.components.core.models.estimators import get_estimator
from foldwise.components.core.models.keras_model import output_kind
from foldwise.components.core.models.targets import TargetForm

MISSING_TOKEN = ""


def _row_shape(spec: dict) -> tuple:
    """One row's shape of an input: ``()``.

    Models exported before inputs were named after their columns took ``(1,)``.
    """
    return tuple(spec.get("shape", [1]))


@keras.saving.register_keras_serializable(package="foldwise")
class RawFeatures(keras.layers.Layer):
    """Raw columns → model inputs: median imputation, scaling, one-hot (unseen → zeros)."""

    def __init__(self, state: dict, **kwargs):
        super().__init__(**kwargs)
        self.state = state
        columns = state["scaler"]["columns"]
        self.numeric = [i for i in state["inputs"] if i["dtype"] == "float32"]
        self.categorical = [i for i in state["inputs"] if i["dtype"] == "string"]
        stats = [columns[i["column"]] for i in self.numeric]
        self.median = np.array([s["median"] for s in stats], "float32")
        self.center = np.array([s["center"] for s in stats], "float32")
        self.scale = np.array([s["scale"] for s in stats], "float32")
        self.lookups = [
            keras.layers.StringLookup(
                vocabulary=[MISSING_TOKEN if c is None else c
                            for c in state["one_hot"]["columns"][i["column"]]],
                output_mode="one_hot", num_oov_indices=1, name=f"categories_{i['input']}")
            for i in self.categorical
        ]

    def build(self, input_shape):  # noqa: D102 - Keras hook; nothing to create
        self.built = True

    def call(self, inputs):  # noqa: D102 - Keras hook
        parts = []
        if self.numeric:
            x = keras.ops.concatenate(
                [keras.ops.reshape(keras.ops.cast(inputs[i["input"]], "float32"), (-1, 1))
                 for i in self.numeric], axis=-1)
            x = keras.ops.where(keras.ops.isnan(x), self.median, x)
            parts.append((x - self.center) / self.scale)
        for spec, lookup in zip(self.categorical, self.lookups, strict=True):
            column = keras.ops.reshape(inputs[spec["input"]], (-1,))
            parts.append(keras.ops.cast(lookup(column)[:, 1:], "float32"))
        return keras.ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def get_config(self):  # noqa: D102 - Keras hook
        return {**super().get_config(), "state": self.state}


@keras.saving.register_keras_serializable(package="foldwise")
class UserScale(keras.layers.Layer):
    """Model output → the user's scale: regression values, or one probability per class."""

    def __init__(self, kind: str, mean: float = 0.0, scale: float = 1.0, logits: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.kind, self.mean, self.scale = kind, float(mean), float(scale)
        self.logits = bool(logits)

    def call(self, outputs):  # noqa: D102 - Keras hook
        if self.kind == "regression":
            return outputs * self.scale + self.mean
        if self.logits:  # a user's model ending in a linear layer (or hinge scores)
            outputs = (keras.ops.sigmoid(outputs) if outputs.shape[-1] == 1
                       else keras.ops.softmax(outputs, axis=-1))
        if self.kind == "binary" and outputs.shape[-1] == 1:
            return keras.ops.concatenate([1.0 - outputs, outputs], axis=-1)
        return outputs

    def get_config(self):  # noqa: D102 - Keras hook
        return {**super().get_config(), "kind": self.kind, "mean": self.mean,
                "scale": self.scale, "logits": self.logits}


def build_serving_model(inner, state: dict, schema: dict, target_scaling: dict | None,
                        estimator: str = "keras"):
    """Wrap a trained model so it takes raw columns and answers on the user's scale.

    The network is copied without its optimizer: a served model carries no training state.
    A user's model (``estimator="keras_builder"``) is answered as its loss reads its output:
    probabilities, or logits and scores turned into probabilities.
    """
    try:  # the layers alone: a compiled loss that does not deserialize is not needed here
        network = type(inner).from_config(inner.get_config())
    except Exception:
        network = keras.models.clone_model(inner)
    network.set_weights(inner.get_weights())
    # The inputs are named after columns (letters, digits, "_"); the model's own parts get
    # dotted names, which no input has, so that no column's name can clash with them.
    network.name = "foldwise.network"
    inputs = {i["input"]: keras.Input(shape=_row_shape(i), name=i["input"], dtype=i["dtype"])
              for i in state["inputs"]}
    kind = output_kind(schema["task"], class_count(schema))
    form = TargetForm.of_mlp(kind, class_count(schema), target_scaling)

    if get_estimator(estimator).role == "user" and kind != "regression":
        units = output_units(inner, np.zeros((1, len(state["features"])), dtype="float32"))
        form = loss_form(inner, kind, class_count(schema), units).targets(
            class_count(schema), target_scaling)
    outputs = UserScale(**form.serving(kind), name="foldwise.prediction")(
        network(RawFeatures(state, name="foldwise.raw_features")(inputs)))
    return keras.Model(inputs, outputs, name="foldwise_serving")


def raw_columns(table: pd.DataFrame, state: dict) -> dict:
    """A raw table's columns as the serving model reads them, by input name, checked.

    Numbers as float64 (missing: NaN), categories as text (missing: ``""``).

    Raises:
        FoldwiseError: A column the model needs is absent, or a numeric column holds text,
            infinite values or values float32 cannot hold (they would be read as missing).
    """
    missing = [i["column"] for i in state["inputs"] if i["column"] not in table.columns]
    if missing:
        raise FoldwiseError(
            f"the table lacks columns the model needs: {', '.join(missing)}; it must have "
            f"every feature column it was trained on")
    columns = {}
    for spec in state["inputs"]:
        column = table[spec["column"]]
        if spec["dtype"] == "float32":
            # true/false are not numbers here: training reads them as a category (or refuses
            # them in a numeric column), so prediction must not read them as 1 and 0
            flags = true_false(column)
            if flags.any():
                first = int(np.flatnonzero(flags)[0])
                raise FoldwiseError(
                    f"column {spec['column']!r} must be numeric but holds "
                    f"{bool(column.iloc[first])} (row {first}): the model was trained on "
                    "numbers there")
            values = pd.to_numeric(column, errors="coerce")
            bad = column.notna() & values.isna()
            if bad.any():
                raise FoldwiseError(
                    f"column {spec['column']!r} must be numeric but holds {column[bad].iloc[0]!r}")
            numbers = values.to_numpy(dtype="float64")
            if np.isinf(numbers).any():
                raise FoldwiseError(f"column {spec['column']!r} has infinite values")
            beyond = np.abs(numbers) > np.finfo("float32").max  # NaN compares False
            if beyond.any():
                raise FoldwiseError(
                    f"column {spec['column']!r} has {int(beyond.sum())} values beyond the "
                    f"model's float32 range (such as {numbers[beyond][0]:g}, row "
                    f"{int(np.flatnonzero(beyond)[0])}): check them for unit or entry errors")
            columns[spec["input"]] = numbers
        else:
            columns[spec["input"]] = column.map(_category_text).to_numpy(dtype=object)
    return columns


def serving_inputs(table: pd.DataFrame, state: dict) -> dict:
    """A raw table's columns as the serving model's inputs (TensorFlow tensors).

    Raises:
        FoldwiseError: As :func:`raw_columns`.
    """
    import tensorflow as tf

    columns = raw_columns(table, state)
    tensors = {}
    for spec in state["inputs"]:
        values = columns[spec["input"]].reshape(-1, *_row_shape(spec))
        tensors[spec["input"]] = (tf.constant(values.astype("float32"))
                                  if spec["dtype"] == "float32"
                                  else tf.constant(values, dtype=tf.string))
    return tensors


def request_body(table: pd.DataFrame, state: dict) -> dict:
    """Raw rows as the JSON body TensorFlow Serving, Vertex AI and KServe predict from.

    ``{"instances": [{input name: value, ...}, ...]}``, one instance per row: numbers as
    numbers, as the table holds them (a missing one as ``NaN``, which TensorFlow Serving's
    JSON reader takes), categories as text (a missing one as ``""``). The input names are the
    columns' own names wherever :func:`input_names` kept them. Checked as
    :func:`serving_inputs` checks a table.
    """
    columns = {name: values.tolist() for name, values in raw_columns(table, state).items()}
    shaped = {i["input"]: _row_shape(i) != () for i in state["inputs"]}  # older exports
    return {"instances": [{name: [values[row]] if shaped[name] else values[row]
                           for name, values in columns.items()}
                          for row in range(len(table))]}


def _category_text(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING_TOKEN
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def prediction_table(values: np.ndarray, schema: dict) -> pd.DataFrame:
    """Serving outputs as a table.

    Regression: ``prediction``; classification: ``predicted_class`` and one
    ``proba_<class>`` column per class.
    """
    if schema["task"] == "regression":
        return pd.DataFrame({"prediction": np.asarray(values, "float64")[:, 0]})
    classes = schema["classes"]
    proba = np.asarray(values, "float64")
    out = pd.DataFrame({"predicted_class": [classes[i] for i in proba.argmax(axis=1)]})
    for index, label in enumerate(classes):
        out[f"proba_{label}"] = proba[:, index]
    return out

