"""KFP component: train fresh models for configurations × folds, packed where they can."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from foldwise.components.image import component


@component
def train(
    fold_data: Input[Dataset],
    schema: Input[Artifact],
    plan: Input[Artifact],
    trial: int,
    model: Output[Model],
    history: Output[Artifact],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    results: Output[Artifact],
    seed: int = 0,
    model_spec: dict = {},  # noqa: B006 - KFP reads defaults from the signature
) -> str:
    """Fit a fresh model per (configuration, fold) on the other folds' rows; score the fold.

    Every Keras model trains in the one engine (``training.vmapped``, Keras on JAX): models of one
    program are trained at once as one vectorized computation, the same models as one task
    each; TensorFlow is not imported, unless the plan found that a user's builder runs
    TensorFlow operations (the task's ``backend``). The state after each finished epoch is
    kept under the ``model`` output, so a task that was killed (a pre-empted node) and
    retried resumes from its last epoch and ends with the same models.

    Args:
        fold_data: Folder of per-fold model-ready tables (``fold-<k>.parquet``).
        schema: The preprocess step's schema.
        plan: The plan_trials step's plan: this task's entry holds its configurations
            (``[{"config_id", "params"}, ...]``: model, optimizer and training parameters, each
            id checked against its parameters) and validation folds (each checked against
            the fold recorded in its table).
        trial: This task's number in ``plan``.
        model: Folder with ``<config_id>/fold-<k>/`` per model, holding ``model.keras`` (or
            ``mlp.json`` for the scikit-learn baseline) and ``target_scaling.json``; a failed
            trial's folder holds ``fit_error.txt`` (and the model, if it diverged).
        history: JSON ``{config_id: {fold: per-epoch losses}}``.
        predictions: Parquet out-of-fold predictions: ``config_id``, ``row``, ``fold``,
            ``y_true`` and ``prediction`` (regression) or ``proba_<class>`` columns.
        metrics: Each model's finite scores (``<config_id>_fold<k>_<metric>``) for the KFP UI.
        classification_metrics: Confusion matrix over these folds of the first configuration
            that trained on all of them (classification only).
        results: JSON list, one entry per (configuration, fold): ``config_id``, ``params``,
            ``fold``,
        ``scores``, ``fit_error``, ``fit_time``, ``score_time``, ``epochs_run``, ``n_train``,
        ``n_validation``, ``devices`` and the URIs of ``predictions`` and ``history`` (the
            aggregate step reads the best configuration's part). A trial whose training
            raised or diverged has null scores and its ``fit_error``; the task itself does
            not fail.
        seed: Seed of weights, shuffling and dropout.
        model_spec: The run's fixed model options: a user's builder travels here with its
            source, once (each configuration names it by reference).

    Returns:
        The URI of ``results``: what the aggregate step collects (a short parameter per
        task, however many configurations the task trained).
    """
    import shutil

    from foldwise.components import storage
    from foldwise.components.core.jsonio import dumps, read_json, write_json
    from foldwise.components.core.training import resume
    from foldwise.components.core.training.trials import checkpoint_dir, run_trials

    task = read_json(plan.path)["tasks"][int(trial)]
    if not task["configs"]:  # a stage with nothing to train (a loop may not be empty)
        import os

        import pandas as pd

        write_json(history.path, {})
        pd.DataFrame({"config_id": [], "row": [], "fold": []}).to_parquet(predictions.path,
                                                                         index=False)
        os.makedirs(model.path, exist_ok=True)
        resume.write_record(model.path, {})
        with open(results.path, "w", encoding="utf-8") as handle:
            handle.write("[]")
        return results.uri
    out = run_trials(fold_data.path, read_json(schema.path), task["configs"], task["folds"],
                     seed=seed,
                     model_dir=model.path, predictions_uri=predictions.uri,
                     history_uri=history.uri, builder=model_spec.get("builder"),
                     tags=task.get("tags", {}), model_uri=model.uri,
                     read_bytes=storage.read_bytes,
                     tensorflow=task.get("backend") == "tensorflow")
    write_json(history.path, out.histories)
    out.predictions.to_parquet(predictions.path, index=False)
    resume.write_record(model.path, out.records)  # last: it points at the files above
    shutil.rmtree(checkpoint_dir(model.path), ignore_errors=True)  # every output is written
    for name, value in out.metrics.items():
        metrics.log_metric(name, value)
    metrics.metadata["trained_on"] = out.devices
    if out.confusion_matrix is not None:
        classification_metrics.log_confusion_matrix(out.class_labels, out.confusion_matrix)
    with open(results.path, "w", encoding="utf-8") as handle:
        handle.write(dumps(out.summaries))
    return results.uri
