"""A user's own Keras builder, grid-searched: foldwise against scikeras + GridSearchCV.

    .venv/bin/python benchmarks/builder.py --write-readme      (about 8 minutes)

The builder is ``benchmarks/builders.py:two_layer_model`` (two hidden ReLU layers with
dropout layers, compiled by itself, scikeras' ``meta`` convention, Keras imported as
tutorials do: ``from tensorflow import keras``); every tool runs that same function on
diamonds (a seeded 10,000-row sample), over compare.py's grid, units {32, 64, 128} ×
learning rate {0.001, 0.01}: 6 configurations × 5 folds × 20 epochs, batch size 32, on
foldwise's folds, with the target standardized per fold. The tools, each in its own process:

- ``foldwise``: ``foldwise run grid-search --model benchmarks/builders.py:two_layer_model``
  end to end on kfp.local, with an empty JAX compilation cache (a first run);
- ``foldwise-warm``: the same again, the cache left by the first run (every later run);
- ``scikeras-2``: scikeras' ``KerasRegressor(model=two_layer_model)`` in a scikit-learn
  Pipeline (imputation, scaling, one-hot inside the CV) under ``GridSearchCV(n_jobs=2)``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402 - the shared tables, folds, timing and memory sampling

TABLE = "diamonds-10k"
GRID = {"units": [32, 64, 128], "learning_rate": [0.001, 0.01]}
BUILDER = HERE / "builders.py"
TOOLS = ["foldwise", "foldwise-warm", "scikeras-2"]


def run_foldwise(tool: str, name: str) -> dict:
    """``foldwise run grid-search --model ...`` through the command line, as a user runs it."""
    import pandas as pd

    target, _ = compare.TABLES[name]
    with tempfile.TemporaryDirectory(prefix="foldwise-bench-") as folder:
        grid = Path(folder) / "grid.yaml"
        grid.write_text(json.dumps(GRID))
        output = Path(folder) / "run"
        command = [str(Path(sys.executable).parent / "foldwise"), "run", "grid-search",
                   "--model", f"{BUILDER}:two_layer_model", "--grid", str(grid),
                   "--data", str(compare.table_path(name)), "--target", target,
                   "--epochs", str(compare.EPOCHS), "--batch-size", str(compare.BATCH),
                   "--folds", str(compare.FOLDS), "--seed", str(compare.SEED),
                   "--output", str(output)]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        scoring = json.loads((output / "summary.json").read_text())["scoring"]
        table = pd.read_csv(output / "cv_results.csv")
        configs = [{"units": int(params["units"]),
                    "learning_rate": float(params["learning_rate"]),
                    "mean": float(row[f"mean_test_{scoring}"]),
                    "std": float(row[f"std_test_{scoring}"])}
                   for params, (_, row) in zip(map(json.loads, table["params"]),
                                               table.iterrows(), strict=True)]
        return {"configs": configs, "seconds": seconds}


def run_scikeras(tool: str, name: str) -> dict:
    """The same builder in scikeras' KerasRegressor under GridSearchCV."""
    frame, folds, schema = compare.folds_of(name)  # the benchmark's own preparation
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from builders import two_layer_model
    from scikeras.wrappers import KerasRegressor

    net = KerasRegressor(model=two_layer_model, model__units=GRID["units"][0],
                         model__learning_rate=GRID["learning_rate"][0], epochs=compare.EPOCHS,
                         batch_size=compare.BATCH, verbose=0, random_state=compare.SEED)
    grid = {f"model__{key}": values for key, values in GRID.items()}
    search = compare.grid_search(net, grid, name, frame, folds, schema,
                                 int(tool.rsplit("-", 1)[1]))
    seconds = time.perf_counter() - started
    configs = []
    for params, mean, std in zip(search.cv_results_["params"],
                                 search.cv_results_["mean_test_score"],
                                 search.cv_results_["std_test_score"], strict=True):
        values = {key.rsplit("__", 1)[1]: value for key, value in params.items()}
        configs.append({"units": int(values["units"]),
                        "learning_rate": float(values["learning_rate"]),
                        "mean": float(mean), "std": float(std)})
    return {"configs": configs, "seconds": seconds}


def key(config: dict) -> tuple:
    """A configuration's searched values."""
    return config["units"], config["learning_rate"]


def report(results: list[dict]) -> str:
    """One Markdown table: time, ratio, best configuration and agreement with foldwise."""
    reference = next(r for r in results if r["tool"] == "foldwise")
    ours = max(reference["configs"], key=lambda c: c["mean"])
    scores = {key(c): c for c in reference["configs"]}
    lines = ["| tool | wall | time ÷ foldwise's | peak memory | best (units, learning rate) | "
             "best R² (mean ± std) | best within fold noise of foldwise's best |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        top = max(r["configs"], key=lambda c: c["mean"])
        # The tool's best is within fold noise when foldwise scores it within one fold std
        # of foldwise's own best.
        same = abs(scores[key(top)]["mean"] - ours["mean"]) <= ours["std"]
        lines.append(
            f"| {r['tool']} | {r['wall_s']:.1f} s | {r['wall_s'] / reference['wall_s']:.2f}× "
            f"| {r['peak_mb']:.0f} MB | {top['units']}, {top['learning_rate']} | "
            f"{top['mean']:.4f} ± {top['std']:.4f} | {'yes' if same else 'no'} |")
    lines += ["", "| units, learning rate | " + " | ".join(r["tool"] for r in results) + " |",
              "|---|" + "---|" * len(results)]
    for units in GRID["units"]:
        for rate in GRID["learning_rate"]:
            cells = [next(f"{c['mean']:.4f} ± {c['std']:.4f}" for c in r["configs"]
                          if key(c) == (units, rate)) for r in results]
            lines.append(f"| {units}, {rate} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme(results: list[dict], seconds: float) -> None:
    """Replace the builder section of benchmarks/README.md."""
    compare.replace_section("builder", f"`benchmarks/builder.py` ({seconds / 60:.0f} min)",
                            report(results))


def main() -> int:
    """Run every tool once, in order (or one worker, in a child process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path, default=HERE / "builder.json")
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, name, out = args.worker
        run = run_foldwise if tool.startswith("foldwise") else run_scikeras
        Path(out).write_text(json.dumps(run(tool, name)))
        return 0
    started, results = time.perf_counter(), []
    compare.table_path(TABLE)
    with tempfile.TemporaryDirectory(prefix="foldwise-jax-cache-") as cache:
        os.environ["FOLDWISE_JAX_CACHE"] = cache  # empty for the first foldwise run
        for tool in args.tools.split(","):
            result = compare.measure(tool, TABLE, args.timeout, script=__file__)
            if "wall_s" not in result:
                raise SystemExit(f"{tool} did not finish in {args.timeout:.0f} s")
            results.append(result)
            print(f"{tool:14} {result['wall_s']:8.1f} s {result['peak_mb']:7.0f} MB",
                  flush=True)
            args.json.write_text(json.dumps(results, indent=1))
    print(report(results))
    if args.write_readme:
        write_readme(results, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
