"""KFP component: publish the model and the search's results to their destination."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Model

from foldwise.components.image import component


@component
def export(
    cv_results: Input[Dataset],
    summary: Input[Artifact],
    page: Input[HTML],
    fold_assignment: Input[Dataset],
    destination: str,
    model: Input[Model] = None,
    best_params: Input[Artifact] = None,
    new_version: bool = False,
) -> str:
    """Copy everything a user needs to ``destination``; ``manifest.json`` is written last.

    With a model, the export also holds the SavedModel as TensorFlow Serving's numbered
    folder (``model/tfserving/1/``) and ``inferenceservice.yaml``, a KServe service for it.

    Args:
        cv_results: The aggregate step's ``cv_results``.
        summary: The aggregate step's summary.
        page: The report.
        fold_assignment: Row → fold.
        destination: Local folder or ``gs://`` prefix, given by the user.
        model: The refit step's serving model folder (none for a cross-validation).
        best_params: The searched parameters of the best configuration (with ``model``).
        new_version: Export into a new ``versions/<id>/`` folder under ``destination``
            (retrain), instead of into ``destination`` itself.

    Returns:
        The URI of the manifest.
    """
    import os
    import tempfile
    from importlib.metadata import version

    import yaml

    from foldwise.components import storage
    from foldwise.components.core.jsonio import read_json
    from foldwise.components.core.results.promotion import VERSIONS, new_version_name
    from foldwise.components.core.serving.deploy import (
        MANIFEST_NAME,
        TFSERVING_FOLDER,
        inference_service,
        service_name,
    )

    def versioned(root: str) -> str:
        return storage.join(root, VERSIONS, new_version_name())

    described = read_json(summary.path)
    service = service_name(destination)  # the same for every version of a retrain
    files = [("cv_results.csv", cv_results.path), ("summary.json", summary.path),
             ("report.html", page.path), ("folds.csv", fold_assignment.path)]
    destination = versioned(destination) if new_version else destination
    with tempfile.TemporaryDirectory(prefix="foldwise-export-") as scratch:
        if model is not None:
            manifest = os.path.join(scratch, MANIFEST_NAME)
            with open(manifest, "w", encoding="utf-8") as out:
                yaml.safe_dump(inference_service(service, storage.join(
                    destination, TFSERVING_FOLDER), version("tensorflow")), out,
                    sort_keys=False)
            files = (storage.folder_files(model.path, "model")
                     + storage.folder_files(os.path.join(model.path, "savedmodel"),
                                            f"{TFSERVING_FOLDER}/1")
                     + files + [("best_params.json", best_params.path),
                                (MANIFEST_NAME, manifest)])
        storage.publish(files, destination, {
            "what": ("foldwise search: serving model and cross-validation results" if model
                     is not None else "foldwise cross-validation: results"),
            "foldwise": version("foldwise"), "versions": described["versions"],
            "data": described["data"], "best_config_id": described["best_config_id"],
            "scoring": described["scoring"],
        })
    return storage.join(destination, storage.MANIFEST)
