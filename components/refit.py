"""KFP component: the best configuration trained on every row, saved to serve raw rows."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from foldwise.components.artifacts import UnmanagedContainerModel
from foldwise.components.image import component


@component
def refit(
    prepared: Input[Dataset],
    schema: Input[Artifact],
    best_config: Input[Artifact],
    model: Output[Model],
    predictions: Output[Dataset],
    serving_model: Output[UnmanagedContainerModel],
    scaler: str = "standard",
    seed: int = 0,
    model_spec: dict = {},  # noqa: B006 - KFP reads defaults from the signature
    serving_image: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
):
    """Refit preprocessing and the best configuration on all rows; save the serving model.

    Args:
        prepared: The preprocessed table (all rows).
        schema: The preprocess step's schema.
        best_config: JSON ``{"config_id", "params"}`` chosen by the aggregate step.
        model: Folder: ``model.keras`` (raw columns in, preprocessing folded in),
            ``savedmodel/`` (TensorFlow SavedModel with a ``serving_default`` signature),
            ``preprocessing.json``, ``schema.json`` and ``config.json`` (the configuration's
            id and complete spec).
        predictions: Parquet: this model's predictions for every row, computed the
            pipeline's way (fitted state + trained network), for checking the serving model.
        serving_model: The same SavedModel as ``google.UnmanagedContainerModel``: the folder
            (``saved_model.pb`` at its top) and ``containerSpec.imageUri`` in its metadata,
            what Google's ``ModelUploadOp`` takes as ``unmanaged_container_model``.
        scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
        seed: Seed of weights, shuffling and dropout.
        model_spec: The run's fixed model options (a user's builder, with its source).
        serving_image: The image that serves ``serving_model`` (its ``containerSpec``).
    """
    import os
    import shutil
    import tempfile

    # The export is TensorFlow's (string lookups, SavedModel); the model trains like every
    # other, in the one engine on JAX, in a process of its own (core.training.engine_process).
    if "keras" not in __import__("sys").modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    import pandas as pd

    from foldwise.components.core.jsonio import class_count, read_json, write_json
    from foldwise.components.core.models.builder_code import with_source
    from foldwise.components.core.models.spec import normalize_spec
    from foldwise.components.core.training import engine_process

    described, best = read_json(schema.path), read_json(best_config.path)
    best = {**best, "params": with_source(best["params"], model_spec.get("builder"))}
    classes, n_classes = described["classes"], class_count(described)
    with tempfile.TemporaryDirectory(prefix="foldwise-refit-") as scratch:
        job = engine_process.start({"prepared": prepared.path, "schema": described,
                                    "scaler": scaler}, task=described["task"],
                                   n_classes=n_classes, spec=best["params"], seed=seed,
                                   folder=scratch)
        # Meanwhile, here: TensorFlow's import, the spec's checks (a user's builder loads)
        # and the same preprocessing, for the export.
        spec = normalize_spec(best["params"], described["task"], n_classes)
        job.spec = spec
        from foldwise.components.core.data.whole_table import all_rows
        from foldwise.components.core.serving.serving_model import build_serving_model
        from foldwise.components.core.training.fit import predictions_frame

        everything, state = all_rows(pd.read_parquet(prepared.path), described, scaler)
        result = job.result(everything)
    serving = build_serving_model(result.model, state, described, result.target_scaling,
                                  spec["estimator"])

    os.makedirs(model.path, exist_ok=True)
    serving.save(os.path.join(model.path, "model.keras"))
    serving.export(serving_model.path, format="tf_saved_model", verbose=False)
    shutil.copytree(serving_model.path, os.path.join(model.path, "savedmodel"))
    serving_model.metadata["containerSpec"] = {"imageUri": serving_image}
    for name, content in [("preprocessing.json", state), ("schema.json", described),
                          ("config.json", best)]:
        write_json(os.path.join(model.path, name), content)
    shutil.rmtree(os.path.join(model.path, "__pycache__"), ignore_errors=True)
    frame = predictions_frame(everything, -1, result.prediction, classes).drop(columns="fold")
    frame.to_parquet(predictions.path, index=False)
    model.metadata.update(config_id=best["config_id"], epochs_run=result.epochs_run)
