"""A Bayesian search of score against serving latency: its front, and the latency's repeatability.

    .venv/bin/python benchmarks/pareto.py [--seed 0] [--write-readme]

On diamonds 10k, the 192-configuration space of ``benchmarks/bayes.py`` (5 folds, 20
epochs), searched through the command line as a user runs it:
``foldwise run bayes-search --n-iter 40 --batch 8 --objectives r2,latency
--refit pareto:latency``. The study is multi-objective (Optuna's TPE told each finished
configuration's mean r2 and latency), racing drops a configuration only for one that scores
better at no more latency, and the refit takes the fastest configuration within one standard
error of the best r2.

Latency is what the run measures (``core.serving.costs``: in the aggregate step, all models
in one process, in turns; each round's step measures its round for the study): one fold model
per configuration, exported with that fold's preprocessing, answering
1,000 raw rows per call as one TensorFlow graph, the median of 10 blocks of 20 calls.
Repeatability: after the search, every measured configuration's same fold model is measured
again, twice, each time in a fresh process as the run measures it; the table gives how far
the measurements of the same model lie apart (the median and the 90th percentile of
|ratio - 1|), their rank correlation over the configurations, and how many of the front's
configurations the front drawn from a re-measurement shares.
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bayes import BATCH, EPOCHS, FOLDS, N_ITER, SPACE, TABLE, TARGET  # noqa: E402
from compare import record, table_path  # noqa: E402

OBJECTIVES, REFIT = "r2,latency", "pareto:latency"
REMEASURES = 2


def run_search(seed: int, folder: Path) -> dict:
    """The search through the command line, its output kept in ``folder``."""
    space = folder / "space.yaml"
    space.write_text(json.dumps(SPACE))
    output = folder / "run"
    command = [str(Path(sys.executable).parent / "foldwise"), "run", "bayes-search",
               "--n-iter", str(N_ITER), "--batch", str(BATCH), "--objectives", OBJECTIVES,
               "--refit", REFIT, "--data", str(table_path(TABLE)), "--target", TARGET,
               "--grid", str(space), "--epochs", str(EPOCHS), "--folds", str(FOLDS),
               "--seed", str(seed), "--output", str(output)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {"seconds": time.perf_counter() - started, "output": str(output)}


def remeasure(output: Path, in_run: dict) -> list[dict]:
    """Every measured configuration's fold model, measured again in fresh processes.

    ``in_run``: each configuration's latency as the run measured it (``cv_results``).
    """
    from foldwise.components import storage
    from foldwise.components.core.data.whole_table import fold_serving_states
    from foldwise.components.core.serving.costs import measure_configs

    root = Path(sorted(glob.glob(str(output / "pipeline" / "*")))[-1])
    schema = json.loads((root / "preprocess" / "schema").read_text())
    states = fold_serving_states(
        schema, json.loads((root / "scale-folds" / "scaler_state").read_text()),
        json.loads((root / "one-hot-encode-folds" / "encoder_state").read_text()))
    entries = []
    for results in root.rglob("results"):
        try:
            found = json.loads(results.read_text())
        except (ValueError, UnicodeDecodeError, IsADirectoryError):
            continue
        if isinstance(found, list):
            entries += [e for e in found if isinstance(e, dict) and e.get("model")]
    again = [measure_configs(entries, storage.read_bytes, str(root / "preprocess" / "prepared"),
                             states, schema) for _ in range(REMEASURES)]
    return [{"config_id": cid, "in_run": latency,
             "computation": again[0].get(cid, {}).get("computation"),
             **{f"again_{i}": again[i].get(cid, {}).get("latency_ms")
                for i in range(REMEASURES)}}
            for cid, latency in in_run.items()]


def agreement(first: list[float], second: list[float]) -> dict:
    """How far two measurements of the same models lie apart."""
    import numpy as np
    from scipy.stats import spearmanr

    a, b = np.asarray(first, float), np.asarray(second, float)
    off = np.abs(b / a - 1.0)
    return {"median_off": float(np.median(off)), "p90_off": float(np.percentile(off, 90)),
            "spearman": float(spearmanr(a, b).statistic)}


def front_of(cv, latency: dict) -> set:
    """The front's configuration ids with these latencies (fully scored Keras rows)."""
    from foldwise.components.core.scoring.pareto import front

    rows = cv[(cv["n_resources"] == cv["n_resources"].max()) & cv["config_id"].isin(latency)]
    on = front(rows["mean_test_r2"], [[latency[c]] for c in rows["config_id"]])
    return set(rows.loc[on, "config_id"])


def run(seed: int) -> dict:
    """The search, its front, and the re-measurements."""
    import pandas as pd

    folder = Path(tempfile.mkdtemp(prefix="foldwise-pareto-"))
    try:
        searched = run_search(seed, folder)
        output = Path(searched["output"])
        cv = pd.read_csv(output / "cv_results.csv")
        summary = json.loads((output / "summary.json").read_text())
        measured = remeasure(output, {row["config_id"]: float(row["latency_ms"])
                                      for _, row in cv.iterrows()
                                      if row["latency_ms"] == row["latency_ms"]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    keys = ["in_run", *[f"again_{i}" for i in range(REMEASURES)]]
    usable = [m for m in measured if all(m[k] for k in keys)]
    fronts = {k: front_of(cv, {m["config_id"]: m[k] for m in usable}) for k in keys}
    rows = cv.set_index("config_id")
    return {
        "seconds": searched["seconds"], "seed": seed, "configs": len(cv),
        "raced_out": int((cv["n_resources"] < FOLDS).sum()),
        "best": summary["best_config_id"], "top": summary["top_config_id"],
        "front": summary["pareto_front"],
        "params": {cid: json.loads(rows.loc[cid, "params"]) for cid in rows.index},
        "scores": {cid: {"mean": float(rows.loc[cid, "mean_test_r2"]),
                         "std": float(rows.loc[cid, "std_test_r2"]),
                         "latency_ms": float(rows.loc[cid, "latency_ms"]),
                         "latency_iqr_ms": float(rows.loc[cid, "latency_iqr_ms"]),
                         "model_bytes": float(rows.loc[cid, "model_bytes"]),
                         "n_parameters": float(rows.loc[cid, "n_parameters"])}
                   for cid in rows.index},
        "measured": measured,
        "repeat": {f"{a} vs {b}": agreement([m[a] for m in usable], [m[b] for m in usable])
                   for a, b in [("in_run", "again_0"), ("again_0", "again_1")]},
        "fronts": {k: sorted(v) for k, v in fronts.items()},
    }


def _label(params: dict) -> str:
    return (f"{params['hidden_units']} lr {params['learning_rate']} dropout "
            f"{params['dropout']} l2 {params['l2']} batch {params['batch_size']}")


def report(result: dict) -> str:
    """The front and the repeatability as Markdown."""
    scores, params = result["scores"], result["params"]
    best, top = result["best"], result["top"]
    lines = [f"diamonds 10k, the 192-configuration space of `benchmarks/bayes.py`, {FOLDS} "
             f"folds, {EPOCHS} epochs: `foldwise run bayes-search --n-iter {N_ITER} --batch "
             f"{BATCH} --objectives {OBJECTIVES} --refit {REFIT}` (seed {result['seed']}), "
             f"{result['seconds']:.0f} s, {result['configs']} configurations asked, "
             f"{result['raced_out']} raced out. Latency: milliseconds per call of 1,000 raw "
             "rows on the exported model (its preprocessing folded in), the median of 10 "
             "blocks of 20 calls, ± half the blocks' interquartile range.", "",
             "**The front** (fastest first):", "",
             "| configuration | r2 (mean ± std over folds) | latency ms / 1,000 rows | "
             "model bytes | parameters | |", "|---|---|---|---|---|---|"]
    for point in result["front"]:
        cid = point["config_id"]
        s = scores[cid]
        mark = ("refitted (pareto:latency)" if cid == best else "") + (
            "; best r2" if cid == top else "")
        lines.append(f"| {_label(params[cid])} | {s['mean']:.4f} ± {s['std']:.4f} | "
                     f"{s['latency_ms']:.2f} ± {s['latency_iqr_ms'] / 2:.2f} | "
                     f"{s['model_bytes']:.0f} | {s['n_parameters']:.0f} | {mark.strip('; ')} |")
    if best != top:
        b, t = scores[best], scores[top]
        speedup = t["latency_ms"] / b["latency_ms"]
        lines += ["", f"The refit took {_label(params[best])}: {speedup:.1f}× faster "
                  f"than the best r2's configuration ({_label(params[top])}), "
                  f"{t['mean'] - b['mean']:.4f} r2 below it (within one standard error)."]
    computations = len({m["computation"] for m in result["measured"]})
    lines += ["", f"**Repeatability** of the latency, the same {len(result['measured'])} fold "
              f"models ({computations} distinct served computations: configurations that "
              "differ only in training settings share one measurement) measured again in "
              "fresh processes:", "",
              "| measurements | median \\|ratio − 1\\| | 90th percentile | rank correlation |",
              "|---|---|---|---|"]
    for pair, stats in result["repeat"].items():
        lines.append(f"| {pair.replace('_', ' ')} | {stats['median_off']:.1%} | "
                     f"{stats['p90_off']:.1%} | {stats['spearman']:.2f} |")
    fronts = result["fronts"]
    shared = [len(set(fronts["in_run"]) & set(fronts[k])) for k in fronts if k != "in_run"]
    lines += ["", f"The front drawn from each re-measurement shares "
              f"{' and '.join(str(n) for n in shared)} of the search's {len(fronts['in_run'])} "
              "front configurations."]
    return "\n".join(lines)


def main() -> int:
    """Run the search, measure again, and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.seed)
    record("pareto", "pareto", result, report(result), started, args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
