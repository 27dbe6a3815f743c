"""Bayesian search with racing against the exhaustive grid and random search on one space.

    .venv/bin/python benchmarks/bayes.py [--space narrow|wide] [--seeds 3] [--reuse-grid]
                                         [--write-readme]

On diamonds 10k (10,000 rows of the diamonds table), a space of 192 configurations (hidden
layers [32], [64], [128], [32, 16], [64, 32] or [128, 64] × Adam learning rate 0.0003,
0.001, 0.003 or 0.01 × dropout 0 or 0.2 × L2 0 or 1e-4 × batch size 32 or 128; 20 epochs),
5 folds, searched through the command line, as a user runs it, each run in its own process:

- ``grid``: ``foldwise run grid-search``, every configuration on every fold (seed 0);
- ``bayes-<seed>``: ``foldwise run bayes-search --n-iter 40 --batch 8`` over the same
  space written as lists (5 rounds of 8, racing inside each round at the default confidence,
  0.95), for seeds 0, 1, 2 (the seed also draws the folds).

Training work is counted from the train tasks' own records: rows trained on × epochs run,
summed over every (configuration, fold) trained. Every answer is judged by the exhaustive
grid's scores: the chosen configuration's grid mean, and its distance to the grid's best
mean in units of that best's standard deviation over the folds (at most 1: within fold
noise).

Random search is not run: over a space of lists it draws configurations without
replacement (scikit-learn's ``ParameterSampler``), each scored on every fold, so the
expected number of draws until it first draws a configuration at least as good (by the
grid's scores) as the one Bayesian search chose is ``(N + 1) / (m + 1)`` for N
configurations of which m are that good, each costing a grid configuration's work. That
is the random search's work for the same quality that the table reports, set against the
Bayesian search's work up to the end of the round that asked the configuration it chose.
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

from compare import measure, record, replace_section, table_path, training_work  # noqa: E402

SPACE = {"hidden_units": [[32], [64], [128], [32, 16], [64, 32], [128, 64]],
         "learning_rate": [0.0003, 0.001, 0.003, 0.01], "dropout": [0.0, 0.2],
         "l2": [0.0, 0.0001], "batch_size": [32, 128]}
# --space wide: 280 configurations with clearly bad regions (learning rates from 1e-5 to
# 0.1, strong L2 and dropout, tiny and large layers, large batches), where most
# configurations are far from the best.
WIDE = {"hidden_units": [[4], [16], [64], [256], [16, 16], [64, 32], [256, 128]],
        "learning_rate": [0.00001, 0.0001, 0.001, 0.01, 0.1], "dropout": [0.0, 0.5],
        "l2": [0.0, 0.01], "batch_size": [32, 512]}
SPACES = {"narrow": SPACE, "wide": WIDE}
EPOCHS, FOLDS, N_ITER, BATCH = 20, 5, 40, 8
TABLE, TARGET = "diamonds-10k", "price"


def run_search(tool: str, name: str) -> dict:
    """One search through the command line; its choice, scores and training work.

    ``name`` is the table's, then ``@`` and the space's (the worker is given only a name).
    """
    name, _, space_name = name.partition("@")
    import subprocess

    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="foldwise-bench-") as folder:
        space = Path(folder) / "space.yaml"
        space.write_text(json.dumps(SPACES[space_name or "narrow"]))
        output = Path(folder) / "run"
        if tool == "grid":
            search, seed = ["grid-search"], 0
        else:
            seed = int(tool.split("-")[1])
            search = ["bayes-search", "--n-iter", str(N_ITER), "--batch", str(BATCH)]
        command = [str(Path(sys.executable).parent / "foldwise"), "run", *search,
                   "--data", str(table_path(name)), "--target", TARGET, "--grid", str(space),
                   "--epochs", str(EPOCHS), "--folds", str(FOLDS), "--seed", str(seed),
                   "--output", str(output)]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        summary = json.loads((output / "summary.json").read_text())
        table = pd.read_csv(output / "cv_results.csv")
        work, trials, by_round = training_work(output)
        scoring = summary["scoring"]
        chosen = table.set_index("config_id").loc[summary["best_config_id"]]
        found_in = int(chosen["round"]) if "round" in table else 0
        return {"seconds": seconds, "best": summary["best_config_id"], "work": work,
                "trials": trials, "scoring": scoring, "found_in_round": found_in,
                "work_to_answer": sum(w for r, w in by_round.items() if r <= found_in),
                "raced_out": int((table["n_resources"] < FOLDS).sum())
                if "n_resources" in table else 0,
                "configs": {row["config_id"]: {
                    "mean": float(row[f"mean_test_{scoring}"]),
                    "std": float(row[f"std_test_{scoring}"]),
                    "params": json.loads(row["params"])} for _, row in table.iterrows()}}


def _label(params: dict) -> str:
    return (f"{params['hidden_units']} lr {params['learning_rate']} dropout "
            f"{params['dropout']} l2 {params['l2']} batch {params['batch_size']}")


def random_work(scores: dict, quality: float, per_config: float) -> float:
    """Random search's expected work until it draws a configuration at least this good."""
    good = sum(1 for s in scores.values() if s["mean"] >= quality)
    return (len(scores) + 1) / (good + 1) * per_config


def report(results: dict) -> str:
    """The comparison as a Markdown table, judged by the exhaustive grid's scores."""
    grid = results["grid"]
    scores = grid["configs"]
    top = scores[grid["best"]]
    per_config = grid["work"] / len(scores)
    lines = [f"diamonds 10k, {len(scores)} configurations × {FOLDS} folds, {EPOCHS} epochs "
             "each. Work: rows trained on × epochs, summed over every model trained. Random "
             "search's work for the same quality: its expected draws until one is as good "
             "(by the grid's scores), each a configuration on every fold.", "",
             "| search | wall | trials | training work | work vs grid | raced out | chose | "
             "its grid mean r2 | from grid's best (fold std) | found in round (work so far) "
             "| random search's work for it | work so far vs random |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios, randoms, distances = [], [], []
    for tool, result in results.items():
        chosen = scores[result["best"]]
        distance = (top["mean"] - chosen["mean"]) / max(top["std"], 1e-12)
        random = random_work(scores, chosen["mean"], per_config)
        so_far = result.get("work_to_answer", result["work"])
        if tool != "grid":
            ratios.append(result["work"] / grid["work"])
            randoms.append(so_far / random)
            distances.append(distance)
        versus = "—" if tool == "grid" else f"{so_far / random:.0%}"
        found = ("—" if tool == "grid" else
                 f"{result.get('found_in_round', 0)} ({so_far / 1e6:.0f} M)")
        lines.append(
            f"| {tool} | {result['seconds']:.0f} s | {result['trials']} | "
            f"{result['work'] / 1e6:.0f} M | {result['work'] / grid['work']:.0%} | "
            f"{result.get('raced_out', 0)} | {_label(chosen['params'])} | "
            f"{chosen['mean']:.4f} ± {chosen['std']:.4f} | {distance:.2f} | {found} | "
            f"{random / 1e6:.0f} M | {versus} |")
    if ratios:
        lines += ["", f"Bayesian search, mean over {len(ratios)} seeds: "
                  f"{sum(ratios) / len(ratios):.0%} of the grid's work (target ≤ 25%), "
                  f"{sum(randoms) / len(randoms):.0%} of random search's expected work for "
                  "the same quality, counting its work up to the round that found its answer "
                  "(target ≤ 33%), "
                  f"{sum(distances) / len(distances):.2f} fold standard deviations from the "
                  "grid's best (target ≤ 1)."]
    return "\n".join(lines)


def main() -> int:
    """Run the grid and the Bayesian searches (or one, as a worker) and report them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5400.0)
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--space", choices=sorted(SPACES), default="narrow")
    parser.add_argument("--reuse-grid", action="store_true",
                        help="take the exhaustive grid's results from the last run's JSON")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, name, out = args.worker
        Path(out).write_text(json.dumps(run_search(tool, name)))
        return 0
    started = time.perf_counter()
    table_path(TABLE)
    results = {}
    saved = "bayes.json" if args.space == "narrow" else f"bayes-{args.space}.json"
    if args.reuse_grid:
        results["grid"] = json.loads((HERE / saved).read_text())["grid"]
    for tool in ["grid", *[f"bayes-{seed}" for seed in range(args.seeds)]]:
        if tool in results:
            continue
        measured = measure(tool, f"{TABLE}@{args.space}", args.timeout, script=__file__)
        if "stopped_after" in measured:
            raise RuntimeError(f"{tool} did not finish in {args.timeout:.0f} s")
        measured["seconds"] = measured.pop("wall_s")
        results[tool] = measured
        print(f"{tool:8} {measured['seconds']:7.1f} s  work {measured['work'] / 1e6:8.1f} M  "
              f"best {measured['best']}", flush=True)
    if args.space == "narrow":
        record("bayes", "bayes", results, report(results), started, args.write_readme)
        return 0
    (HERE / saved).write_text(json.dumps(results, indent=1) + "\n")
    body = report(results)
    print(body)
    if args.write_readme:
        minutes = (time.perf_counter() - started) / 60
        replace_section(f"bayes-{args.space}", f"`benchmarks/bayes.py --space {args.space}` "
                        f"({minutes:.0f} min)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
