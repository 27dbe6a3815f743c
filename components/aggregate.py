"""KFP component: fold results → scikit-learn-shaped ``cv_results`` and a summary."""

from typing import List

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from foldwise.components.image import component


@component
def aggregate(
    schema: Input[Artifact],
    fold_results: List[str],
    cv_results: Output[Dataset],
    summary: Output[Artifact],
    metrics: Output[Metrics],
    scoring: str = "",
):
    """Collect every (config, fold) result into one row per config, ranked by ``scoring``.

    Args:
        schema: The preprocess step's schema.
        fold_results: The train steps' JSON results (fanned in as parameters, not artifacts).
        cv_results: CSV in scikit-learn's ``cv_results_`` shape.
        summary: JSON: task, data, folds, seed, best config's mean and std per metric, versions.
        metrics: The best config's mean scores for the KFP UI.
        scoring: Metric to rank by; empty for ``r2`` (regression) or ``accuracy``.
    """
    import json
    from importlib.metadata import version

    from foldwise.components.core import aggregate as agg
    from foldwise.components.core import metrics as scoring_metrics

    with open(schema.path, encoding="utf-8") as handle:
        described = json.load(handle)
    task = described["task"]
    n_classes = len(described["classes"]) if described["classes"] else None
    names = list(scoring_metrics.metric_names(task, n_classes))
    scoring = scoring or scoring_metrics.default_scoring(task)
    results = [json.loads(r) for r in fold_results]
    table = agg.cv_results(results, names)
    table.to_csv(cv_results.path, index=False)
    packages = ["foldwise", "kfp", "tensorflow", "keras", "scikit-learn", "pandas", "numpy"]
    versions = {"python": __import__("platform").python_version(),
                **{name: version(name) for name in packages}}
    described_summary = agg.summary(described, table, names, scoring, versions)
    with open(summary.path, "w", encoding="utf-8") as handle:
        json.dump(described_summary, handle, indent=2, ensure_ascii=False)
    for name, stats in described_summary["metrics"].items():
        if stats["mean"] is not None:
            metrics.log_metric(f"mean_test_{name}", stats["mean"])
