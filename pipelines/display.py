"""What the command line prints: the plan, one line per finished step, the results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from foldwise.components.core.scoring.pareto import COSTS, served
from foldwise.pipelines import kinds


def describe_plan(plan, workspace: Path, destination: str) -> None:
    """The plan on stderr: data, task, features, folds, what runs, where it goes."""
    schema, folds = plan.schema, plan.schema["folds"]
    extra = kinds.get(plan.search.pipeline).describe(plan, destination)
    dropped = len(schema["rows_dropped_missing_target"])
    lines = [
        f"data     {plan.data.rsplit('/', 1)[-1]}: {schema['rows_used']} rows used"
        + (f", {dropped} dropped (missing target)" if dropped else ""),
        f"task     {schema['task']} ({schema['task_reason']})"
        + (f", classes {schema['classes']}" if schema["classes"] else ""),
        f"features {len(schema['numeric'])} numeric, {len(schema['categorical'])} categorical",
        f"folds    {describe_folds(schema, folds)}",
        *extra,
        *_objectives_line(getattr(plan, "arguments", {}).get("objectives", "")),
        f"output   {workspace}",
        *(f"warning  {note}" for note in schema.get("warnings", [])),
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _objectives_line(objectives: str) -> list[str]:
    """``weighs   r2 against latency; ...``, or nothing when the score is all there is."""
    if not objectives:
        return []
    score, _, costs = objectives.partition(",")
    return [f"weighs   {score} against {costs.replace(',', ', ')}"
            + ("; serving models timed after training" if served(objectives) else "")]


def print_result(result) -> None:
    """A finished run's answer on stdout: scores or ranking, what was written where."""
    kind, seconds = kinds.get(result.plan.search.pipeline), f"[{result.seconds:.1f} s]"
    if kind.promotes:
        decision = result.decision
        verb = "promoted" if decision["promote"] else "kept"
        print(f"{verb} {decision['version']} ({decision['config_id']}): {decision['reason']}")
        print(f"served   {result.destination}/current.json -> {decision['version']}  {seconds}")
        return
    if result.summary.get("nested"):
        print(format_nested(result.summary))
        print(f"\nwrote    {result.destination}/: cv_results.csv (each outer fold's inner "
              "search), folds.csv, summary.json, report.html, manifest.json")
    elif not kind.exports_model:
        print(format_results(result.cv_results, result.summary))
        print(f"\nwrote    {result.destination}/: cv_results.csv, folds.csv, summary.json, "
              "report.html, manifest.json")
    else:
        print(format_grid_results(result.cv_results, result.summary))
        print(f"\nbest     {result.summary['best_config_id']}: "
              f"{json.dumps(result.summary['best_params'], sort_keys=True)}")
        if result.summary.get("best_epoch"):
            print(f"epochs   its mean validation-fold loss is lowest at epoch "
                  f"{result.summary['best_epoch']}; refitted for "
                  f"{result.summary.get('refit_epochs')}")
        print(f"wrote    {result.destination}/: model/ (model.keras, savedmodel/, tfserving/), "
              "inferenceservice.yaml, cv_results.csv, best_params.json, summary.json, "
              "folds.csv, report.html, manifest.json")
    found = result.summary.get("permutation_importance") or {}
    if found.get("columns"):
        top = ", ".join(f"{c['column']} {c['mean']:.3f}" for c in found["columns"][:3])
        print(f"relies   on {top} (drop in {found['scoring']} when the column is shuffled; "
              "every column in report.html)")
    if result.destination != str(result.workspace):
        print(f"run      {result.workspace}/: pipeline/ (every step's artifacts), pipeline.log")
    if kind.exports_model:
        print(f"predict  foldwise predict --model {result.destination} --data TABLE "
              "--output predictions.csv")
    print(seconds)


class Progress:
    """One line per finished step on stderr: ``[ 5/10] train cfg-ad8e +3 folds 0-4  13.7 s``.

    With ``total=None`` (not known before the run) the count stands alone: ``[ 4]``.
    """

    def __init__(self, total: int | None, show_config: bool = False) -> None:
        self.total, self.done, self.show_config = total, 0, show_config

    def __call__(self, event) -> None:  # noqa: D102 - the engine's event hook
        if event.status is None:
            return
        self.done += 1
        where = f" {event.config_id}" if event.config_id and self.show_config else ""
        if event.folds:
            where += (f" fold {event.folds[0]}" if len(event.folds) == 1 else
                      f" folds {event.folds[0]}-{event.folds[-1]}")
        mark = "" if event.status == "SUCCESS" else f"  {event.status}"
        width = len(str(self.total or 99))
        count = f"{self.done:>{width}}" + (f"/{self.total}" if self.total else "")
        label = f"{event.name}{where}"
        print(f"[{count}] {label:<{22 + 15 * self.show_config}} "
              f"{event.seconds:6.1f} s{mark}", file=sys.stderr, flush=True)


def format_nested(summary: dict) -> str:
    """A nested run's answer: per outer fold its choice, inner best and outer score; the rest."""
    nested, scoring = summary["nested"], summary["scoring"]

    def score(value) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = ["", f"{'outer':<6}{'chosen':<16}{'inner ' + scoring:>20}{'outer ' + scoring:>20}"
             "  searched"]
    for row in nested["folds"]:
        lines.append(f"{row['outer_fold']:<6}{str(row['config_id'] or 'failed'):<16}"
                     f"{score(row['inner_mean']):>20}{score(row['test'][scoring]):>20}  "
                     + (row["fit_error"] or json.dumps(row.get("searched") or {},
                                                       sort_keys=True)))
    metric = nested["metrics"][scoring]
    search = {"halving": "halving search", "bayes": "Bayesian search"}.get(
        nested.get("inner_search", "grid"), "search")
    lines.append(f"\nnested   {scoring} {score(metric['mean'])} ± {score(metric['std'])} over "
                 f"{nested['outer_folds']} outer folds: what the {search}'s choice scores on "
                 "new rows")
    lines.append(f"optimism {score(nested['optimism'])}: the inner best minus the outer score, "
                 "on average (above 0: a plain search's best score is optimistic)")
    wins = ", ".join(f"{config} {count}/{nested['outer_folds']}"
                     for config, count in nested["wins"].items())
    lines.append(f"won      {wins}")
    return "\n".join(lines)


def format_results(cv_results_path: Path, summary: dict) -> str:
    """Per-fold scores and mean ± std of the (best) configuration as a text table."""
    import pandas as pd

    table = pd.read_csv(cv_results_path)
    best = table.set_index("config_id").loc[summary["best_config_id"]]
    names = list(summary["metrics"])
    width = max(len(n) for n in names) + 2
    lines = ["", "fold".ljust(6) + "".join(n.rjust(width) for n in names)]
    for fold in range(summary["folds"]):
        lines.append(str(fold).ljust(6) + "".join(
            f"{best[f'split{fold}_test_{n}']:.4f}".rjust(width) for n in names))
    lines.append("mean".ljust(6) + "".join(
        f"{best[f'mean_test_{n}']:.4f}".rjust(width) for n in names))
    lines.append("± std".ljust(6) + "".join(
        f"{best[f'std_test_{n}']:.4f}".rjust(width) for n in names))
    baseline = summary.get("best_baseline")
    if baseline:
        scoring = summary["scoring"]
        lines.append(f"\nbaseline: scikit-learn MLP {scoring} {baseline['mean']:.4f} ± "
                     f"{baseline['std']:.4f} on the same folds (Keras "
                     f"{best[f'mean_test_{scoring}']:.4f} ± {best[f'std_test_{scoring}']:.4f})")
    return "\n".join(lines)


def format_grid_results(cv_results_path: Path, summary: dict) -> str:
    """Every configuration ranked by the scoring metric, with what differs between them."""
    import pandas as pd

    scoring = summary["scoring"]
    table = pd.read_csv(cv_results_path)
    halving = "iter" in table.columns
    if halving:  # each candidate as of its last rung, the last rung's first
        table = table.drop_duplicates("config_id", keep="last").sort_values(
            ["iter", f"rank_test_{scoring}"], ascending=[False, True], kind="stable")
    else:
        table = table.sort_values(f"rank_test_{scoring}", kind="stable")
    params = [json.loads(p) for p in table["params"]]
    varying = sorted({k for p in params for k in p if any(q.get(k) != p.get(k) for q in params)})
    compared = f"pvalue_vs_best_{scoring}" in table.columns
    in_rounds = "round" in table.columns  # Bayesian search: the round, folds if raced out
    by_folds = in_rounds or (halving and summary.get("halving", {}).get("resource",
                                                                         "folds") == "folds")
    if halving:  # ranked as shown: the last rung's first (cv_results ranks every row)
        table = table.assign(**{f"rank_test_{scoring}": range(1, len(table) + 1)})
    costs = [c for c in summary.get("objectives", [])[1:] if COST_HEADINGS.get(c)]
    lines = ["", f"{'rank':<5}{'config':<16}{scoring + ' mean ± std':>26}"
             + (f"{'p':>7}" if compared else "") + (f"{'round':>6}" if in_rounds else "")
             + (f"{'folds':>6}" if by_folds else "")
             + "".join(f"{COST_HEADINGS[c][0]:>{COST_HEADINGS[c][1]}}" for c in costs)
             + (f"{'front':>6}" if costs else "")
             + "  " + "  ".join(varying)]
    failed = []
    for (_, row), values in zip(table.iterrows(), params, strict=True):
        error = row.get("fit_error")
        if isinstance(error, str) and error:  # scored NaN: ranked last, its error below
            score = "failed"
            failed.append(f"failed   {row['config_id']}: {error}")
        else:
            score = f"{row[f'mean_test_{scoring}']:.4f} ± {row[f'std_test_{scoring}']:.4f}"
        p = row.get(f"pvalue_vs_best_{scoring}")
        shown = (f"{p:7.3f}" if isinstance(p, float) and p == p else " " * 7) if compared else ""
        shown += f"{int(row['round']):>6}" if in_rounds else ""
        shown += f"{int(row['n_resources']):>6}" if by_folds else ""
        shown += "".join(_cost(row.get(COSTS[c]), COST_HEADINGS[c][1]) for c in costs)
        shown += f"{'*' if row.get('pareto_front') in (True, 'True') else '':>6}" if costs else ""
        lines.append(f"{row[f'rank_test_{scoring}']:<5}{row['config_id']:<16}{score:>26}"
                     f"{shown}  " + "  ".join(_short(values.get(k)) for k in varying))
    notes = [""] + failed if failed else []
    if compared:
        notes.append(f"\np: corrected resampled t-test (Nadeau-Bengio), one-sided, that the best "
                     f"{scoring} is no better than this configuration's")
    for cid, error in summary.get("serving_errors", {}).items():
        notes.append(f"serving  {cid} could not be measured (off the front): {error}")
    if costs:
        notes.append(f"front    * on the Pareto front of {', '.join(summary['objectives'])}"
                     + ("; latency: milliseconds per 1,000 raw rows of the exported model"
                        if "latency" in costs else ""))
    if summary.get("top_config_id") and summary["best_config_id"] != summary["top_config_id"]:
        rule = summary.get("refit", "one_standard_error")
        chosen = (f"the lowest {rule.split(':', 1)[1]}" if rule.startswith("pareto:")
                  else "the simplest")
        notes.append(f"refit    {rule}: {summary['best_config_id']}, {chosen} within one "
                     f"standard error of {summary['top_config_id']}")
    return "\n".join(lines + notes)


# cost → (heading, width); its cv_results column is core.scoring.pareto.COSTS's
COST_HEADINGS = {"latency": ("ms/1k rows", 11), "n_parameters": ("params", 9),
                 "model_bytes": ("bytes", 10)}


def _cost(value, width: int) -> str:
    if value is None or value != value:
        return " " * width
    return f"{value:>{width}.2f}" if float(value) < 1000 and not float(value).is_integer() \
        else f"{int(value):>{width}}"


def _short(value) -> str:
    """A parameter's value for a table: sampled floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value)


def print_estimates(search, estimates: list, nodes: int, accelerator: str,
                    pod_start: float | None = None) -> None:
    """The packings side by side: tasks, models per task, time here and on the cluster."""
    from foldwise.components.core import options
    from foldwise.components.core.search.costs import POD_START_SECONDS
    from foldwise.components.core.training.step_costs import MEASURED

    def seconds(value: float) -> str:
        return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"

    cluster = f"{nodes} node{'s' if nodes != 1 else ''} × {accelerator}"
    columns = [("packing", 9), ("tasks", 7), ("models/task", 14), ("here", 10),
               (cluster, max(12, len(cluster) + 2)), ("node-hours", 12)]
    print(f"{search.pipeline}: estimated from the per-step costs measured on "
          f"{MEASURED['machine']} ({MEASURED['measured']})")
    print("".join(name.ljust(size) if i == 0 else name.rjust(size)
                  for i, (name, size) in enumerate(columns)))
    chosen = search.run.get("packing") or options.LOCAL_DEFAULTS["packing"]
    for found in estimates:
        models = (str(found.models[0]) if len(set(found.models)) == 1
                  else f"{min(found.models)}-{max(found.models)}")
        cells = [found.packing + ("*" if found.packing == chosen else ""),
                 str(found.tasks), models, seconds(found.local_seconds),
                 seconds(found.cluster_seconds), f"{found.node_hours:.3f}"]
        print("".join(cell.ljust(size) if i == 0 else cell.rjust(size)
                      for i, (cell, (_, size)) in enumerate(zip(cells, columns, strict=True))))
    start = POD_START_SECONDS if pod_start is None else pod_start
    print(f"* what 'run' would use here; a compiled pipeline defaults to "
          f"{options.option('packing').default}. Each pod is assumed to start in "
          f"{start:.0f} s (--pod-start).")
    count, reasons = estimates[0].programs if estimates else (0, [])
    if count:
        print(f"{count} training program{'s' if count != 1 else ''} (JAX, packed): widths, "
              "learning rates, L2 and dropout rates are data"
              + (f"; apart by {', '.join(reasons)}" if reasons else "") + ".")
    note = kinds.get(search.pipeline).estimate_note
    if note:
        print(f"{search.pipeline} is {note}.")
    from foldwise.components.core.models.estimators import role_of

    if role_of(search.model_spec) == "user":
        print("Your builder's layers are not known before it is built: its models are "
              "estimated by their steps' fixed cost only, a lower bound.")


def describe_folds(schema: dict, folds: int) -> str:
    """The plan's folds line: how many, how they split the rows, the seed."""
    splits = schema.get("splits") or {}
    if splits.get("split") == "time":
        order = (f"by {splits['order_column']!r}" if splits.get("order_column")
                 else "in the table's row order")
        gap = (f", a gap of {splits['gap']} row{'s' if splits['gap'] > 1 else ''}"
               if splits.get("gap") else "")
        return (f"{folds} time-ordered {order}: validation blocks of {splits['test_size']} "
                f"rows{gap}, the first fold trains on {splits['first_training_rows']} rows")
    strategy = str(schema["fold_strategy"]).replace("_", " ")
    if schema.get("nested"):
        nested = schema["nested"]
        return (f"{nested['outer_folds']} outer x {nested['inner_folds']} inner "
                f"({strategy.removeprefix('nested ')}, seed {schema['seed']})")
    if int(splits.get("repeats", 1)) > 1:
        return (f"{folds} = {splits['folds_per_repeat']} folds x {splits['repeats']} repeats "
                f"({strategy}, seed {schema['seed']})")
    return f"{folds} ({schema['fold_strategy']}, seed {schema['seed']})"
