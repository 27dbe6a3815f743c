"""What serving the exported model on a cluster needs: names, folders, a KServe manifest.

Vertex AI serves the SavedModel folder itself (``saved_model.pb`` at its top) in the image
given by the run's ``serving_image``; KServe's TensorFlow runtime (TensorFlow Serving) wants
numbered version folders under its storage URI, so the export holds the SavedModel again as
``model/tfserving/1/`` and an ``InferenceService`` pointing there.
"""

from __future__ import annotations

import re

# Below the export's folder: the SavedModel as TensorFlow Serving's model base path.
TFSERVING_FOLDER = "model/tfserving"
MANIFEST_NAME = "inferenceservice.yaml"
RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"},
             "limits": {"cpu": "1", "memory": "2Gi"}}


def service_name(destination: str) -> str:
    """A Kubernetes name (RFC 1035 label) for the service of an export destination.

    ``foldwise-`` and the destination's last folder name, lower-cased, other characters as
    ``-``; at most 45 characters (KServe adds suffixes to a service's own objects).
    """
    last = destination.rstrip("/").rsplit("/", 1)[-1]
    slug = re.sub(r"[^a-z0-9]+", "-", last.lower()).strip("-")
    return ("foldwise-" + slug)[:45].rstrip("-") if slug else "foldwise"


def inference_service(name: str, storage_uri: str, tensorflow_version: str) -> dict:
    """A KServe ``InferenceService`` serving the SavedModel with TensorFlow Serving.

    Args:
        name: The service's name (:func:`service_name`).
        storage_uri: The folder holding the numbered SavedModel folder (``gs://...``).
        tensorflow_version: TensorFlow's version the model was saved with; the runtime
            (the ``tensorflow/serving`` image tag) of the same release.
    """
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": "tensorflow"},
            "runtimeVersion": tensorflow_version,
            "storageUri": storage_uri,
            "resources": {kind: dict(values) for kind, values in RESOURCES.items()},
        }}},
    }
