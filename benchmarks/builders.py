"""The user's own Keras builder that benchmarks/builder.py cross-validates with each tool.

Written as a scikeras user writes one: it takes scikeras' ``meta`` and compiles itself.
"""

import keras


def two_layer_model(meta, units=64, dropout=0.2, learning_rate=0.001):
    """Two hidden ReLU layers of ``units``, each followed by dropout; one linear output."""
    model = keras.Sequential([
        keras.Input((meta["n_features_in_"],)),
        keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(dropout),
        keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(dropout),
        keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model
