"""Builders written as TensorFlow tutorials write them, for the end-to-end runs.

``tf_keras_model`` only builds through ``tensorflow.keras`` (Keras itself under Keras 3): it
trains packed under JAX. ``pinball_model``'s loss runs TensorFlow operations: it trains
through TensorFlow's ``fit``.
"""

import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers


def tf_keras_model(meta, units=8, learning_rate=0.01):
    model = tf.keras.Sequential([layers.Input((meta["n_features_in_"],)),
                                 layers.Dense(units, activation="relu"), layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def pinball(y_true, y_pred):
    error = y_true - y_pred
    return tf.reduce_mean(tf.maximum(0.5 * error, -0.5 * error))


def pinball_model(meta, units=8):
    model = keras.Sequential([layers.Input((meta["n_features_in_"],)),
                              layers.Dense(units, activation="relu"), layers.Dense(1)])
    model.compile(optimizer="adam", loss=pinball)
    return model
