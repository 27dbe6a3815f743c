"""Artifact types of foldwise's outputs beyond KFP's own.

:class:`UnmanagedContainerModel` has the schema title and version of Google's
``google_cloud_pipeline_components.types.artifact_types.UnmanagedContainerModel``, so
Google's ``ModelUploadOp`` takes a foldwise output as its ``unmanaged_container_model``
directly; it is declared here so that foldwise itself needs nothing of Google's package.
"""

from kfp import dsl


class UnmanagedContainerModel(dsl.Artifact):
    """A model folder and the container that serves it (Vertex AI's unmanaged container model).

    The artifact's URI is the folder Vertex AI uploads (for TensorFlow: ``saved_model.pb``
    and ``variables/`` directly inside); its metadata's ``containerSpec.imageUri`` is the
    serving image.
    """

    schema_title = "google.UnmanagedContainerModel"
    schema_version = "0.0.1"
