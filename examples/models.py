"""Keras model builders as users write them, for ``--model examples/models.py:NAME``.

Each takes what it names: builder arguments from the grid (``units``, ``dropout``, …), and what
foldwise supplies (``meta``, ``input_shape``, ``X``, ``y``, …). foldwise compiles a model left
uncompiled (optimizer, learning rate and loss from the options and the grid) and keeps the
compilation of one that compiles itself.
"""

import keras


def create_model(meta, units=64, dropout=0.2):
    """Follow scikeras' convention: ``meta`` carries ``n_features_in_``, ``n_outputs_``."""
    return keras.Sequential([
        keras.Input((meta["n_features_in_"],)),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(meta["n_outputs_"],
                           activation=None if meta["task"] == "regression" else "softmax"),
    ])


def penguin_classifier(input_shape, learning_rate=0.001):
    """Compiles itself: three classes, softmax, categorical cross-entropy."""
    model = keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def dynamic_model(X, y, loss, layers=(10,)):
    """Keras 3's wrapper convention: the training arrays, then keywords."""
    model = keras.Sequential([keras.Input((X.shape[1],))])
    for width in layers:
        model.add(keras.layers.Dense(width, activation="relu"))
    model.add(keras.layers.Dense(y.shape[1], activation="softmax" if y.shape[1] > 1 else None))
    model.compile(optimizer="adam", loss=loss)
    return model


@keras.saving.register_keras_serializable(package="examples")
class Residual(keras.layers.Layer):
    """A custom layer: x + Dense(relu(x)). Registered, so model.keras loads in safe mode."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.inner = keras.layers.Dense(width, activation="relu")

    def build(self, input_shape):  # noqa: D102 - Keras hook
        self.inner.build(input_shape)

    def call(self, inputs):  # noqa: D102 - Keras hook
        return inputs + self.inner(inputs)

    def get_config(self):  # noqa: D102 - Keras hook
        return {**super().get_config(), "width": self.width}


def residual_model(meta, width=32, blocks=2):
    """A residual MLP built from the custom layer above."""
    inputs = keras.Input((meta["n_features_in_"],))
    hidden = keras.layers.Dense(width, activation="relu")(inputs)
    for _ in range(blocks):
        hidden = Residual(width)(hidden)
    activation = None if meta["task"] == "regression" else "softmax"
    outputs = keras.layers.Dense(meta["n_outputs_"], activation=activation)(hidden)
    return keras.Model(inputs, outputs)


@keras.saving.register_keras_serializable(package="examples")
class Columns(keras.layers.Layer):
    """The model-ready columns at ``positions`` (a layer, so that safe mode loads it)."""

    def __init__(self, positions, **kwargs):
        super().__init__(**kwargs)
        self.positions = [int(p) for p in positions]

    def call(self, inputs):  # noqa: D102 - Keras hook
        return keras.ops.take(inputs, self.positions, axis=1)

    def compute_output_shape(self, input_shape):  # noqa: D102 - Keras hook
        return (input_shape[0], len(self.positions))

    def get_config(self):  # noqa: D102 - Keras hook
        return {**super().get_config(), "positions": self.positions}


def embedding_model(meta, embedding_dim=4, units=32):
    """One embedding per categorical column, the numbers beside them.

    ``meta["raw_columns"]`` gives, for each raw column, the positions of its model-ready
    columns: one for a number, one indicator per category for a categorical column. The
    indicators choose a row of that column's embedding (a one-hot row times a weight matrix).
    """
    inputs = keras.Input((meta["n_features_in_"],))
    numbers, parts = [], []
    for positions in meta["raw_columns"].values():
        if len(positions) == 1:
            numbers.extend(positions)
        else:  # a categorical column's indicators → its embedding
            parts.append(keras.layers.Dense(embedding_dim, use_bias=False)(
                Columns(positions)(inputs)))
    if numbers:
        parts.append(Columns(numbers)(inputs))
    hidden = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
    hidden = keras.layers.Dense(units, activation="relu")(hidden)
    activation = None if meta["task"] == "regression" else "softmax"
    outputs = keras.layers.Dense(meta["n_outputs_"], activation=activation)(hidden)
    return keras.Model(inputs, outputs)
