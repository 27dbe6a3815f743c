"""Nested cross-validation: each outer fold's inner search, its choice, and the outer scores.

The preprocess step numbers the folds of a nested run (``schema["nested"]``): inner fold ``i``
of outer fold ``o`` is fold ``o * I + i`` (its rows: the outer fold's training rows only), and
outer fold ``o`` is fold ``O * I + o``. Every configuration trains on every inner fold; per
outer fold, :func:`choices` ranks them on that outer fold's inner folds alone (scikit-learn's
``GridSearchCV`` inside ``cross_validate``) and the chosen configuration trains on the outer
fold's training rows and is scored on its validation rows (:func:`outer_summary`). The gap
between the inner best score and the outer score is the optimism of a plain search's best.
"""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pandas as pd

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.jsonio import finite_float
from foldwise.components.core.results.aggregate import (
    choose,
    cv_results,
    eligible_rows,
    standard_error_correction,
)


def inner_results(results: list[dict], nested: dict, outer: int) -> list[dict]:
    """The results of outer fold ``outer``'s inner folds, their folds numbered ``0 .. I-1``."""
    inner = [int(f) for f in nested["inner"][outer]]
    return [{**r, "fold": inner.index(int(r["fold"]))} for r in results
            if int(r["fold"]) in inner]


def choices(results: list[dict], schema: dict, metric_names: list[str], scoring: str,
            refit: str = "best") -> tuple[pd.DataFrame, list[dict]]:
    """Each outer fold's inner search: its ``cv_results`` and the configuration it chose.

    Args:
        results: Every inner fold's train results (``core.training.trials``).
        schema: The preprocess step's schema (``nested``: the folds).
        metric_names: The task's metrics.
        scoring: The metric that ranks.
        refit: ``best`` or ``one_standard_error`` (the rule each inner search chooses by).

    Returns:
        ``(tables, chosen)``: the inner searches' ``cv_results`` one after the other, each row
        led by ``outer_fold``; per outer fold ``{"outer_fold", "fold", "config_id", "params",
        "searched", "inner_mean", "inner_std"}`` (``searched``: the grid's parameters;
        ``config_id`` ``None`` when every configuration failed on its inner folds, with
        ``error``).
    """
    nested = schema["nested"]
    tables, chosen = [], []
    for outer in range(int(nested["outer_folds"])):
        table = cv_results(inner_results(results, nested, outer), metric_names)
        final = eligible_rows(table)  # halving: the last rung's; Bayesian: the fully scored
        try:
            config_id = choose(final, scoring, refit, standard_error_correction(schema))
        except FoldwiseError:
            config_id = None
        entry = {"outer_fold": outer, "fold": int(nested["outer"][outer]),
                 "config_id": config_id}
        if config_id is None:
            errors = [e for e in table["fit_error"].fillna("").astype(str) if e]
            entry["error"] = errors[0] if errors else "no configuration could be chosen"
        else:
            row = final.set_index("config_id").loc[config_id]
            searched = next((r.get("searched") for r in results
                             if r["config_id"] == config_id and "searched" in r), None)
            entry.update(params=json.loads(row["params"]), searched=searched or {},
                         inner_mean=finite_float(row[f"mean_test_{scoring}"]),
                         inner_std=finite_float(row[f"std_test_{scoring}"]))
        chosen.append(entry)
        tables.append(table.assign(outer_fold=outer))
    joined = pd.concat(tables, ignore_index=True)
    return joined[["outer_fold", *[c for c in joined.columns if c != "outer_fold"]]], chosen


def outer_summary(chosen: list[dict], outer: list[dict], metric_names: list[str],
                  scoring: str) -> dict:
    """The nested answer: outer scores and their spread, the choices, wins and the optimism.

    Args:
        chosen: :func:`choices`' per outer fold entries.
        outer: The outer folds' train results (the chosen configuration on each outer fold).
        metric_names: The task's metrics.
        scoring: The metric that ranks.

    Returns:
        ``{"outer_folds", "scoring", "folds": [per outer fold: outer_fold, config_id, params,
        inner_mean, test scores by metric, fit_error], "metrics": {metric: {mean, std}},
        "wins": {config_id: outer folds it won}, "optimism": mean inner best minus mean
        outer score (NaN-free folds), "best_config_id": the configuration that won most}``.
    """
    by_fold = {int(r["fold"]): r for r in outer}
    rows = []
    for entry in chosen:
        result = by_fold.get(int(entry["fold"]))
        scores = {name: math.nan for name in metric_names}
        error = entry.get("error", "")
        if result is not None:
            scores.update({name: float(value) for name, value in result["scores"].items()})
            error = error or result.get("fit_error") or ""
        rows.append({"outer_fold": entry["outer_fold"], "config_id": entry["config_id"],
                     "params": entry.get("params"), "searched": entry.get("searched") or {},
                     "inner_mean": entry.get("inner_mean"),
                     "inner_std": entry.get("inner_std"),
                     "test": {name: finite_float(scores[name]) for name in metric_names},
                     "n_train": (result or {}).get("n_train"),
                     "n_validation": (result or {}).get("n_validation"),
                     "fit_time": (result or {}).get("fit_time"),
                     "score_time": (result or {}).get("score_time"), "fit_error": error})
    metrics = {}
    for name in metric_names:
        values = np.asarray([_nan(r["test"][name]) for r in rows], dtype="float64")
        finite = values[np.isfinite(values)]
        metrics[name] = {"mean": finite_float(float(np.mean(finite))) if finite.size else None,
                         "std": finite_float(float(np.std(finite))) if finite.size else None,
                         "folds": int(finite.size)}
    wins: dict[str, int] = {}
    for row in rows:
        if row["config_id"] is not None:
            wins[row["config_id"]] = wins.get(row["config_id"], 0) + 1
    paired = [(_nan(r["inner_mean"]), _nan(r["test"][scoring])) for r in rows]
    paired = [(i, o) for i, o in paired if math.isfinite(i) and math.isfinite(o)]
    optimism = (finite_float(float(np.mean([i - o for i, o in paired]))) if paired else None)
    order = {r["config_id"]: k for k, r in reversed(list(enumerate(rows)))}
    best = max(wins, key=lambda c: (wins[c], -order[c])) if wins else None
    return {"outer_folds": len(rows), "scoring": scoring, "folds": rows, "metrics": metrics,
            "wins": dict(sorted(wins.items(), key=lambda kv: (-kv[1], order[kv[0]]))),
            "optimism": optimism, "best_config_id": best}


def _nan(value) -> float:
    return math.nan if value is None else float(value)


_SEARCHES = {"grid": "search", "halving": "successive halving",
             "bayes": "Bayesian search"}


def page(summary: dict) -> str:
    """The nested run's report: the outer folds, what each chose, the wins and the optimism."""
    nested = summary["nested"]
    scoring = nested["scoring"]
    metric = nested["metrics"][scoring]
    rows = "".join(
        f"<tr><td>{r['outer_fold']}</td><td>{html.escape(str(r['config_id']))}</td>"
        f"<td><code>{html.escape(json.dumps(r['searched'], sort_keys=True))}</code>"
        f"</td><td>{_fmt(r['inner_mean'])}</td><td>{_fmt(r['test'][scoring])}</td>"
        f"<td>{html.escape(r['fit_error'] or '')}</td></tr>" for r in nested["folds"])
    wins = "".join(f"<li>{html.escape(c)}: {n} of {nested['outer_folds']} outer folds</li>"
                   for c, n in nested["wins"].items())
    chart = _gap_chart(nested, scoring)
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>foldwise nested cross-validation: {html.escape(summary['target'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3em .8em;
text-align:left}}.sub{{color:#555}}</style></head><body>
<h1>Nested cross-validation of {html.escape(summary['target'])}</h1>
<p><b>{html.escape(scoring)} {_fmt(metric['mean'])} ± {_fmt(metric['std'])}</b> over
{nested['outer_folds']} outer folds: what the search, run on new rows, can be expected to
score. Each outer fold's {_SEARCHES.get(nested.get('inner_search', 'grid'), 'search')} ranked
the configurations on {summary['inner_folds']} inner folds of its own training rows; the
configuration it chose was trained on those rows and scored on the outer fold.</p>
<p>Optimism: <b>{_fmt(nested['optimism'])}</b>, the inner best score minus the outer score,
on average (above 0: a plain search's best score is optimistic).</p>
{chart}
<table><tr><th>outer fold</th><th>chosen</th><th>searched parameters</th>
<th>inner mean</th><th>outer {html.escape(scoring)}</th><th>error</th></tr>{rows}</table>
<h2>How often each configuration won</h2><ul>{wins}</ul>
<p class="sub">cv_results.csv holds each outer fold's inner search (outer_fold first).</p>
</body></html>"""


def _fmt(value) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"


def _gap_chart(nested: dict, scoring: str) -> str:
    """Inner best and outer score per outer fold, as an inline SVG."""
    points = [(r["outer_fold"], _nan(r["inner_mean"]), _nan(r["test"][scoring]))
              for r in nested["folds"]]
    values = [v for _, i, o in points for v in (i, o) if math.isfinite(v)]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    width, height, left = 60 * len(points) + 80, 200, 60

    def y(value: float) -> float:
        return 170 - 150 * (value - low) / span

    marks = []
    for k, inner, outer in points:
        x = left + 60 * k + 30
        if math.isfinite(inner) and math.isfinite(outer):
            marks.append(f'<line x1="{x}" x2="{x}" y1="{y(inner):.1f}" y2="{y(outer):.1f}" '
                         'stroke="#999"/>')
        if math.isfinite(inner):
            marks.append(f'<circle cx="{x}" cy="{y(inner):.1f}" r="5" fill="#1f77b4">'
                         f'<title>inner best {inner:.4f}</title></circle>')
        if math.isfinite(outer):
            marks.append(f'<rect x="{x - 5}" y="{y(outer) - 5:.1f}" width="10" height="10" '
                         f'fill="#d62728"><title>outer {outer:.4f}</title></rect>')
        marks.append(f'<text x="{x}" y="195" text-anchor="middle" font-size="11">{k}</text>')
    return (f'<figure><svg width="{width}" height="{height + 10}" role="img">'
            f'<text x="0" y="{y(high):.1f}" font-size="11">{high:.3f}</text>'
            f'<text x="0" y="{y(low):.1f}" font-size="11">{low:.3f}</text>{"".join(marks)}'
            '</svg><figcaption>Per outer fold: the chosen configuration\'s inner mean (circle) '
            f'and its outer {html.escape(scoring)} (square).</figcaption></figure>')


def run_summary(schema: dict, chosen: list[dict], outer: list[dict], metric_names: list[str],
                scoring: str, versions: dict, refit: str = "best") -> dict:
    """The nested run's ``summary.json``: the table, the folds and :func:`outer_summary`.

    ``metrics`` are the outer scores' mean and standard deviation (``ddof=0``, as
    ``std_test_*``); ``best_config_id`` is the configuration that won the most outer folds
    (the first to win among ties), for the record: nested cross-validation judges the search,
    and exports no model.
    """
    answer = outer_summary(chosen, outer, metric_names, scoring)
    nested = schema["nested"]
    best = answer["best_config_id"]
    return {
        "task": schema["task"], "target": schema["target"], "classes": schema["classes"],
        "rows_in": schema["rows_in"], "rows_used": schema["rows_used"],
        "rows_dropped": len(schema["rows_dropped_missing_target"]),
        "rows_dropped_missing_target": schema["rows_dropped_missing_target"],
        "numeric_columns": schema["numeric"], "categorical_columns": schema["categorical"],
        "folds": schema["folds"], "fold_strategy": schema["fold_strategy"],
        "splits": schema.get("splits"), "seed": schema["seed"],
        "outer_folds": int(nested["outer_folds"]), "inner_folds": int(nested["inner_folds"]),
        "scoring": scoring, "refit": refit, "best_config_id": best,
        "best_params": next((r["params"] for r in answer["folds"] if r["config_id"] == best),
                            None),
        "metrics": {name: {"mean": m["mean"], "std": m["std"]}
                    for name, m in answer["metrics"].items()},
        "nested": answer, "data": schema.get("data"), "versions": versions,
        "warnings": schema.get("warnings", []),
    }
