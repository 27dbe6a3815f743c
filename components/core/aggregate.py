"""Fold results → scikit-learn's ``cv_results_`` table and a run summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from foldwise.components.core.errors import FoldwiseError


def cv_results(fold_results: list[dict], metric_names: list[str]) -> pd.DataFrame:
    """Build one row per configuration with scikit-learn's ``cv_results_`` column names.

    Args:
        fold_results: One dict per (config, fold) with ``config_id``, ``params``, ``fold``,
            ``scores`` (metric → value), ``fit_time`` and ``score_time``.
        metric_names: Metrics to report, in order.

    Returns:
        Columns ``config_id``, ``params`` (JSON), ``param_<name>``, ``split<k>_test_<metric>``,
        ``mean_test_<metric>``, ``std_test_<metric>``, ``rank_test_<metric>``,
        ``mean_fit_time``, ``std_fit_time``, ``mean_score_time``, ``std_score_time``; rows in
        order of first appearance of each config.
    """
    if not fold_results:
        raise FoldwiseError("no fold results to aggregate")
    by_config: dict[str, list[dict]] = {}
    for result in fold_results:
        by_config.setdefault(result["config_id"], []).append(result)
    folds = sorted({r["fold"] for r in fold_results})
    param_names = sorted({name for r in fold_results for name in r["params"]})

    rows = []
    for cid, results in by_config.items():
        by_fold = {r["fold"]: r for r in results}
        if sorted(by_fold) != folds or len(by_fold) != len(results):
            raise FoldwiseError(
                f"config {cid} has results for folds {sorted(r['fold'] for r in results)}, "
                f"expected each of {folds} once"
            )
        params = results[0]["params"]
        row: dict = {"config_id": cid, "params": json.dumps(params, sort_keys=True)}
        for name in param_names:
            value = params.get(name)
            row[f"param_{name}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
        for metric in metric_names:
            values = np.array([by_fold[k]["scores"][metric] for k in folds], dtype="float64")
            for k, value in zip(folds, values, strict=True):
                row[f"split{k}_test_{metric}"] = value
            row[f"mean_test_{metric}"] = float(np.mean(values))
            row[f"std_test_{metric}"] = float(np.std(values))
        for timing in ("fit_time", "score_time"):
            values = np.array([by_fold[k][timing] for k in folds], dtype="float64")
            row[f"mean_{timing}"] = float(np.mean(values))
            row[f"std_{timing}"] = float(np.std(values))
        rows.append(row)
    table = pd.DataFrame(rows)
    for metric in metric_names:
        means = table[f"mean_test_{metric}"].to_numpy()
        # Like scikit-learn: best is 1, ties share the lowest rank, NaN ranks last.
        filled = np.where(np.isnan(means), -np.inf, means)
        table[f"rank_test_{metric}"] = rankdata(-filled, method="min").astype("int64")
    ordered = ["config_id", "params", *[f"param_{n}" for n in param_names]]
    for metric in metric_names:
        ordered += [f"split{k}_test_{metric}" for k in folds]
        ordered += [f"mean_test_{metric}", f"std_test_{metric}", f"rank_test_{metric}"]
    ordered += ["mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"]
    return table[ordered]


def summary(schema: dict, table: pd.DataFrame, metric_names: list[str], scoring: str,
            versions: dict) -> dict:
    """The run's summary: data, folds, the best configuration's mean and std per metric."""
    by_id = table.set_index("config_id")
    best = by_id.loc[best_config_id(table, scoring)]
    baseline_id = best_config_id(table, scoring, "sklearn_mlp")
    baseline = None
    if baseline_id is not None:
        row = by_id.loc[baseline_id]
        baseline = {"config_id": baseline_id, "params": json.loads(row["params"]),
                    "mean": _json_float(row[f"mean_test_{scoring}"]),
                    "std": _json_float(row[f"std_test_{scoring}"])}
    return {
        "task": schema["task"],
        "target": schema["target"],
        "classes": schema["classes"],
        "rows_in": schema["rows_in"],
        "rows_used": schema["rows_used"],
        "rows_dropped": len(schema["rows_dropped_missing_target"]),
        "rows_dropped_missing_target": schema["rows_dropped_missing_target"],
        "numeric_columns": schema["numeric"],
        "categorical_columns": schema["categorical"],
        "folds": schema["folds"],
        "fold_strategy": schema["fold_strategy"],
        "seed": schema["seed"],
        "scoring": scoring,
        "configs": len(table),
        "best_config_id": best.name,
        "best_params": json.loads(best["params"]),
        "metrics": {
            metric: {"mean": _json_float(best[f"mean_test_{metric}"]),
                     "std": _json_float(best[f"std_test_{metric}"])}
            for metric in metric_names
        },
        "best_baseline": baseline,
        "data": schema.get("data"),
        "versions": versions,
    }


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def best_config_id(table: pd.DataFrame, scoring: str, estimator: str = "keras") -> str | None:
    """The ``estimator`` configuration ranked first by ``scoring`` (first listed among ties).

    The best Keras configuration is the one refitted and exported, even when a baseline
    scores higher; ``None`` if there is no configuration of that estimator.
    """
    column = f"rank_test_{scoring}"
    if column not in table.columns:
        known = [c.removeprefix("rank_test_") for c in table.columns if c.startswith("rank_")]
        raise FoldwiseError(f"scoring {scoring!r} is not reported; use one of {', '.join(known)}")
    candidates = table[table["param_estimator"] == estimator]
    if candidates.empty:
        return None
    return str(candidates.sort_values(column, kind="stable").iloc[0]["config_id"])


def pooled_predictions(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One configuration's out-of-fold predictions of every fold, one line per row, by row."""
    pooled = pd.concat(frames, ignore_index=True).sort_values("row", kind="stable")
    if pooled["row"].duplicated().any():
        raise FoldwiseError("a row was predicted by more than one fold: folds overlap")
    return pooled.reset_index(drop=True)


def probability_columns(frame: pd.DataFrame) -> list[str]:
    """The ``proba_<class>`` columns of a predictions table, in class order."""
    return [c for c in frame.columns if c.startswith("proba_")]
