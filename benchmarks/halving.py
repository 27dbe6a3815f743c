"""Halving and racing by folds against the full grid: the same answer for less training.

    .venv/bin/python benchmarks/halving.py [--folds 10] [--write-readme]

On the whole diamonds table (53,940 rows), a grid of 24 configurations (hidden layers
[32], [64], [128] or [64, 32] × Adam learning rate 0.0003, 0.001 or 0.003 × L2 0 or 1e-4;
20 epochs, batch size 32) is searched three ways through the command line, as a user runs
them, each in its own process:

- ``grid``: ``foldwise run grid-search``, every configuration on every fold;
- ``halving``: ``foldwise run halving-search`` (factor 3, scikit-learn's defaults otherwise);
- ``racing``: ``foldwise run halving-search --elimination racing --factor 2`` (the default
  confidence, 0.95);
- ``racing-0.9``: the same with ``--factor 1.5 --confidence 0.9``: a rung per fold or two,
  and a test that drops a candidate sooner.

Training work is counted from the train tasks' own records: rows trained on × epochs run,
summed over every (configuration, fold) trained. A search's answer is judged by the full
grid's scores: the configuration it chose, its full-grid mean, and the distance to the full
grid's best mean in units of that best's standard deviation over the folds (at most 1:
within fold noise).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import measure, replace_section, table_path, training_work  # noqa: E402

GRID = {"hidden_units": [[32], [64], [128], [64, 32]], "learning_rate": [0.0003, 0.001, 0.003],
        "l2": [0.0, 0.0001], "epochs": [20], "batch_size": [32]}
SEARCHES = {
    "grid": ["grid-search"],
    "halving": ["halving-search", "--factor", "3"],
    "racing": ["halving-search", "--elimination", "racing", "--factor", "2"],
    "racing-0.9": ["halving-search", "--elimination", "racing", "--factor", "1.5",
                   "--confidence", "0.9"],
}
TABLE, TARGET = "diamonds", "price"


def run_search(tool: str, name: str, folds: int) -> dict:
    """One search through the command line; its choice, scores and training work."""
    import subprocess

    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="foldwise-bench-") as folder:
        grid = Path(folder) / "grid.yaml"
        grid.write_text(json.dumps(GRID))
        output = Path(folder) / "run"
        command = [str(Path(sys.executable).parent / "foldwise"), "run", *SEARCHES[tool],
                   "--data", str(table_path(name)), "--target", TARGET, "--grid", str(grid),
                   "--folds", str(folds), "--seed", "0", "--output", str(output)]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        summary = json.loads((output / "summary.json").read_text())
        table = pd.read_csv(output / "cv_results.csv")
        work, trials, _ = training_work(output)
        scoring = summary["scoring"]
        final = table.drop_duplicates("config_id", keep="last")
        return {"seconds": seconds, "best": summary["best_config_id"], "work": work,
                "trials": trials, "scoring": scoring,
                "rungs": summary.get("halving"),
                "configs": {row["config_id"]: {
                    "mean": float(row[f"mean_test_{scoring}"]),
                    "std": float(row[f"std_test_{scoring}"]),
                    "params": json.loads(row["params"])} for _, row in final.iterrows()}}


def _label(params: dict) -> str:
    return f"{params['hidden_units']} lr {params['learning_rate']} l2 {params['l2']}"


def report(results: dict, folds: int) -> str:
    """The comparison as a Markdown table, judged by the full grid's scores."""
    grid = results["grid"]
    scores = grid["configs"]
    top = scores[grid["best"]]
    lines = [f"Whole diamonds table, {len(scores)} configurations × {folds} folds, 20 epochs "
             "each. Work: rows trained on × epochs, summed over every model trained.", "",
             "| search | wall | trials | training work | work vs grid | chose | its grid "
             "mean | from grid's best (fold std) | rungs (candidates on folds) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for tool, result in results.items():
        chosen = scores[result["best"]]
        distance = (top["mean"] - chosen["mean"]) / max(top["std"], 1e-12)
        rungs = result.get("rungs")
        shown = ("—" if not rungs else " → ".join(
            f"{c} on {r}" for c, r in zip(rungs["n_candidates"], rungs["n_resources"],
                                          strict=True)))
        lines.append(
            f"| {tool} | {result['seconds']:.1f} s | {result['trials']} | "
            f"{result['work'] / 1e6:.1f} M | {result['work'] / grid['work']:.0%} | "
            f"{_label(chosen['params'])} | {chosen['mean']:.4f} ± {chosen['std']:.4f} | "
            f"{distance:.2f} | {shown} |")
    return "\n".join(lines)


def main() -> int:
    """Run the three searches (or one, as a worker) and report them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", type=Path, default=HERE / "halving.json")
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # the table's name carries the folds: measure() passes only the name
        tool, name, out = args.worker
        table, folds = name.split("@")
        Path(out).write_text(json.dumps(run_search(tool, table, int(folds))))
        return 0
    started = time.perf_counter()
    table_path(TABLE)
    results = {}
    for tool in SEARCHES:
        measured = measure(tool, f"{TABLE}@{args.folds}", args.timeout, script=__file__)
        if "stopped_after" in measured:
            raise RuntimeError(f"{tool} did not finish in {args.timeout:.0f} s")
        measured["seconds"] = measured.pop("wall_s")
        results[tool] = measured
        print(f"{tool:8} {measured['seconds']:7.1f} s  work {measured['work'] / 1e6:8.1f} M  "
              f"best {measured['best']}", flush=True)
        args.json.write_text(json.dumps(results, indent=1))
    body = report(results, args.folds)
    print(body)
    if args.write_readme:
        minutes = (time.perf_counter() - started) / 60
        replace_section("halving", f"`benchmarks/halving.py` ({minutes:.0f} min)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
