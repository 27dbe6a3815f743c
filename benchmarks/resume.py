"""What ``--resume`` saves: a grid search stopped partway through its training, resumed.

    .venv/bin/python benchmarks/resume.py [--write-readme]

Through the command line, as a user runs it, each run alone on the machine:

1. the search uninterrupted: its training phase (the first train task's start to the
   aggregate step's start, read from the run folder) and its whole time;
2. for each share (50% and 90%): the same search stopped with Ctrl-C once that share of the
   uninterrupted training phase has passed, then resumed (``--resume``): the resumed run's
   training phase and whole time, as shares of the uninterrupted run's.

The README promises that a search stopped at 90% of its training costs at most 15% more
training when resumed. Train tasks reuse every (configuration, fold) an earlier task finished,
and a pack stopped mid-training continues from its last finished epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import record, table_path  # noqa: E402

FOLDWISE = str(Path(sys.executable).parent / "foldwise")
GRID = {"hidden_units": [[16], [64], [64, 32]], "learning_rate": [0.001, 0.01],
        "l2": [0.0, 0.0001]}
SHARES = (0.5, 0.9)


def command(work: Path, output: Path) -> list[str]:
    """The search's command line, writing its output to ``output``."""
    grid = work / "grid.yaml"
    grid.write_text(json.dumps(GRID))
    return [FOLDWISE, "run", "grid-search", "--data", str(table_path("diamonds-10k")),
            "--target", "price", "--grid", str(grid), "--epochs", "40", "--seed", "1",
            "--output", str(output)]


def seen(output: Path, runs_before: set[str], pattern: str) -> bool:
    """Whether this run (not an earlier one in the folder) has made ``pattern`` yet."""
    folder = output / "pipeline"
    return folder.is_dir() and any(
        True for run in folder.iterdir() if run.name not in runs_before
        for _ in run.glob(pattern))


def watched(argv: list[str], output: Path, stop_after: float | None = None) -> dict:
    """Run ``argv``; with ``stop_after``, Ctrl-C it that many seconds into its training.

    The training phase runs from the first train task's folder appearing to the aggregate
    step's, both seen by polling the run folder every 0.1 s.
    """
    before = {p.name for p in (output / "pipeline").iterdir()} if (
        output / "pipeline").is_dir() else set()
    started = time.time()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    train_start = aggregate_start = None
    while process.poll() is None:
        now = time.time()
        if train_start is None and seen(output, before, "*/train"):
            train_start = now
        if aggregate_start is None and seen(output, before, "aggregate"):
            aggregate_start = now
        if stop_after is not None and train_start is not None and \
                now - train_start >= stop_after:
            os.kill(process.pid, signal.SIGINT)
            process.communicate(timeout=120)
            return {"stopped_after_s": round(now - train_start, 1)}
        time.sleep(0.1)
    _, err = process.communicate()
    if process.returncode != 0 or train_start is None or aggregate_start is None:
        raise RuntimeError(f"{argv[:4]} failed: {err[-2000:]}")
    return {"total_s": round(time.time() - started, 1),
            "training_s": round(aggregate_start - train_start, 1)}


def measure() -> dict:
    """Every run of the module's docstring."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        whole = watched(command(work, work / "whole"), work / "whole")
        results["uninterrupted"] = whole
        print(json.dumps(whole), flush=True)
        for share in SHARES:
            output = work / f"stopped-{int(share * 100)}"
            argv = command(work, output)
            stopped = watched(argv, output, share * whole["training_s"])
            resumed = watched([*argv[:-2], "--resume", str(output)], output)
            results[f"{share:.0%}"] = {
                **stopped, **resumed,
                "training_share": round(resumed["training_s"] / whole["training_s"], 3),
                "total_share": round(resumed["total_s"] / whole["total_s"], 3)}
            print(json.dumps(results[f"{share:.0%}"]), flush=True)
    return results


def report(results: dict) -> str:
    """The runs as a Markdown table."""
    whole = results["uninterrupted"]
    lines = ["| run | training phase | whole run | resumed training / uninterrupted |",
             "|---|---|---|---|",
             f"| uninterrupted | {whole['training_s']:.1f} s | {whole['total_s']:.1f} s | |"]
    for share in SHARES:
        r = results[f"{share:.0%}"]
        lines.append(f"| stopped at {share:.0%} of training ({r['stopped_after_s']:.1f} s), "
                     f"resumed | {r['training_s']:.1f} s | {r['total_s']:.1f} s | "
                     f"{r['training_share']:.0%} |")
    return "\n".join(lines)


def main() -> int:
    """Measure, print the table, and write it where asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    results = measure()
    record("resume", "resume", results, report(results), started, args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
