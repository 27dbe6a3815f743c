"""Preprocessing and per-fold transforms on large generated tables: time and peak memory.

    .venv/bin/python benchmarks/scale.py                  (100k, 1M and 10M rows)
    .venv/bin/python benchmarks/scale.py --rows 1000000

Each size runs in a fresh process that executes the real step functions, files included:
the preprocess step (read the Parquet table, infer roles, assign 5 stratified folds, write),
then for one fold the scale step (impute and scale, fitted on the other folds' rows) and the
one_hot_encode step, and finally the model-ready float32 matrix the train step builds. The
table: 8 numeric columns (1% missing), 3 categorical columns (5, 12 and 40 levels, 1%
missing) and a numeric target.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = [100_000, 1_000_000, 10_000_000]


def generate(rows: int, path: Path) -> None:
    """Write the generated table of ``rows`` rows as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    columns = {}
    for i in range(8):
        values = rng.normal(size=rows)
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"x{i}"] = values
    for name, levels in (("color", 5), ("region", 12), ("store", 40)):
        codes = rng.integers(0, levels, size=rows).astype("int32")
        labels = pa.array([f"{name}-{i}" for i in range(levels)])
        indices = pa.array(codes, mask=rng.random(rows) < 0.01)
        columns[name] = pa.DictionaryArray.from_arrays(indices, labels).cast(pa.string())
    columns["y"] = columns["x0"] * 3 + rng.normal(size=rows)
    columns["y"] = np.nan_to_num(columns["y"])
    pq.write_table(pa.table(columns), path)


def worker(rows: int) -> dict:
    """Run the steps on one size in this process; seconds per step and peak memory."""
    from kfp import dsl

    from foldwise.components.one_hot_encode import one_hot_encode
    from foldwise.components.preprocess import preprocess
    from foldwise.components.scale import scale

    seconds = {}
    with tempfile.TemporaryDirectory(prefix="foldwise-scale-") as folder:
        tmp = Path(folder)
        table = tmp / "table.parquet"
        started = time.perf_counter()
        generate(rows, table)
        seconds["generate"] = time.perf_counter() - started

        def artifact(kind, name):
            return kind(uri=str(tmp / name))

        prepared, schema = artifact(dsl.Dataset, "prepared"), artifact(dsl.Artifact, "schema")
        started = time.perf_counter()
        preprocess.python_func(data=str(table), target="y", task="regression", prepared=prepared,
                               schema=schema, fold_assignment=artifact(dsl.Dataset, "folds"),
                               folds=5, seed=0)
        seconds["preprocess"] = time.perf_counter() - started
        scaled = artifact(dsl.Dataset, "scaled")
        started = time.perf_counter()
        scale.python_func(prepared=prepared, schema=schema, fold=0, scaled=scaled,
                          scaler_state=artifact(dsl.Artifact, "scaler"), scaler="standard")
        seconds["scale"] = time.perf_counter() - started
        encoded = artifact(dsl.Dataset, "encoded")
        started = time.perf_counter()
        one_hot_encode.python_func(scaled=scaled, schema=schema, fold=0, encoded=encoded,
                                   encoder_state=artifact(dsl.Artifact, "encoder"))
        seconds["one_hot_encode"] = time.perf_counter() - started
        started = time.perf_counter()
        from foldwise.components.core.data.fold_data import read_fold_table, split_fold

        frame, fold, features = read_fold_table(encoded.path)
        data = split_fold(frame, fold, "y", features)
        seconds["fold_matrix"] = time.perf_counter() - started
        width = data.x_train.shape[1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"rows": rows, "features": width, "seconds": seconds, "peak_bytes": peak}


def main() -> int:
    """Every size in a fresh process; print a table and write scale.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="table size (repeatable)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return 0
    results = []
    print(f"{'rows':>11} {'preprocess':>11} {'scale':>8} {'one-hot':>8} {'matrix':>8} "
          f"{'total':>8} {'peak':>9} {'µs/row':>7} {'bytes/row':>9}")
    for rows in args.rows or SIZES:
        out = subprocess.run([sys.executable, __file__, "--worker", str(rows)], check=True,
                             capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        results.append(result)
        s = result["seconds"]
        total = sum(v for k, v in s.items() if k != "generate")
        print(f"{rows:>11,} {s['preprocess']:>10.1f}s {s['scale']:>7.1f}s "
              f"{s['one_hot_encode']:>7.1f}s {s['fold_matrix']:>7.1f}s {total:>7.1f}s "
              f"{result['peak_bytes'] / 2**30:>7.2f}GiB {total / rows * 1e6:>7.2f} "
              f"{result['peak_bytes'] / rows:>9.0f}", flush=True)
    (Path(__file__).resolve().parent / "scale.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
