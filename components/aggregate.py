"""KFP component: trial results → scikit-learn-shaped ``cv_results``, best config, summary."""

from typing import List

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Output

from foldwise.components.image import component


@component
def aggregate(
    schema: Input[Artifact],
    fold_results: List[str],
    cv_results: Output[Dataset],
    summary: Output[Artifact],
    best_config: Output[Artifact],
    best_params: Output[Artifact],
    oof_predictions: Output[Dataset],
    best_histories: Output[Artifact],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    scoring: str = "",
    refit: str = "best",
    refit_epochs: str = "fixed",
    objectives: str = "",
    importance: str = "on",
    fold_data: Input[Dataset] = None,
    prepared: Input[Dataset] = None,
    scaler_state: Input[Artifact] = None,
    encoder_state: Input[Artifact] = None,
    model_spec: dict = {},  # noqa: B006 - KFP reads defaults from the signature
):
    """Collect every (config, fold) result into one row per config, ranked by ``scoring``.

    Results fan in as one short parameter per train task, the URI of its results file (a
    manifest: Vertex AI refuses to fan in more than 100 artifacts, and command lines and pod
    specs bound a parameter's size, so neither grows with the configurations a task
    trained); the best configuration's predictions and histories are read the same way.
    A (config, fold) that failed to train scores NaN: its configuration ranks last, gets a
    ``fit_error`` and is never the best; the step fails only when every configuration did.

    Args:
        schema: The preprocess step's schema.
        fold_results: The URIs of the train steps' ``results`` (JSON lists of per-fold
            entries).
        cv_results: CSV in scikit-learn's ``cv_results_`` shape, plus ``fit_error``.
        summary: JSON: task, data, folds, seed, best config's mean and std per metric, the
            failed configurations, versions.
        best_config: JSON ``{"config_id", "params"}``: the best configuration's complete
            model spec (what refit trains and retrain compares).
        best_params: JSON: the best configuration's searched parameters only (the grid's
            keys), as scikit-learn's ``best_params_``; ``{}`` without a grid.
        oof_predictions: Parquet: the best configuration's out-of-fold predictions, all folds.
        best_histories: JSON: the best configuration's per-epoch losses, per fold.
        metrics: The best configuration's mean scores for the KFP UI.
        classification_metrics: Pooled out-of-fold confusion matrix (and ROC curve for two
            classes) of the best configuration.
        scoring: Metric to rank by; empty for ``r2`` (regression) or ``accuracy``.
        refit: ``best`` (the highest mean score), ``one_standard_error`` (the simplest
            configuration within one standard error of it) or ``pareto:<cost>`` (the
            cheapest within it) is refitted and reported as best.
        refit_epochs: ``fixed``: the refit trains the configuration's own epochs; ``cv``: the
            epoch at which its mean validation-fold loss over the folds is lowest.
        objectives: The score and serving costs weighed against each other (e.g.
            ``r2,latency``): ``cv_results`` marks the Pareto front. When they name
            ``latency`` or ``model_bytes``, every configuration's serving model (its first
            fold model that trained, that fold's preprocessing folded in) is measured here,
            all in one process, in turns (``core.serving.costs``), a Bayesian search's too
            (its rounds measured theirs for the study).
        importance: ``on``: the best configuration's permutation importance of each raw
            column, on each fold's validation rows with that fold's model, goes into the
            summary (``core.training.importance``); ``off`` skips it.
        fold_data: The model-ready fold tables (the importance's validation rows).
        prepared: The preprocessed table (raw columns): the rows a serving model is timed on.
        scaler_state: The ``scale_folds`` step's states (each fold's).
        encoder_state: The ``one_hot_encode_folds`` step's states (each fold's).
        model_spec: The run's fixed model options (a user's builder, whose models load with
            its source).
    """
    from foldwise.components import storage
    from foldwise.components.core.jsonio import read_json, write_json
    from foldwise.components.core.results.aggregate import (
        aggregate_search,
        package_versions,
        read_fold_results,
    )
    from foldwise.components.core.scoring.pareto import served

    described = read_json(schema.path)
    texts = [storage.read_bytes(uri).decode("utf-8") for uri in fold_results]
    entries = read_fold_results(texts)  # what the measurement and the importance read
    serving = None
    if served(objectives, refit):
        from foldwise.components.core.data.whole_table import fold_serving_states
        from foldwise.components.core.serving.costs import measure_configs

        serving = measure_configs(
            entries, storage.read_bytes, prepared.path,
            fold_serving_states(described, read_json(scaler_state.path),
                                read_json(encoder_state.path)),
            described, model_spec.get("builder"))
    out = aggregate_search(described, texts, scoring, package_versions(),
                           storage.read_bytes, refit, refit_epochs, objectives, serving)
    if importance == "on" and fold_data is not None:
        from foldwise.components.core.training.importance import of_best

        best_id = out.best_config["config_id"]
        out.summary["permutation_importance"] = of_best(
            [e for e in entries if e["config_id"] == best_id],
            fold_data.path, described, out.summary["scoring"], storage.read_bytes,
            model_spec.get("builder"), seed=int(described["seed"]))
    out.cv_results.to_csv(cv_results.path, index=False)
    write_json(best_config.path, out.best_config)
    write_json(best_params.path, out.best_params)
    out.oof_predictions.to_parquet(oof_predictions.path, index=False)
    write_json(best_histories.path, out.best_histories)
    write_json(summary.path, out.summary)
    for name, value in out.metrics.items():
        metrics.log_metric(name, value)
    if out.confusion_matrix is not None:
        classification_metrics.log_confusion_matrix(out.class_labels, out.confusion_matrix)
    if out.roc_curve is not None:
        classification_metrics.log_roc_curve(*out.roc_curve)
