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
    from importlib.metadata import version

    from foldwise.components import storage
    from foldwise.components.core.jsonio import read_json
    from foldwise.components.core.promotion import VERSIONS, new_version_name

    def versioned(root: str) -> str:
        return storage.join(root, VERSIONS, new_version_name())

    described = read_json(summary.path)
    files = [("cv_results.csv", cv_results.path), ("summary.json", summary.path),
             ("report.html", page.path), ("folds.csv", fold_assignment.path)]
    if model is not None:
        files = storage.folder_files(model.path, "model") + files + [
            ("best_params.json", best_params.path)]
    destination = versioned(destination) if new_version else destination
    storage.publish(files, destination, {
        "what": ("foldwise search: serving model and cross-validation results" if model
                 is not None else "foldwise cross-validation: results"),
        "foldwise": version("foldwise"), "versions": described["versions"],
        "data": described["data"], "best_config_id": described["best_config_id"],
        "scoring": described["scoring"],
    })
    return storage.join(destination, storage.MANIFEST)
