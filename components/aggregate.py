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
    best_params: Output[Artifact],
    oof_predictions: Output[Dataset],
    best_histories: Output[Artifact],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    scoring: str = "",
):
    """Collect every (config, fold) result into one row per config, ranked by ``scoring``.

    Results fan in as small JSON parameters; the best configuration's predictions and
    histories are then read through the URIs they name (a manifest, not hundreds of artifacts).

    Args:
        schema: The preprocess step's schema.
        fold_results: The train steps' JSON results (a list of per-fold entries each).
        cv_results: CSV in scikit-learn's ``cv_results_`` shape.
        summary: JSON: task, data, folds, seed, best config's mean and std per metric, versions.
        best_params: JSON ``{"config_id", "params"}`` of the best configuration.
        oof_predictions: Parquet: the best configuration's out-of-fold predictions, all folds.
        best_histories: JSON: the best configuration's per-epoch losses, per fold.
        metrics: The best configuration's mean scores for the KFP UI.
        classification_metrics: Pooled out-of-fold confusion matrix (and ROC curve for two
            classes) of the best configuration.
        scoring: Metric to rank by; empty for ``r2`` (regression) or ``accuracy``.
    """
    import io
    import json
    import platform
    from importlib.metadata import version

    import pandas as pd

    from foldwise.components import storage
    from foldwise.components.core import aggregate as agg
    from foldwise.components.core import metrics as scoring_metrics
    from foldwise.components.core.jsonio import class_count, read_json, write_json

    described = read_json(schema.path)
    task, classes, n_classes = described["task"], described["classes"], class_count(described)
    names = list(scoring_metrics.metric_names(task, n_classes))
    scoring = scoring or scoring_metrics.default_scoring(task)
    results = []
    for task_result in fold_results:  # each train task reports a list, one entry per fold
        loaded = json.loads(task_result)
        results.extend(loaded if isinstance(loaded, list) else [loaded])
    table = agg.cv_results(results, names)
    table.to_csv(cv_results.path, index=False)

    best_id = agg.best_config_id(table, scoring)
    best = sorted((r for r in results if r["config_id"] == best_id), key=lambda r: r["fold"])
    write_json(best_params.path, {"config_id": best_id, "params": best[0]["params"]})
    frames, histories, read = [], {}, {}
    for r in best:  # a task's files hold all its folds: read each once, take this fold's part
        if r["predictions"] not in read:
            read[r["predictions"]] = pd.read_parquet(
                io.BytesIO(storage.read_bytes(r["predictions"])))
            read[r["history"]] = json.loads(storage.read_bytes(r["history"]))
        frame = read[r["predictions"]]
        mine = (frame["config_id"] == r["config_id"]) & (frame["fold"] == r["fold"])
        frames.append(frame[mine].drop(columns="config_id"))
        histories[str(r["fold"])] = read[r["history"]][r["config_id"]][str(r["fold"])]
    pooled = agg.pooled_predictions(frames)
    pooled.to_parquet(oof_predictions.path, index=False)
    write_json(best_histories.path, histories)

    packages = ["foldwise", "kfp", "tensorflow", "keras", "scikit-learn", "pandas", "numpy"]
    versions = {"python": platform.python_version(), **{p: version(p) for p in packages}}
    described_summary = agg.summary(described, table, names, scoring, versions)
    write_json(summary.path, described_summary)
    for name, stats in described_summary["metrics"].items():
        if stats["mean"] is not None:
            metrics.log_metric(f"mean_test_{name}", stats["mean"])
    if task == "classification":
        y_true = pooled["y_true"].to_numpy()
        proba = pooled[agg.probability_columns(pooled)].to_numpy()
        classification_metrics.log_confusion_matrix(
            [str(c) for c in classes], scoring_metrics.confusion_matrix(y_true, proba, n_classes))
        if n_classes == 2:
            fpr, tpr, thresholds = scoring_metrics.roc_curve(y_true, proba[:, 1])
            classification_metrics.log_roc_curve(fpr, tpr, thresholds)
