"""A million rows end to end: foldwise's grid search against scikit-learn's MLP, same work.

    .venv/bin/python benchmarks/scale_train.py              (about 15 minutes)
    .venv/bin/python benchmarks/scale_train.py --rows 200000

The table is generated (seed 0) and written as Parquet: 1,000,000 rows × 30 columns, 22
numeric (1% missing) and 8 categorical (4 to 30 levels, 1% missing), and a numeric target.
The work: 6 configurations (two hidden ReLU layers of 32, 64 or 128 units × Adam learning
rate 0.001 or 0.01) × 5 folds × 3 epochs, batch size 256. Each tool runs in its own
process; the time and the peak resident memory of its whole process tree are recorded
(``compare.measure``):

- ``foldwise``: ``foldwise run grid-search`` end to end on kfp.local (preprocess, per-fold
  transforms, the train tasks, aggregate, refit on all rows, report, export);
- ``mlp-2``: scikit-learn's ``MLPRegressor`` in a ``Pipeline`` (median imputation and
  scaling, one-hot encoding, fitted inside each split) under ``GridSearchCV(n_jobs=2)`` on
  foldwise's folds, the target standardized per split, exactly 3 epochs.
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

import compare  # noqa: E402 - timing and memory sampling

HIDDEN, RATES, LAYERS = [32, 64, 128], [0.001, 0.01], 2
EPOCHS, BATCH, FOLDS, SEED = 3, 256, 5, 0
LEVELS = [4, 6, 8, 10, 12, 16, 20, 30]


def table_path(rows: int) -> Path:
    """The generated table of ``rows`` rows (written once)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = HERE / ".data" / f"generated-{rows}.parquet"
    if path.exists():
        return path
    path.parent.mkdir(exist_ok=True)
    rng = np.random.default_rng(SEED)
    columns, signal = {}, np.zeros(rows)
    for i in range(22):
        values = rng.normal(size=rows)
        signal += values * (i % 5 - 2) / 3
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"x{i}"] = values
    for i, levels in enumerate(LEVELS):
        codes = rng.integers(0, levels, size=rows)
        signal += np.sin(codes)
        labels = pa.array([f"c{i}-{k}" for k in range(levels)])
        mask = rng.random(rows) < 0.01
        columns[f"c{i}"] = pa.DictionaryArray.from_arrays(
            pa.array(codes.astype("int32"), mask=mask), labels).cast(pa.string())
    columns["y"] = np.tanh(signal) * 10 + rng.normal(size=rows)
    partial = path.with_suffix(".partial")
    pq.write_table(pa.table(columns), partial)
    partial.replace(path)
    return path


def run_foldwise(rows: int) -> dict:
    """``foldwise run grid-search`` through the command line, as a user runs it."""
    with tempfile.TemporaryDirectory(prefix="foldwise-scale-") as folder:
        grid = Path(folder) / "grid.yaml"
        grid.write_text(json.dumps({"hidden_units": [[h] * LAYERS for h in HIDDEN],
                                    "learning_rate": RATES}))
        output = Path(folder) / "run"
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "foldwise"), "run", "grid-search",
                        "--data", str(table_path(rows)), "--target", "y", "--grid", str(grid),
                        "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
                        "--folds", str(FOLDS), "--seed", str(SEED), "--output", str(output)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        summary = json.loads((output / "summary.json").read_text())
        return {"seconds": seconds, "best": summary["best_params"]["hidden_units"],
                "r2": summary["metrics"]["r2"]["mean"]}


def run_mlp(rows: int) -> dict:
    """The same search with scikit-learn's MLP under GridSearchCV(n_jobs=2)."""
    import pandas as pd

    from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
    from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess

    raw = pd.read_parquet(table_path(rows))
    prepared, schema = preprocess(raw, PreprocessOptions(target="y", task="regression",
                                                         folds=FOLDS, seed=SEED))
    frame = raw.iloc[prepared[ROW_COLUMN].to_numpy()].reset_index(drop=True)
    folds = prepared[FOLD_COLUMN].to_numpy()
    started = time.perf_counter()
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    net = MLPRegressor(solver="adam", max_iter=EPOCHS, batch_size=BATCH, random_state=SEED,
                       n_iter_no_change=EPOCHS + 1, tol=0.0)
    pipeline = TransformedTargetRegressor(
        regressor=Pipeline([("prep", compare.preprocessing(schema)), ("net", net)]),
        transformer=StandardScaler())
    grid = {"regressor__net__hidden_layer_sizes": [(h,) * LAYERS for h in HIDDEN],
            "regressor__net__learning_rate_init": RATES}
    y = frame.pop("y")
    search = GridSearchCV(pipeline, grid, cv=PredefinedSplit(folds), n_jobs=2, scoring="r2")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(frame[schema["numeric"] + schema["categorical"]], y)
    return {"seconds": time.perf_counter() - started,
            "best": list(search.best_params_["regressor__net__hidden_layer_sizes"]),
            "r2": float(search.best_score_)}


def main() -> int:
    """Each tool in a process of its own (or one worker, in a child process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tools", default="foldwise,mlp-2")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", type=Path, default=HERE / "scale_train.json")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, rows, out = args.worker
        run = run_foldwise if tool == "foldwise" else run_mlp
        Path(out).write_text(json.dumps({**run(int(rows)), "configs": []}))
        return 0
    table_path(args.rows)
    results = []
    for tool in args.tools.split(","):
        result = compare.measure(tool, str(args.rows), args.timeout, script=__file__)
        results.append(result)
        print(f"{tool:10} {result.get('wall_s', float('nan')):8.1f} s "
              f"{result['peak_mb']:8.0f} MB  best {result.get('best')} R² "
              f"{result.get('r2', float('nan')):.4f}", flush=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
