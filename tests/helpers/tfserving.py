"""TensorFlow Serving's REST predict, row format, done in-process on a SavedModel.

What the server does with ``{"instances": [...]}``: each instance is an object with one value
per signature input (an unknown or missing input is refused); the values of an input, taken
across the instances, form that input's batch, of the signature's dtype and shape. Its JSON
reader takes ``NaN`` as Python's does. The answer of a one-output signature is
``{"predictions": [...]}``, one entry per instance.
"""

import json

import tensorflow as tf


def predict(folder, body: str) -> dict:
    """Answer the JSON ``body`` as TensorFlow Serving would with the SavedModel ``folder``."""
    request = json.loads(body)
    signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
    specs = signature.structured_input_signature[1]
    instances = request["instances"]
    for instance in instances:
        if set(instance) != set(specs):
            raise ValueError(f"instance inputs {sorted(instance)} are not the signature's "
                             f"{sorted(specs)}")
    tensors = {}
    for name, spec in specs.items():
        tensor = tf.constant([instance[name] for instance in instances], dtype=spec.dtype)
        if not tensor.shape.is_compatible_with(spec.shape):
            raise ValueError(f"input {name}: shape {tensor.shape}, signature {spec.shape}")
        tensors[name] = tensor
    (output,) = signature(**tensors).values()
    return {"predictions": output.numpy().tolist()}
