"""Fold results → scikit-learn's ``cv_results_`` table, the best configuration and a summary.

Failures are data, as with scikit-learn's ``error_score=np.nan``: a (configuration, fold)
whose training raised or diverged comes with NaN scores and a ``fit_error``; its
configuration's mean is NaN, it ranks last and is never chosen while another configuration
trained. A search fails (:class:`FoldwiseError`, naming the first error) only when every
configuration that could be chosen failed.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.jsonio import class_count, finite_float
from foldwise.components.core.models.estimators import keras_names, named
from foldwise.components.core.scoring import metrics as scoring_metrics
from foldwise.components.core.scoring import pareto
from foldwise.components.core.scoring.calibration import calibration
from foldwise.components.core.scoring.stats import corrected_ttest, one_standard_error

VERSIONED_PACKAGES = ("foldwise", "kfp", "tensorflow", "keras", "scikit-learn", "pandas",
                      "numpy")


@dataclass
class Aggregated:
    """What the aggregate step writes and logs."""

    cv_results: pd.DataFrame
    best_config: dict  # {"config_id", "params"}: the best configuration's complete spec
    best_params: dict  # its searched parameters only, as scikit-learn's best_params_
    oof_predictions: pd.DataFrame  # the best configuration's pooled out-of-fold predictions
    best_histories: dict  # the best configuration's per-epoch losses, by fold
    summary: dict
    metrics: dict[str, float]  # finite mean scores of the best configuration, for the KFP UI
    class_labels: list[str] | None  # classification: the classes as strings
    confusion_matrix: list | None  # classification: pooled out-of-fold, of the best
    roc_curve: tuple[list, list, list] | None  # two classes: (fpr, tpr, thresholds)


def aggregate_search(schema: dict, task_results: list[str], scoring: str, versions: dict,
                     read_bytes: Callable[[str], bytes], refit: str = "best",
                     refit_epochs: str = "fixed", objectives: str = "",
                     serving: dict | None = None) -> Aggregated:
    """Rank every configuration, pick the best and gather its out-of-fold predictions.

    Args:
        schema: The preprocess step's schema.
        task_results: The train tasks' JSON results (each a list of per-fold entries, or
            one entry).
        scoring: Metric to rank by; empty for the task's default (``r2`` or ``accuracy``).
        versions: Package versions to record in the summary (see :func:`package_versions`).
        read_bytes: Reads the file a URI names (local path or ``gs://``): the best
            configuration's predictions and histories are read through the URIs its results
            name.
        refit: Which configuration is refitted: ``best`` (the highest mean score) or
            ``one_standard_error`` (the simplest within one standard error of it:
            :func:`choose`).
        refit_epochs: ``fixed``: refit with the configuration's own epochs; ``cv``: with
            the epoch at which its mean validation-fold loss over the folds is lowest
            (:func:`cv_epoch`; its own epochs when no loss was recorded per epoch).
        objectives: The score and costs weighed against each other
            (``core.scoring.pareto``, e.g. ``"r2,latency"``): ``cv_results`` marks the
            configurations on their Pareto front (``pareto_front``) and the summary lists
            them; a ``pareto:<cost>`` refit needs its cost measured.
        serving: Each configuration's serving costs (``core.serving.costs``), when
            measured: ``latency_ms``, ``latency_iqr_ms`` and ``model_bytes`` join
            ``cv_results``; a configuration that could not be measured (``{"error"}``) is
            named in the summary's ``serving_errors``.

    Raises:
        FoldwiseError: Every configuration that could be chosen failed (the first error is
            named), ``scoring`` is not reported, or the results do not fit together.
    """
    task, classes, n_classes = schema["task"], schema["classes"], class_count(schema)
    names = list(scoring_metrics.metric_names(task, n_classes))
    scoring = scoring or scoring_metrics.default_scoring(task)
    wanted = pareto.parse(objectives, scoring, names)
    wanted = pareto.Objectives(wanted.score, pareto.measured(wanted, refit))
    results = read_fold_results(task_results)
    table = cv_results(results, names, serving)
    add_comparisons(table, scoring, *fold_sizes(results))
    if wanted.several:
        add_front(table, wanted)
    described = summary(schema, table, names, scoring, versions, refit)
    described["objectives"] = wanted.names
    if wanted.several:
        described["pareto_front"] = front_summary(table, wanted)
    if serving is not None:
        described["serving_errors"] = {cid: found["error"] for cid, found in serving.items()
                                       if "error" in found}
    best_id = described["best_config_id"]
    best = [r for r in results if r["config_id"] == best_id]
    if any(r.get("resource") == "epochs" for r in best):  # the models of its last rung
        last = max(int(r["rung"]) for r in best)
        best = [r for r in best if int(r["rung"]) == last]
    best = sorted(best, key=lambda r: r["fold"])
    if "iter" in table.columns:  # halving: its rungs, as scikit-learn's fitted attributes
        described["halving"] = {**halving_summary(table), "resource": "epochs" if any(
            r.get("resource") == "epochs" for r in results) else "folds"}
    # Which configurations trained through TensorFlow's fit instead of the one engine (a
    # builder that runs TensorFlow operations), and the operation the plan found.
    described["tensorflow_operations"] = {
        r["config_id"]: r["devices"]["tensorflow_operation"] for r in results
        if (r.get("devices") or {}).get("tensorflow_operation")}
    described["best_split_times"] = {timing: [float(r[timing]) for r in best]
                                     for timing in ("fit_time", "score_time")}
    pooled, histories = best_predictions(
        best, read_bytes, int((schema.get("splits") or {}).get("repeats", 1)))
    described["best_epoch"] = cv_epoch(histories)
    refitted = dict(best[0]["params"])
    if refit_epochs not in REFIT_EPOCHS:
        raise FoldwiseError(f"refit_epochs must be one of {', '.join(REFIT_EPOCHS)}, got "
                            f"{refit_epochs!r}")
    if refit_epochs == "cv" and described["best_epoch"]:
        refitted["epochs"] = described["best_epoch"]
    described["refit_epochs"] = int(refitted.get("epochs", 0)) or None
    logged = {f"mean_test_{name}": stats["mean"] for name, stats in described["metrics"].items()
              if stats["mean"] is not None}
    labels = matrix = roc = None
    if task == "classification":
        labels = [str(c) for c in classes]
        y_true = pooled["y_true"].to_numpy()
        proba = pooled[probability_columns(pooled)].to_numpy()
        matrix = scoring_metrics.confusion_matrix(y_true, proba, n_classes)
        described["calibration"] = calibration(y_true, proba)
        if n_classes == 2:
            roc = scoring_metrics.roc_curve(y_true, proba[:, 1])
    searched = best[0].get("searched", {})  # keys sorted, as scikit-learn's grid sorts them
    return Aggregated(table, {"config_id": best_id, "params": refitted},
                      {key: searched[key] for key in sorted(searched)}, pooled, histories,
                      described, logged, labels, matrix, roc)


def read_fold_results(task_results: list[str]) -> list[dict]:
    """The train tasks' JSON results as one list of per-(configuration, fold) entries.

    Scores written as ``null`` (JSON has no NaN) come back as NaN; entries of an older
    result without ``fit_error`` get an empty one.
    """
    results = []
    for task_result in task_results:
        loaded = json.loads(task_result)
        for entry in loaded if isinstance(loaded, list) else [loaded]:
            scores = {name: math.nan if value is None else float(value)
                      for name, value in entry["scores"].items()}
            results.append({**entry, "scores": scores, "fit_error": entry.get("fit_error") or ""})
    return results


def best_predictions(best: list[dict], read_bytes: Callable[[str], bytes],
                     repeats: int = 1) -> tuple[pd.DataFrame, dict]:
    """One configuration's pooled out-of-fold predictions and its per-fold histories.

    Args:
        best: The configuration's results, one per fold, naming the ``predictions`` (Parquet)
            and ``history`` (JSON) files of the task that trained it.
        read_bytes: Reads the file a URI names.
        repeats: How many times the folds predict each row (repeated K-fold).

    Returns:
        ``(predictions of every fold by row, {fold: history})``.
    """
    frames, histories, read = [], {}, {}
    for r in best:  # a task's files hold all its folds: read each once, take this fold's part
        if r["predictions"] not in read:
            read[r["predictions"]] = pd.read_parquet(io.BytesIO(read_bytes(r["predictions"])))
        if r["history"] not in read:
            read[r["history"]] = json.loads(read_bytes(r["history"]))
        frame = read[r["predictions"]]
        mine = (frame["config_id"] == r["config_id"]) & (frame["fold"] == r["fold"])
        frames.append(frame[mine].drop(columns="config_id"))
        histories[str(r["fold"])] = read[r["history"]][r["config_id"]][str(r["fold"])]
    return pooled_predictions(frames, repeats), histories


def package_versions() -> dict:
    """Python's and the main packages' versions, as installed where the step runs."""
    import platform
    from importlib.metadata import version

    return {"python": platform.python_version(),
            **{name: version(name) for name in VERSIONED_PACKAGES}}


def cv_results(fold_results: list[dict], metric_names: list[str],
               serving: dict | None = None) -> pd.DataFrame:
    """Build one row per configuration with scikit-learn's ``cv_results_`` column names.

    Args:
        fold_results: One dict per (config, fold) with ``config_id``, ``params``, ``fold``,
            ``scores`` (metric → value), ``fit_time``, ``score_time`` and optionally
            ``fit_error`` (why the fold failed; empty or absent when it did not).
        metric_names: Metrics to report, in order.
        serving: Each configuration's measured serving costs (``core.serving.costs``):
            with it, ``latency_ms``, ``latency_iqr_ms`` and ``model_bytes`` follow
            ``n_parameters`` (NaN where a configuration was not measured).

    Returns:
        Columns ``config_id``, ``params`` (JSON), ``param_<name>``, ``split<k>_test_<metric>``,
        ``mean_test_<metric>``, ``std_test_<metric>``, ``rank_test_<metric>``,
        ``mean_fit_time``, ``std_fit_time``, ``mean_score_time``, ``std_score_time`` and
        ``fit_error`` (the first failed fold's error, empty when none failed); rows in order
        of first appearance of each config. A failed fold scores NaN, so its configuration's
        mean is NaN and it ranks last. A Bayesian search's rows (results tagged with their
        ``round``) start with ``round`` (the round that asked the configuration) and
        ``n_resources`` (the folds it was scored on: fewer when it was raced out, its other
        folds NaN); a raced-out configuration ranks after every one scored on every fold.
    """
    if not fold_results:
        raise FoldwiseError("no fold results to aggregate")
    by_config: dict[str, list[dict]] = {}
    for result in fold_results:
        by_config.setdefault(result["config_id"], []).append(result)
    folds = sorted({r["fold"] for r in fold_results})
    param_names = sorted({name for r in fold_results for name in r["params"]})
    halving = any("rung" in r for r in fold_results)
    in_rounds = any("round" in r for r in fold_results)

    rows = []
    for cid, results in by_config.items():
        by_fold = {(r["fold"], r.get("rung") if r.get("resource") == "epochs" else None): r
                   for r in results}
        if len(by_fold) != len(results) or (not (halving or in_rounds) and sorted(
                fold for fold, _ in by_fold) != folds):
            raise FoldwiseError(
                f"config {cid} has results for folds {sorted(r['fold'] for r in results)}, "
                f"expected each of {folds} once"
            )
        if in_rounds:
            rows.append({"round": min(int(r["round"]) for r in results),
                         "n_resources": len(results),
                         **_row(cid, results, folds, param_names, metric_names)})
            continue
        if not halving:
            rows.append(_row(cid, results, folds, param_names, metric_names))
            continue
        # One row per rung the candidate ran in, as scikit-learn's Halving*SearchCV gives one
        # row per (candidate, iteration): by folds, on every fold scored up to that rung; by
        # epochs, that rung's models (every fold, trained to its epochs).
        for rung in sorted({int(r["rung"]) for r in results}):
            scored = [r for r in results if (int(r["rung"]) == rung if r.get("resource") ==
                                             "epochs" else int(r["rung"]) <= rung)]
            row = _row(cid, scored, folds, param_names, metric_names)
            resources = max(int(r["n_resources"]) for r in scored)
            rows.append({"iter": rung, "n_resources": resources, **row})
    table = pd.DataFrame(rows)
    if halving:
        table = table.sort_values("iter", kind="stable").reset_index(drop=True)
    for metric in metric_names:
        means = table[f"mean_test_{metric}"].to_numpy()
        # Like scikit-learn: best is 1, ties share the lowest rank, NaN ranks last.
        filled = np.where(np.isnan(means), -np.inf, means)
        if in_rounds:  # a raced-out configuration after every fully scored one
            partial = (table["n_resources"].to_numpy() < len(folds)).astype(int)
            order = pd.DataFrame({"partial": partial + 2 * np.isnan(means), "score": -filled})
            ranks = order.apply(tuple, axis=1).rank(method="min")
        else:
            ranks = pd.Series(-filled).rank(method="min")
        table[f"rank_test_{metric}"] = ranks.to_numpy(dtype="int64")
    ordered = ["config_id", "params", *[f"param_{n}" for n in param_names]]
    if halving:
        ordered = ["iter", "n_resources", *ordered]
    if in_rounds:
        ordered = ["round", "n_resources", *ordered]
    for metric in metric_names:
        ordered += [f"split{k}_test_{metric}" for k in folds]
        ordered += [f"mean_test_{metric}", f"std_test_{metric}", f"rank_test_{metric}"]
    ordered += ["mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time",
                "n_parameters"]
    if serving is not None:  # measured (core.serving.costs)
        for column in SERVING_COLUMNS:
            table[column] = [float(serving.get(cid, {}).get(column, np.nan))
                             for cid in table["config_id"]]
        ordered += list(SERVING_COLUMNS)
    return table[[*ordered, "fit_error"]]


def _row(cid: str, results: list[dict], folds: list, param_names: list[str],
         metric_names: list[str]) -> dict:
    """One configuration's ``cv_results`` row over ``results`` (NaN for folds not among them).

    Means and standard deviations are over the folds it was scored on; a failed fold makes
    them NaN.
    """
    by_fold = {r["fold"]: r for r in results}
    scored = [k for k in folds if k in by_fold]
    params = results[0]["params"]
    errors = {k: by_fold[k].get("fit_error") or "" for k in scored}
    row: dict = {"config_id": cid, "params": json.dumps(params, sort_keys=True)}
    for name in param_names:
        value = params.get(name)
        # canonical JSON: a mapping's keys come back from a pipeline parameter in any order
        row[f"param_{name}"] = (json.dumps(value, sort_keys=True)
                                if isinstance(value, (list, dict)) else value)
    for metric in metric_names:
        values = np.array([np.nan if errors[k] else by_fold[k]["scores"][metric]
                           for k in scored], dtype="float64")
        for k in folds:
            row[f"split{k}_test_{metric}"] = (values[scored.index(k)] if k in by_fold
                                              else np.nan)
        row[f"mean_test_{metric}"] = float(np.mean(values))
        row[f"std_test_{metric}"] = float(np.std(values))
    for timing in ("fit_time", "score_time"):
        values = np.array([by_fold[k][timing] for k in scored], dtype="float64")
        row[f"mean_{timing}"] = float(np.mean(values))
        row[f"std_{timing}"] = float(np.std(values))
    counts = [r.get("n_parameters") for r in results if r.get("n_parameters") is not None]
    row["n_parameters"] = int(counts[0]) if counts else np.nan
    row["fit_error"] = next((errors[k] for k in scored if errors[k]), "")
    return row


def fold_sizes(results: list[dict]) -> tuple[float, float]:
    """Mean training and validation rows per fold (what the corrected t-test weighs)."""
    trained = [float(r["n_train"]) for r in results if r.get("n_train")]
    scored = [float(r["n_validation"]) for r in results if r.get("n_validation")]
    return (float(np.mean(trained)) if trained else 1.0,
            float(np.mean(scored)) if scored else 1.0)


def final_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's last row (halving: its last rung; else the table itself)."""
    if "iter" not in table.columns:
        return table
    return table.drop_duplicates("config_id", keep="last")


def eligible_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows the best is chosen from.

    The last rung's (halving), those scored on every fold (Bayesian search), else all.
    """
    if "round" in table.columns:
        return table[table["n_resources"] == table["n_resources"].max()]
    if "iter" not in table.columns:
        return table
    return table[table["iter"] == table["iter"].max()]


def add_comparisons(table: pd.DataFrame, scoring: str, n_train: float, n_test: float) -> None:
    """Add each row's paired comparison with the best-scoring configuration, in place.

    ``diff_vs_best_<scoring>``: the mean over shared folds of (this row's score − the
    best's); ``pvalue_vs_best_<scoring>``: Nadeau and Bengio's corrected resampled t-test's
    one-sided p-value that the best is no better than this one (small: the best is really
    better; NaN for the best itself, a failed row, or fewer than two shared folds). The
    best is the top mean among the rows the best is chosen from (:func:`eligible_rows`).
    """
    split_columns = [c for c in table.columns
                     if c.startswith("split") and c.endswith(f"_test_{scoring}")]
    chosen = eligible_rows(table)
    means = chosen[f"mean_test_{scoring}"].to_numpy(dtype="float64")
    if not np.isfinite(means).any():
        table[f"diff_vs_best_{scoring}"] = np.nan
        table[f"pvalue_vs_best_{scoring}"] = np.nan
        return
    best = chosen.iloc[int(np.nanargmax(np.where(np.isfinite(means), means, -np.inf)))]
    best_scores = best[split_columns].to_numpy(dtype="float64")
    diffs, pvalues = [], []
    for _, row in table.iterrows():
        scores = row[split_columns].to_numpy(dtype="float64")
        shared = np.isfinite(scores) & np.isfinite(best_scores)
        difference = scores[shared] - best_scores[shared]
        diffs.append(float(np.mean(difference)) if shared.any() else np.nan)
        same = row["config_id"] == best["config_id"]
        pvalues.append(np.nan if same else corrected_ttest(-difference, n_train, n_test)[1])
    table[f"diff_vs_best_{scoring}"] = diffs
    table[f"pvalue_vs_best_{scoring}"] = pvalues


def halving_summary(table: pd.DataFrame) -> dict:
    """scikit-learn's fitted halving attributes, read from a halving search's table."""
    rungs = sorted(int(i) for i in table["iter"].unique())
    return {"n_iterations": len(rungs),
            "n_resources": [int(table.loc[table["iter"] == i, "n_resources"].max())
                            for i in rungs],
            "n_candidates": [int((table["iter"] == i).sum()) for i in rungs]}


def summary(schema: dict, table: pd.DataFrame, metric_names: list[str], scoring: str,
            versions: dict, refit: str = "best") -> dict:
    """The run's summary: data, folds, the best configuration's mean and std per metric.

    ``failed_configs`` lists each configuration that failed with its first error;
    ``best_baseline`` is ``None`` when no baseline trained. ``best_config_id`` is the
    configuration ``refit`` chooses (:func:`choose`); ``top_config_id`` the highest mean.

    Raises:
        FoldwiseError: Every Keras configuration failed (the first error is named).
    """
    full, table = table, final_rows(table)
    by_id = table.set_index("config_id")
    top_id = best_config_id(eligible_rows(full), scoring)
    best_id = (choose(eligible_rows(full), scoring, refit, standard_error_correction(schema))
               if top_id is not None else None)
    if best_id is None:
        raise FoldwiseError(_all_failed(table))
    best = by_id.loc[best_id]
    if not math.isfinite(float(best[f"mean_test_{scoring}"])):
        raise FoldwiseError(
            f"no configuration has a finite mean {scoring}: with {schema['rows_used']} rows in "
            f"{schema['folds']} folds a fold's validation rows are too few (or too alike) to "
            "score; use fewer folds, more rows or another --scoring")
    baseline_id = best_config_id(table, scoring, named("baseline"))
    baseline = None
    if baseline_id is not None:
        row = by_id.loc[baseline_id]
        baseline = {"config_id": baseline_id, "params": json.loads(row["params"]),
                    "mean": finite_float(row[f"mean_test_{scoring}"]),
                    "std": finite_float(row[f"std_test_{scoring}"])}
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
        "splits": schema.get("splits"),
        "seed": schema["seed"],
        "scoring": scoring,
        "configs": len(table),
        "refit": refit,
        "best_config_id": best.name,
        "top_config_id": top_id,
        "best_params": json.loads(best["params"]),
        "metrics": {
            metric: {"mean": finite_float(best[f"mean_test_{metric}"]),
                     "std": finite_float(best[f"std_test_{metric}"])}
            for metric in metric_names
        },
        "best_baseline": baseline,
        "failed_configs": failed_configs(table),
        "data": schema.get("data"),
        "versions": versions,
    }


REFIT_RULES = options.choices("refit")
REFIT_EPOCHS = options.choices("refit_epochs")


def cv_epoch(histories: dict) -> int | None:
    """The epoch (from 1) at which the mean validation-fold loss over the folds is lowest.

    Over the epochs every fold ran (early stopping or divergence can end one sooner);
    ``None`` when a fold has no validation loss per epoch or none is finite.
    """
    curves = [h.get("test_loss") or [] for h in histories.values()]
    if not curves or not all(curves):
        return None
    epochs = min(len(curve) for curve in curves)
    mean = np.mean(np.asarray([curve[:epochs] for curve in curves], dtype="float64"), axis=0)
    if not np.isfinite(mean).any():
        return None
    return int(np.nanargmin(np.where(np.isfinite(mean), mean, np.nan))) + 1


def standard_error_correction(schema: dict) -> float:
    """Nadeau and Bengio's ``n_test / n_train`` for the one-standard-error rules, or 0.

    Repeated K-fold's ``K * R`` scores share their rows, so their spread over ``sqrt(K * R)``
    would understate the error: it is corrected by ``1 / (K - 1)``, each fold's validation
    rows over its training rows. Plain and time-ordered folds keep Breiman's ``1 / K``.
    """
    splits = schema.get("splits") or {}
    if int(splits.get("repeats", 1)) > 1:
        return 1.0 / (int(splits["folds_per_repeat"]) - 1)
    return 0.0


def choose(table: pd.DataFrame, scoring: str, refit: str = "best",
           correction: float = 0.0) -> str | None:
    """The configuration to refit: the best Keras one, or by a one-standard-error rule.

    ``pareto:<cost>``: the Keras configuration on the Pareto front with the lowest cost among
    those within one standard error of the best mean (``core.scoring.pareto.pick``); a
    latency is lower only by more than the fastest's interquartile range.

    ``one_standard_error``: among Keras configurations that did not fail, the simplest whose
    mean is at least the best mean minus the best's standard error (its folds' sample
    standard deviation over ``sqrt(K)``; under repeated K-fold, times
    ``sqrt(1 + K * R * correction)``: :func:`standard_error_correction`).
    Simplest: fewest trainable weights, then fewest epochs, then the strongest L2 penalty
    and dropout; among equally simple ones the higher mean, then the one listed first.

    Raises:
        FoldwiseError: An unknown rule.
    """
    if refit not in REFIT_RULES:
        raise FoldwiseError(f"refit must be one of {', '.join(REFIT_RULES)}, got {refit!r}")
    if refit == "best":
        return best_config_id(table, scoring)
    rows = table[table["param_estimator"].isin(keras_names()) & ~_failed(table)]
    if rows.empty:
        return None
    folds = int(rows.iloc[0][[c for c in rows.columns if c.startswith("split")
                              and c.endswith(f"_test_{scoring}")]].notna().sum())
    if refit.startswith(pareto.PARETO):
        column = pareto.COSTS[refit.removeprefix(pareto.PARETO)]
        if column not in rows or not rows[column].notna().any():
            raise FoldwiseError(
                f"refit {refit} needs each configuration's {column}, which this run did not "
                f"measure: add {refit.removeprefix(pareto.PARETO)} to objectives")
        if "pareto_front" in rows and rows["pareto_front"].any():  # it picks from the front
            rows = rows[rows["pareto_front"].astype(bool)]
        spread = rows[pareto.SPREAD_COLUMN] if column == pareto.COSTS["latency"] else None
        position = pareto.pick(rows[f"mean_test_{scoring}"], rows[f"std_test_{scoring}"],
                               rows[column], folds, spread, correction)
        return str(rows.iloc[position]["config_id"])
    weights = rows["n_parameters"].to_numpy(dtype="float64") if "n_parameters" in rows \
        else np.full(len(rows), np.nan)
    def column(name: str, sign: float = 1.0) -> list[float]:
        values = (pd.to_numeric(rows[f"param_{name}"], errors="coerce").to_numpy(
            dtype="float64") if f"param_{name}" in rows else np.zeros(len(rows)))
        return [sign * v if math.isfinite(v) else math.inf for v in values]

    complexity = list(zip([w if math.isfinite(w) else math.inf for w in weights],
                          column("epochs"), column("l2", -1.0), column("dropout", -1.0),
                          strict=True))
    position = one_standard_error(rows[f"mean_test_{scoring}"].to_numpy(dtype="float64"),
                                  rows[f"std_test_{scoring}"].to_numpy(dtype="float64"),
                                  folds, complexity, correction=correction)
    return str(rows.iloc[position]["config_id"])


SERVING_COLUMNS = (pareto.COSTS["latency"], pareto.SPREAD_COLUMN, pareto.COSTS["model_bytes"])


def add_front(table: pd.DataFrame, objectives: pareto.Objectives) -> None:
    """Add ``pareto_front``, in place: whether a row is on the front of ``objectives``.

    Over the rows the best is chosen from (:func:`eligible_rows`) among Keras
    configurations that did not fail; every other row is off the front.

    Raises:
        FoldwiseError: A cost the run did not measure.
    """
    columns = [pareto.COSTS[cost] for cost in objectives.costs]
    missing = [c for c in columns if c not in table]
    if missing:
        raise FoldwiseError(
            f"objectives {', '.join(objectives.costs)}: {', '.join(missing)} was not measured "
            "(the aggregate step measures it when the objectives or a pareto: refit name "
            "it)")
    rows = eligible_rows(table)
    rows = rows[rows["param_estimator"].isin(keras_names()) & ~_failed(rows)]
    on = pareto.front(rows[f"mean_test_{objectives.score}"], rows[columns])
    table["pareto_front"] = table.index.isin(rows.index[on])


def front_summary(table: pd.DataFrame, objectives: pareto.Objectives) -> list[dict]:
    """The front's configurations, cheapest first by the first cost: id, score and costs."""
    score = objectives.score
    rows = table[table["pareto_front"]]
    first = pareto.COSTS[objectives.costs[0]]
    rows = rows.sort_values([first, f"mean_test_{score}"], ascending=[True, False])
    return [{"config_id": row["config_id"], "mean": finite_float(row[f"mean_test_{score}"]),
             "std": finite_float(row[f"std_test_{score}"]),
             **{cost: finite_float(row[pareto.COSTS[cost]]) for cost in objectives.costs}}
            for _, row in rows.iterrows()]


def best_config_id(table: pd.DataFrame, scoring: str,
                   estimator: str | tuple[str, ...] | None = None) -> str | None:
    """The ``estimator`` configuration ranked first by ``scoring`` (first listed among ties).

    The best Keras configuration (foldwise's MLP or a user's model) is the one refitted and
    exported, even when a baseline scores higher. Configurations that failed (a
    ``fit_error``) are never chosen: ``None`` if there is no configuration of that estimator,
    or if all of them failed.
    """
    column = f"rank_test_{scoring}"
    if column not in table.columns:
        known = [c.removeprefix("rank_test_") for c in table.columns if c.startswith("rank_")]
        raise FoldwiseError(f"scoring {scoring!r} is not reported; use one of {', '.join(known)}")
    wanted = (keras_names() if estimator is None
              else (estimator,) if isinstance(estimator, str) else estimator)
    candidates = table[table["param_estimator"].isin(wanted) & ~_failed(table)]
    if candidates.empty:
        return None
    return str(candidates.sort_values(column, kind="stable").iloc[0]["config_id"])


def failed_configs(table: pd.DataFrame) -> list[dict]:
    """``[{"config_id", "fit_error"}, ...]`` of the configurations that failed, in table order."""
    return [{"config_id": row["config_id"], "fit_error": row["fit_error"]}
            for _, row in table[_failed(table)].iterrows()]


def _failed(table: pd.DataFrame) -> pd.Series:
    """Which rows of a cv_results table failed (a table read back from CSV has NaN for "")."""
    if "fit_error" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["fit_error"].fillna("").astype(str) != ""


def _all_failed(table: pd.DataFrame) -> str:
    keras_rows = table[table["param_estimator"].isin(keras_names())]
    failed = keras_rows[_failed(keras_rows)]
    which = ("every configuration" if len(keras_rows) == len(table)
             else "every Keras configuration")
    if failed.empty:
        return f"no Keras configuration to choose from among {len(table)}"
    first = failed.iloc[0]
    return (f"{which} failed to train ({len(failed)} of {len(keras_rows)}); the first, "
            f"{first['config_id']}: {first['fit_error']}. Change the grid (a diverged model "
            "usually needs a smaller learning_rate) or the data, and run again")


def pooled_predictions(frames: list[pd.DataFrame], repeats: int = 1) -> pd.DataFrame:
    """One configuration's out-of-fold predictions of every fold, by row, then fold.

    One line per row, or per row and repetition under repeated K-fold (``repeats``: each
    repetition predicts every row once); time-ordered folds predict only the rows after the
    first training block.
    """
    pooled = pd.concat(frames, ignore_index=True).sort_values(["row", "fold"], kind="stable")
    if pooled.groupby("row").size().max() > repeats:
        raise FoldwiseError("a row was predicted by more than one fold of one repetition: "
                            "folds overlap")
    return pooled.reset_index(drop=True)


def probability_columns(frame: pd.DataFrame) -> list[str]:
    """The ``proba_<class>`` columns of a predictions table, in class order."""
    return [c for c in frame.columns if c.startswith("proba_")]
