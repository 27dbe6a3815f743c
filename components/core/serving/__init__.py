"""The serving room: the exported model.

A Keras model with its preprocessing that serves raw rows, its request bodies and prediction
tables (``serving_model``), and deployment (``deploy``). Imports the ground floor, data and
models.
"""
