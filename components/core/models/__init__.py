"""The models room: what a model is.

A configuration's checks and normal form (``spec``), the Keras names foldwise checks against and
the built-in MLP (``keras_model``), a user's builder in three layers (its code shipped:
``builder_code``; adapted to Keras: ``builder_keras``; tried before a search:
``builder_checks``), the target's form (``targets``), the estimator registry (``estimators``)
and the TensorFlow stand-in (``tensorflow_standin``). Imports the ground floor, data and
scoring.
"""
