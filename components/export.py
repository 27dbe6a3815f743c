"""KFP component: publish the model and the search's results to their destination."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Model

from foldwise.components.image import component


@component
def export(
    model: Input[Model],
    cv_results: Input[Dataset],
    summary: Input[Artifact],
    best_params: Input[Artifact],
    page: Input[HTML],
    fold_assignment: Input[Dataset],
    destination: str,
    new_version: bool = False,
) -> str:
    """Copy everything a user needs to ``destination``; ``manifest.json`` is written last.

    Args:
        model: The refit step's serving model folder.
        cv_results: The aggregate step's ``cv_results``.
        summary: The aggregate step's summary.
        best_params: The best configuration.
        page: The report.
        fold_assignment: Row → fold.
        destination: Local folder or ``gs://`` prefix, given by the user.
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
    files = storage.folder_files(model.path, "model") + [
        ("cv_results.csv", cv_results.path), ("summary.json", summary.path),
        ("best_params.json", best_params.path), ("report.html", page.path),
        ("folds.csv", fold_assignment.path),
    ]
    destination = versioned(destination) if new_version else destination
    storage.publish(files, destination, {
        "what": "foldwise grid search: serving model and cross-validation results",
        "foldwise": version("foldwise"), "versions": described["versions"],
        "data": described["data"], "best_config_id": described["best_config_id"],
        "scoring": described["scoring"],
    })
    return storage.join(destination, storage.MANIFEST)
