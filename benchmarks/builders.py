"""The user's own Keras builder that benchmarks/builder.py cross-validates with each tool.

Written as Keras tutorials and scikeras users write one: Keras imported through TensorFlow
(``from tensorflow import keras``), scikeras' ``meta``, compiled by itself, dropout layers.
"""

from tensorflow import keras


def two_layer_model(meta, units=64, dropout=0.0, learning_rate=0.001):
    """Two hidden ReLU layers of ``units``, each followed by dropout; one linear output."""
    model = keras.Sequential([
        keras.Input((meta["n_features_in_"],)),
        keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(dropout),
        keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(dropout),
        keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model
