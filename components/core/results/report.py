"""One self-contained HTML report of a search: inline SVG charts, inline CSS, no scripts.

It opens offline in any browser: nothing is fetched (no scripts, fonts, images or links to
other files).
"""

from __future__ import annotations

import html
import io
import json

import numpy as np
import pandas as pd

from foldwise.components.core.columns import ROW_COLUMN
from foldwise.components.core.models.estimators import role_of
from foldwise.components.core.results.aggregate import probability_columns
from foldwise.components.core.scoring import metrics as scoring_metrics
from foldwise.components.core.scoring.pareto import COSTS

COLOURS = ["#1f6f8b", "#e07a24", "#4c9a2a", "#a23b72", "#6c5b7b", "#c0392b", "#2e86ab"]
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #1d2327; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #dde3e8; padding-bottom: .3rem; }
.sub { color: #5b6770; margin-top: 0; } .grid { display: grid; gap: 1rem;
       grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); }
.card { background: #f6f8fa; border-radius: 8px; padding: .8rem 1rem; }
.big { font-size: 1.6rem; font-weight: 600; } table { border-collapse: collapse;
       font-size: .85rem; width: 100%; } th, td { text-align: left; padding: .3rem .5rem;
       border-bottom: 1px solid #e6ebef; } tr.best { background: #e8f4ec; font-weight: 600; }
tr.baseline td:first-child::after { content: " (baseline)"; color: #8a6d3b; }
tr.failed { color: #8a2f2f; } td.error { font-family: ui-monospace, Menlo, monospace; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .8rem; }
pre { background: #f6f8fa; padding: .8rem; border-radius: 6px; overflow-x: auto; }
figure { margin: 0; } svg { max-width: 100%; height: auto; }
"""


def _svg(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", dpi=150)
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float = 6.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "none", "font.family": "sans-serif",
                                "axes.spines.top": False, "axes.spines.right": False,
                                "font.size": 10})
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _label(row: pd.Series) -> str:
    params = json.loads(row["params"])
    if role_of(params) == "baseline":
        return f"sklearn MLP {params['hidden_units']} lr={params['learning_rate']:g}"
    parts = [str(params.get("hidden_units")), params.get("optimizer", ""),
             f"lr={params.get('learning_rate', 0):g}"]
    return " ".join(p for p in parts if p)


def fit_error(row: pd.Series) -> str:
    """A cv_results row's ``fit_error``: empty when it trained (also when read back from CSV)."""
    value = row.get("fit_error", "")
    return "" if pd.isna(value) else str(value)


def drawable(cv: pd.DataFrame, scoring: str) -> pd.DataFrame:
    """The configurations a score chart can draw: trained, with a finite mean and std."""
    trained = np.array([not fit_error(row) for _, row in cv.iterrows()], dtype=bool)
    finite = (np.isfinite(cv[f"mean_test_{scoring}"].to_numpy(dtype="float64"))
              & np.isfinite(cv[f"std_test_{scoring}"].to_numpy(dtype="float64")))
    return cv[trained & finite]


def score_chart(cv: pd.DataFrame, scoring: str, best_id: str) -> str:
    """Mean ± std of the scoring metric per configuration, best highlighted.

    Configurations that failed, or whose mean is not finite, are left out (see
    :func:`drawable`); the results table lists them.
    """
    order = drawable(cv, scoring).sort_values(f"mean_test_{scoring}", kind="stable")
    fig, ax = _figure(7.0, 0.45 * len(order) + 1.2)
    if order.empty:
        ax.text(0.5, 0.5, f"no configuration has a finite {scoring}", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _svg(fig)
    y = np.arange(len(order))
    colours = ["#4c9a2a" if cid == best_id else
               ("#b08d57" if "sklearn" in _label(row) else COLOURS[0])
               for cid, (_, row) in zip(order["config_id"], order.iterrows(), strict=True)]
    ax.barh(y, order[f"mean_test_{scoring}"], xerr=order[f"std_test_{scoring}"],
            color=colours, alpha=.85, capsize=3)
    ax.set_yticks(y, [f"{_label(row)}  ({row['config_id']})" for _, row in order.iterrows()])
    ax.set_xlabel(f"{scoring} (mean ± std over folds; higher is better)")
    low = float((order[f"mean_test_{scoring}"] - order[f"std_test_{scoring}"]).min())
    high = float((order[f"mean_test_{scoring}"] + order[f"std_test_{scoring}"]).max())
    pad = 0.1 * (high - low) or 0.05
    ax.set_xlim(low - pad, high + pad)
    return _svg(fig)


COST_LABELS = {"latency": "latency (ms per 1,000 raw rows, median ± IQR/2 over timed blocks)",
               "n_parameters": "trainable parameters", "model_bytes": "saved model (bytes)"}


def front_chart(cv: pd.DataFrame, scoring: str, cost: str, best_id: str) -> str:
    """Score against one cost: every configuration, its fold spread, the front joined.

    Each point is a configuration's mean score with its standard deviation over the folds
    (vertical bar) and, for latency, half its interquartile range over timed blocks (horizontal
    bar); the Pareto front (``pareto_front``) is joined as a staircase, the refitted
    configuration ringed. The cost axis is logarithmic when it spans a factor of 10.
    """
    column = COSTS[cost]
    rows = drawable(cv, scoring)
    rows = rows[np.isfinite(rows[column].to_numpy(dtype="float64"))]
    fig, ax = _figure(7.0, 4.5)
    if rows.empty:
        ax.text(0.5, 0.5, f"no configuration has a finite {scoring} and {cost}", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _svg(fig)
    x = rows[column].to_numpy(dtype="float64")
    y = rows[f"mean_test_{scoring}"].to_numpy(dtype="float64")
    spread = (rows["latency_iqr_ms"].to_numpy(dtype="float64") / 2
              if cost == "latency" and "latency_iqr_ms" in rows else None)
    on = rows["pareto_front"].astype(bool).to_numpy() if "pareto_front" in rows \
        else np.zeros(len(rows), bool)
    ax.errorbar(x[~on], y[~on], yerr=rows[f"std_test_{scoring}"].to_numpy()[~on],
                xerr=None if spread is None else spread[~on], fmt="o", color="#9aa5b1",
                ecolor="#c8ced6", capsize=2, label="dominated")
    ax.errorbar(x[on], y[on], yerr=rows[f"std_test_{scoring}"].to_numpy()[on],
                xerr=None if spread is None else spread[on], fmt="o", color=COLOURS[0],
                capsize=3, label="Pareto front")
    order = np.argsort(x[on], kind="stable")
    ax.step(x[on][order], y[on][order], where="post", color=COLOURS[0], alpha=.5)
    chosen = rows["config_id"].to_numpy() == best_id
    ax.scatter(x[chosen], y[chosen], s=180, facecolors="none", edgecolors="#4c9a2a",
               linewidths=2, label=f"refitted ({best_id})", zorder=3)
    if x.min() > 0 and x.max() / x.min() >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(f"{COST_LABELS[cost]}; lower is better")
    ax.set_ylabel(f"{scoring} (mean ± std over folds)")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def importance_chart(found: dict, shown: int = 15) -> str:
    """Each raw column's permutation importance: its mean drop over the folds ± std."""
    columns = found["columns"][:shown][::-1]
    fig, ax = _figure(7.0, 0.4 * len(columns) + 1.2)
    y = np.arange(len(columns))
    ax.barh(y, [c["mean"] for c in columns], xerr=[c["std"] for c in columns],
            color=COLOURS[0], alpha=.85, capsize=3)
    ax.set_yticks(y, [c["column"] for c in columns])
    ax.axvline(0, color="#9aa5b1", linewidth=1)
    ax.set_xlabel(f"drop in {found['scoring']} when the column is shuffled "
                  "(mean ± std over folds)")
    return _svg(fig)


def reliability_chart(found: dict) -> str:
    """The reliability curve: predicted probability against how often it came true.

    ``found`` is the summary's ``calibration`` (``core.scoring.calibration``); each bin's
    point is sized by its rows.
    """
    fig, ax = _figure(5.0, 4.2)
    points = found.get("bins") or []
    ax.plot([0, 1], [0, 1], color="#9aa5b1", linestyle="--", label="calibrated")
    if points:
        rows = np.array([p["rows"] for p in points], dtype="float64")
        ax.plot([p["predicted"] for p in points], [p["observed"] for p in points],
                color=COLOURS[0], marker="o", markersize=0)
        ax.scatter([p["predicted"] for p in points], [p["observed"] for p in points],
                   s=20 + 180 * rows / rows.max(), color=COLOURS[0], zorder=3,
                   label="out-of-fold (size: rows)")
    read = found.get("read") or "probability"
    ax.set_xlabel(f"predicted probability ({read})")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    brier, ece = found.get("brier"), found.get("ece")
    ax.set_title(f"Brier {brier:.4f} · ECE {ece:.4f}" if brier is not None and ece is not None
                 else "no finite probabilities", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return _svg(fig)


def learning_curves(histories: dict, best_epoch: int | None = None) -> str:
    """Train and validation-fold loss per epoch, one colour per fold.

    Solid: the training loss; dashed: the loss on the fold's validation rows (what it is
    scored on); dotted: the early-stopping split's, when there is one. A grey line marks
    ``best_epoch``, where the mean validation-fold loss over folds is lowest.
    """
    fig, ax = _figure()
    for index, (fold, history) in enumerate(sorted(histories.items(), key=lambda i: int(i[0]))):
        colour = COLOURS[index % len(COLOURS)]
        ax.plot(np.arange(1, len(history["loss"]) + 1), history["loss"], color=colour,
                label=f"fold {fold} train")
        if history.get("test_loss"):
            ax.plot(np.arange(1, len(history["test_loss"]) + 1), history["test_loss"],
                    color=colour, linestyle="--", label=f"fold {fold} validation")
        if "val_loss" in history:
            ax.plot(np.arange(1, len(history["val_loss"]) + 1), history["val_loss"],
                    color=colour, linestyle=":", label=f"fold {fold} early-stop split")
    if best_epoch:
        ax.axvline(best_epoch, color="#888888", linewidth=1)
        ax.annotate(f"lowest mean validation loss: epoch {best_epoch}", (best_epoch, 1.0),
                    xycoords=("data", "axes fraction"), fontsize=8, ha="left", va="top",
                    color="#555555", xytext=(3, -3), textcoords="offset points")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(frameon=False, fontsize=8, ncol=2)
    return _svg(fig)


def confusion_chart(y_true: np.ndarray, proba: np.ndarray, classes: list) -> str:
    """Pooled out-of-fold confusion matrix with counts."""
    matrix = np.array(scoring_metrics.confusion_matrix(y_true, proba, len(classes)))
    fig, ax = _figure(1.1 * len(classes) + 2.5, 1.0 * len(classes) + 2)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "#1d2327")
    labels = [str(c) for c in classes]
    ax.set_xticks(range(len(classes)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _svg(fig)


def roc_chart(y_true: np.ndarray, proba: np.ndarray, classes: list) -> str:
    """ROC curve(s) of the pooled out-of-fold probabilities (one-vs-rest for many classes)."""
    from sklearn.metrics import auc, roc_curve

    fig, ax = _figure(5.0, 4.5)
    shown = [1] if len(classes) == 2 else range(len(classes))
    for index in shown:
        positives = (y_true == index).astype(int)
        if positives.min() == positives.max():
            continue
        fpr, tpr, _ = roc_curve(positives, proba[:, index])
        ax.plot(fpr, tpr, color=COLOURS[index % len(COLOURS)],
                label=f"{classes[index]} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="#9aa5ad", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return _svg(fig)


def regression_charts(y_true: np.ndarray, predicted: np.ndarray, target: str) -> tuple[str, str]:
    """Predicted vs actual, and residuals vs predicted, of the pooled out-of-fold predictions."""
    fig, ax = _figure(5.0, 4.5)
    # Points drawn as one image inside the SVG (axes, labels and lines stay vectors): a
    # vector scatter of 10,000 rows is 3 MB of page and a second to draw.
    ax.scatter(y_true, predicted, s=10, alpha=.6, color=COLOURS[0], rasterized=True)
    low, high = float(min(y_true.min(), predicted.min())), float(max(y_true.max(),
                                                                      predicted.max()))
    ax.plot([low, high], [low, high], color="#9aa5ad", linestyle=":")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    scatter = _svg(fig)
    fig, ax = _figure(5.0, 4.5)
    ax.scatter(predicted, y_true - predicted, s=10, alpha=.6, color=COLOURS[1],
               rasterized=True)
    ax.axhline(0, color="#9aa5ad", linestyle=":")
    ax.set_xlabel(f"predicted {target}")
    ax.set_ylabel("residual (actual − predicted)")
    return scatter, _svg(fig)


def residuals_by_column(pooled: pd.DataFrame, raw: pd.DataFrame, column: str,
                        categorical: bool) -> str:
    """The out-of-fold residuals against one raw column (a category's: a box per category).

    ``raw`` holds the column with each row's ``__row__``; ``pooled`` the predictions.
    """
    joined = pooled.merge(raw[[ROW_COLUMN, column]], left_on="row", right_on=ROW_COLUMN)
    residual = joined["y_true"].to_numpy(dtype="float64") - joined["prediction"].to_numpy(
        dtype="float64")
    fig, ax = _figure(4.6, 3.6)
    if categorical:
        values = joined[column].astype("string").fillna("<missing>")
        shown = values.value_counts().index[:12].tolist()
        ax.boxplot([residual[(values == c).to_numpy()] for c in shown], showfliers=False)
        ax.set_xticks(range(1, len(shown) + 1), shown, rotation=30, ha="right", fontsize=8)
    else:
        x = pd.to_numeric(joined[column], errors="coerce").to_numpy(dtype="float64")
        ax.scatter(x, residual, s=8, alpha=.5, color=COLOURS[1], rasterized=True)
    ax.axhline(0, color="#9aa5ad", linestyle=":")
    ax.set_xlabel(column)
    ax.set_ylabel("residual (actual − predicted)")
    return _svg(fig)


def build_report(schema: dict, cv: pd.DataFrame, summary: dict, pooled: pd.DataFrame,
                 histories: dict, raw: pd.DataFrame | None = None) -> str:
    """The report page as one HTML string.

    A halving search's table has a row per (configuration, rung): each configuration is
    shown once, as of the last rung it ran in. With ``raw`` (the preprocessed table's raw
    columns and ``__row__``), a regression's residuals are drawn against each of its five
    most important columns (the summary's ``permutation_importance``).
    """
    if "iter" in cv.columns:
        cv = cv.drop_duplicates("config_id", keep="last")
    scoring, best_id = summary["scoring"], summary["best_config_id"]
    best = cv.set_index("config_id").loc[best_id]
    e = html.escape
    failed = sum(1 for _, row in cv.iterrows() if fit_error(row))
    left_out = len(cv) - len(drawable(cv, scoring))
    sections = [
        f"<h1>foldwise report: {e(schema['target'])}</h1>",
        f"<p class='sub'>{e(schema['task'])} · {schema['rows_used']} rows · "
        f"{schema['folds']} {e(schema['fold_strategy'])} folds · seed {schema['seed']} · "
        f"{len(cv)} configurations" + (f" ({failed} failed)" if failed else "")
        + f" · ranked by {e(scoring)}</p>",
        "<div class='grid'>",
        f"<div class='card'>best {e(scoring)}<div class='big'>{best[f'mean_test_{scoring}']:.4f}"
        f" ± {best[f'std_test_{scoring}']:.4f}</div>{e(best_id)}</div>",
        f"<div class='card'>data<div class='big'>{schema['rows_used']} rows</div>"
        f"{len(schema['rows_dropped_missing_target'])} dropped (missing target) · "
        f"{len(schema['numeric'])} numeric · {len(schema['categorical'])} categorical</div>",
        "</div>",
        "<h2>Score per configuration</h2>",
        f"<figure>{score_chart(cv, scoring, best_id)}</figure>",
        *([f"<p class='sub'>Trained through TensorFlow's fit, one model at a time, not in "
           f"the packed JAX engine: {e(', '.join(sorted(summary['tensorflow_operations'])))}"
           f" (the builder runs "
           f"{e(', '.join(sorted(set(summary['tensorflow_operations'].values()))))}).</p>"]
          if summary.get("tensorflow_operations") else []),
        *([f"<p class='sub'>Not drawn: {left_out} configuration"
           f"{'s' if left_out > 1 else ''} without a finite score (failed ones are marked "
           "below).</p>"] if left_out else []),
        _results_table(cv, summary),
        *_comparison_note(summary),
        *_front_section(cv, summary),
        *_importance_section(summary),
        "<h2>Learning curves of the best configuration</h2>",
        f"<figure>{learning_curves(histories, summary.get('best_epoch'))}</figure>",
    ]
    y_true = pooled["y_true"].to_numpy()
    if schema["task"] == "classification":
        proba = pooled[probability_columns(pooled)].to_numpy()
        sections += [
            "<h2>Out-of-fold predictions of the best configuration</h2><div class='grid'>",
            f"<figure>{confusion_chart(y_true, proba, schema['classes'])}</figure>",
            f"<figure>{roc_chart(y_true, proba, schema['classes'])}</figure></div>",
            *_calibration_section(summary),
        ]
    else:
        scatter, residuals = regression_charts(y_true, pooled["prediction"].to_numpy(),
                                               schema["target"])
        sections += [
            "<h2>Out-of-fold predictions of the best configuration</h2><div class='grid'>",
            f"<figure>{scatter}</figure><figure>{residuals}</figure></div>",
            *_residual_section(pooled, raw, summary, schema),
        ]
    sections += [
        "<h2>Data</h2>", _data_table(schema),
        "<h2>Chosen configuration</h2>",
        f"<pre>{e(json.dumps(json.loads(best['params']), indent=2, sort_keys=True))}</pre>",
        f"<p class='sub'>foldwise {e(summary['versions'].get('foldwise', ''))} · "
        f"Keras {e(summary['versions'].get('keras', ''))} · "
        f"scikit-learn {e(summary['versions'].get('scikit-learn', ''))}</p>",
    ]
    body = "\n".join(sections)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>foldwise report: {e(schema['target'])}</title><style>{CSS}</style>"
            f"</head><body>\n{body}\n</body></html>\n")


def _residual_section(pooled: pd.DataFrame, raw: pd.DataFrame | None, summary: dict,
                      schema: dict) -> list[str]:
    """Residuals against the five columns the best configuration relies on most."""
    columns = [c["column"] for c in (summary.get("permutation_importance") or {}).get(
        "columns", [])[:5]]
    if raw is None or not columns or "row" not in pooled:
        return []
    charts = [f"<figure>{residuals_by_column(pooled, raw, c, c in schema['categorical'])}"
              "</figure>" for c in columns if c in raw]
    return ["<h2>Residuals against the columns it relies on most</h2>",
            "<p class='sub'>Out-of-fold residuals of the best configuration against each of "
            "its five most important raw columns: a trend or a category off zero is "
            "something the model has not learnt.</p>",
            f"<div class='grid'>{''.join(charts)}</div>"]


def _importance_section(summary: dict) -> list[str]:
    """Which raw columns the best configuration relies on."""
    found = summary.get("permutation_importance")
    if not found:
        return []
    if "skipped" in found:
        return ["<h2>Which columns it relies on</h2>",
                f"<p class='sub'>Permutation importance skipped: {html.escape(found['skipped'])}"
                ".</p>"]
    shown = min(15, len(found["columns"]))
    return ["<h2>Which columns it relies on</h2>",
            f"<p class='sub'>Permutation importance of the best configuration: on each fold's "
            f"validation rows, with that fold's model, each raw column shuffled "
            f"{found['repeats']} times (a categorical column's indicators together). The "
            f"{shown} most important of {len(found['columns'])} columns.</p>",
            f"<figure>{importance_chart(found)}</figure>"]


def _calibration_section(summary: dict) -> list[str]:
    """Whether the best configuration's probabilities mean what they say."""
    found = summary.get("calibration")
    if not found:
        return []
    read = ("the positive class's probability against how often it is the class"
            if found["read"] == "positive class" else
            "the top class's probability (the model's confidence) against how often it is right")
    return ["<h2>Are its probabilities right? Calibration</h2>",
            f"<p class='sub'>Out-of-fold probabilities of the best configuration, in "
            f"{len(found['bins'])} bins: {html.escape(read)}. On the diagonal, a predicted 0.8 "
            "comes true 8 times in 10. Brier score (lower is better) and expected calibration "
            "error (the rows' weighted mean distance from the diagonal).</p>",
            f"<figure>{reliability_chart(found)}</figure>"]


def _front_section(cv: pd.DataFrame, summary: dict) -> list[str]:
    """The Pareto front of the score against each cost (when the run weighed costs)."""
    costs = summary.get("objectives", [])[1:]
    if not costs or "pareto_front" not in cv:
        return []
    scoring, e = summary["scoring"], html.escape
    on = int(cv["pareto_front"].astype(bool).sum())
    parts = ["<h2>Score against serving cost: the Pareto front</h2>",
             f"<p class='sub'>{on} configuration{'s' if on != 1 else ''} on the front of "
             f"{e(', '.join(summary['objectives']))}: none of the others scores at least as "
             "well at no more cost. Latency is measured on each configuration's exported "
             "model (one fold's, its preprocessing folded in), 1,000 raw rows per call, the "
             "same way for all.</p>"]
    for cost in costs:
        parts.append(f"<figure>{front_chart(cv, scoring, cost, summary['best_config_id'])}"
                     "</figure>")
    return parts


def _comparison_note(summary: dict) -> list[str]:
    scoring = summary["scoring"]
    notes = [f"<p class='sub'>Δ: mean difference in {html.escape(scoring)} from the "
             "best-scoring configuration over the folds both were scored on; p: the corrected "
             "resampled t-test's (Nadeau and Bengio) one-sided p-value that the best is no "
             "better. A small p means the difference is more than fold noise.</p>"]
    if summary.get("refit") == "one_standard_error" and (
            summary.get("top_config_id") != summary["best_config_id"]):
        notes.append(f"<p class='sub'>Refitted by the one-standard-error rule: "
                     f"{html.escape(summary['best_config_id'])}, the simplest configuration "
                     f"within one standard error of {html.escape(str(summary['top_config_id']))}"
                     ".</p>")
    halving = summary.get("halving")
    if halving:
        unit = "fold" if halving.get("resource", "folds") == "folds" else "epoch"
        steps = ", ".join(f"{n} × {r} {unit}{'s' if r > 1 else ''}" for n, r in zip(
            halving["n_candidates"], halving["n_resources"], strict=True))
        kept = ("the scores of the folds it was scored on" if unit == "fold" else
                "its scores after the epochs it was trained")
        notes.append(f"<p class='sub'>Successive rungs: {html.escape(steps)}. A configuration "
                     f"dropped early keeps {kept}.</p>")
    return notes


def _results_table(cv: pd.DataFrame, summary: dict) -> str:
    scoring = summary["scoring"]
    names = list(summary["metrics"])
    compared = f"pvalue_vs_best_{scoring}" in cv.columns
    halving = "iter" in cv.columns
    unit = summary.get("halving", {}).get("resource", "folds")
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    head += "<th>Δ</th><th>p</th>" if compared else ""
    head += f"<th>{unit}</th>" if halving else ""
    rows = []
    order = cv.sort_values(f"rank_test_{scoring}", kind="stable")
    if halving:  # the last rung's first, ranked as shown (cv_results ranks every row)
        order = cv.sort_values(["iter", f"rank_test_{scoring}"], ascending=[False, True],
                               kind="stable")
        order = order.assign(**{f"rank_test_{scoring}": range(1, len(order) + 1)})
    for _, row in order.iterrows():
        classes = ["best"] if row["config_id"] == summary["best_config_id"] else []
        if role_of(json.loads(row["params"])) == "baseline":
            classes.append("baseline")
        error = fit_error(row)
        if error:
            classes.append("failed")
            cells = (f"<td class='error' colspan='{len(names) + 2 * compared}'>failed: "
                     f"{html.escape(error)}</td>")
        else:
            cells = "".join(f"<td>{row[f'mean_test_{n}']:.4f} ± {row[f'std_test_{n}']:.4f}</td>"
                            for n in names)
            if compared:
                diff, p = row[f"diff_vs_best_{scoring}"], row[f"pvalue_vs_best_{scoring}"]
                cells += (f"<td>{diff:+.4f}</td>" if np.isfinite(diff) else "<td></td>")
                cells += (f"<td>{p:.3f}</td>" if np.isfinite(p) else "<td></td>")
        if halving:
            cells += f"<td>{int(row['n_resources'])}</td>"
        rows.append(f"<tr class='{' '.join(classes)}'><td>{html.escape(row['config_id'])}</td>"
                    f"<td>{html.escape(_label(row))}</td><td>{row[f'rank_test_{scoring}']}</td>"
                    f"{cells}<td>{row['mean_fit_time']:.1f}</td></tr>")
    return (f"<table><thead><tr><th>config</th><th>model</th><th>rank</th>{head}"
            f"<th>fit s</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _data_table(schema: dict) -> str:
    e = html.escape
    rows = [("target", schema["target"]), ("task", f"{schema['task']} ({schema['task_reason']})"),
            ("rows", f"{schema['rows_in']} in, {schema['rows_used']} used"),
            ("numeric columns", ", ".join(schema["numeric"]) or "none"),
            ("categorical columns", ", ".join(schema["categorical"]) or "none"),
            ("dropped columns", ", ".join(schema["dropped_columns"]) or "none")]
    if schema["classes"]:
        rows.append(("classes", ", ".join(str(c) for c in schema["classes"])))
    cells = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    return f"<table><tbody>{cells}</tbody></table>"
