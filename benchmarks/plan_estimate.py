"""``foldwise plan``'s time estimate against the run it estimates, on this machine.

    .venv/bin/python benchmarks/plan_estimate.py [--write-readme]

Each search is planned (``foldwise plan``, nothing trained) and then run (``foldwise run``),
alone on the machine, through the command line as a user runs them; the estimate of the
packing ``run`` uses here (marked ``*``) is compared with the run's own time (the last line
it prints). The README promises the estimate within 2× of the run; this is where that is
measured (a test cannot hold a time: a loaded machine runs slower than any estimate).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import record, table_path  # noqa: E402

FOLDWISE = str(Path(sys.executable).parent / "foldwise")
SEARCHES = {
    # The command line's grid search of the test suite (tests/test_api.py), 4 configurations.
    "diabetes grid, 4 configurations × 3 folds": (
        "diabetes", "target", ["grid-search", "--folds", "3", "--epochs", "4",
                               "--batch-size", "16", "--seed", "3"],
        {"hidden_units": [[4], [12, 6]], "learning_rate": [0.001, 0.01]}),
    # The README's first command.
    "penguins cross-validation, 5 folds": (
        "penguins", "species", ["cross-validation"], None),
    # A wider grid: packing cuts and several train tasks.
    "diamonds-10k grid, 12 configurations × 5 folds": (
        "diamonds-10k", "price", ["grid-search", "--epochs", "10"],
        {"hidden_units": [[16], [64], [64, 32]], "learning_rate": [0.001, 0.01],
         "l2": [0.0, 0.0001]}),
}


def one(name: str, table: str, target: str, args: list, grid: dict | None, work: Path) -> dict:
    """Plan one search, then run it: the estimate of the packing run uses, and the run's time."""
    data = table_path(table)
    extra = []
    if grid is not None:
        path = work / f"{table}-grid.yaml"
        path.write_text(json.dumps(grid))
        extra = ["--grid", str(path)]
    common = [*args[:1], "--data", str(data), "--target", target, *args[1:], *extra]
    planned = subprocess.run([FOLDWISE, "plan", *common], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    chosen = next(line.split() for line in planned if line.split() and
                  line.split()[0].endswith("*"))
    value, unit = chosen[3:5]
    estimated = float(value) * (60 if unit == "min" else 1)
    started = time.perf_counter()
    ran = subprocess.run([FOLDWISE, "run", *common, "--output", str(work / name.split()[0])],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    measured = float(ran.stdout.strip().splitlines()[-1].strip("[] s"))
    return {"search": name, "packing": chosen[0].rstrip("*"), "tasks": int(chosen[1]),
            "estimated_s": estimated, "run_s": measured, "process_s": round(wall, 1),
            "ratio": round(estimated / measured, 2)}


def report(results: list[dict]) -> str:
    """The results as a Markdown table, with the estimate furthest from its run."""
    lines = ["| search | packing | train tasks | estimated | run | estimate / run |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['search']} | {r['packing']} | {r['tasks']} | "
                     f"{r['estimated_s']:.0f} s | {r['run_s']:.1f} s | {r['ratio']:.2f} |")
    worst = max(max(r["ratio"], 1 / r["ratio"]) for r in results)
    lines += ["", f"Furthest from the run: {worst:.2f}× (the README promises within 2×)."]
    return "\n".join(lines)


def main() -> int:
    """Plan and run every search, print the table, and write it where asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as work:
        for name, (table, target, search, grid) in SEARCHES.items():
            results.append(one(name, table, target, search, grid, Path(work)))
            print(json.dumps(results[-1]), flush=True)
    record("plan_estimate", "plan-estimate", results, report(results), started, args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
