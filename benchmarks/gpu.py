"""Packed against one-task-per-(configuration, fold) training on a GPU, whole diamonds table.

    KERAS_BACKEND=jax python benchmarks/gpu.py --out /tmp/gpu.json            (the device run)
    .venv/bin/python benchmarks/gpu.py --rows 2000 --epochs 2 --out /tmp/g.json  (a smoke test)

The grid: two hidden ReLU layers of 32, 64 or 128 units × Adam learning rate 0.001 or 0.01
(6 configurations), 5 folds, 20 epochs, batch size 32, per-fold target standardization; the
features imputed, scaled and one-hot encoded per fold on the fold's training rows only
(foldwise's own ``core.data.preprocess``, ``core.data.scaling`` and ``core.data.encoding``).

1. The fold matrices are prepared once and written to .npz files (what the pipeline's per-fold
   transform steps hand its train tasks); not counted in either time.
2. Packed: ONE process trains all 30 models with ``core.training.vmapped.fit_members`` (Keras' own
   train step under ``jax.vmap``; members of one width vectorize: 3 groups of 10) and
   predicts each model's validation rows.
3. Unpacked: one process per (configuration, fold), run one after another as one GPU would,
   each training ONE model with the same ``fit_members`` (a group of one member): only the
   packing differs. Rounds of one fold for every configuration run while ``--unpacked-budget``
   seconds allow; folds not run are extrapolated from the configuration's measured tasks.

Every worker's time runs from just before its process is started (interpreter start and
imports included) to its predictions; "train" is the ``fit_members`` call alone (XLA
compilation, 20 epochs, validation loss per epoch and the predictions). Every model is built
from seed 0 and its data order from seed 0, in both modes, so a (configuration, fold) gets the
same model packed or alone, up to float rounding. Keras runs on JAX (``KERAS_BACKEND=jax``);
nothing imports TensorFlow or KFP (``_KFP_RUNTIME=true`` keeps ``foldwise.components`` from
loading the KFP wrappers). No persistent XLA compilation cache: every process compiles.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("_KFP_RUNTIME", "true")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for _name in ("JAX_COMPILATION_CACHE_DIR", "FOLDWISE_JAX_CACHE"):
    os.environ.pop(_name, None)

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / ".data" / "diamonds.csv"
WIDTHS = (32, 64, 128)
RATES = (0.001, 0.01)
CONFIGS = [{"hidden_units": [w, w], "learning_rate": lr} for w in WIDTHS for lr in RATES]
FOLDS = 5
SEED = 0


def label(config: dict) -> str:
    """``[64, 64] lr 0.01``."""
    return f"{config['hidden_units']} lr {config['learning_rate']}"


# ----- fold data (once, not timed into either mode) -----------------------------------------
def prepare(csv: Path, rows: int | None, folder: Path) -> dict:
    """Preprocess the table, scale and one-hot encode every fold; write ``fold-K.npz``."""
    import numpy as np

    from foldwise.components.core.columns import FOLD_COLUMN
    from foldwise.components.core.data.encoding import feature_matrix
    from foldwise.components.core.data.fold_transforms import encode_fold, scale_fold
    from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
    from foldwise.components.core.data.table import read_table

    started = time.perf_counter()
    raw = read_table(str(csv))
    if rows and rows < len(raw):
        raw = raw.sample(n=rows, random_state=SEED).reset_index(drop=True)
    table, schema = preprocess(raw, PreprocessOptions(target="price", task="regression",
                                                      folds=FOLDS, seed=SEED))
    folder.mkdir(parents=True, exist_ok=True)
    shapes = {}
    for fold in range(FOLDS):
        # the pipeline's own transforms: each fitted on this fold's training rows only
        scaled, _ = scale_fold(table, schema["numeric"], fold, "standard")
        encoded, features, _ = encode_fold(scaled, schema, fold)
        x = feature_matrix(encoded, features)
        y = encoded[schema["target"]].to_numpy(dtype="float64")
        validation = (encoded[FOLD_COLUMN] == fold).to_numpy()
        np.savez(folder / f"fold-{fold}.npz", x_train=x[~validation], y_train=y[~validation],
                 x_val=x[validation], y_val=y[validation])
        shapes[fold] = {"train": int((~validation).sum()), "validation": int(validation.sum()),
                        "features": len(features)}
    return {"rows": len(table), "numeric": schema["numeric"],
            "categorical": schema["categorical"], "folds": shapes,
            "seconds": time.perf_counter() - started}


# ----- a worker: one process training the (configuration, fold) pairs it is given ----------
def worker(args) -> None:
    """Train ``args.pairs`` (``c:f,c:f,...``) in this process; write timings and scores."""
    spawned = float(args.spawned)  # time.time() just before this process was started
    t_top = time.time()
    import jax
    import keras
    import numpy as np

    from foldwise.components.core.models.estimators import standard_target_scaling
    from foldwise.components.core.models.keras_model import build_model, seed_everything
    from foldwise.components.core.models.spec import normalize_spec
    from foldwise.components.core.models.targets import TargetForm
    from foldwise.components.core.scoring import metrics
    from foldwise.components.core.training.vmapped import Member, architecture_key, fit_members

    t_imports = time.time()
    devices = [str(d) for d in jax.devices()]  # initializes the backend
    t_backend = time.time()
    pairs = [tuple(int(v) for v in item.split(":")) for item in args.pairs.split(",")]
    folds = {f: dict(np.load(Path(args.data) / f"fold-{f}.npz")) for f in {f for _, f in pairs}}
    members, targets = [], []
    for c, f in pairs:
        params = {**CONFIGS[c], "activation": "relu", "optimizer": "adam",
                  "epochs": args.epochs, "batch_size": 32, "early_stopping": False,
                  "target_scaling": "standard"}
        spec = normalize_spec(params, "regression")
        data = folds[f]
        state = TargetForm.of_mlp("regression", None, standard_target_scaling(
            data["y_train"], "regression", spec))
        seed_everything(SEED)
        model = build_model(spec, data["x_train"].shape[1], "regression", None)
        members.append(Member(
            model, data["x_train"].astype("float32"),
            state.loss_targets(data["y_train"]), None, None, SEED, spec,
            architecture_key(model, spec, json.dumps(params, sort_keys=True)),
            data["x_val"].astype("float32"), state.loss_targets(data["y_val"])))
        targets.append(state)
    t_built = time.time()
    trained = fit_members(members, predict=[folds[f]["x_val"].astype("float32")
                                            for _, f in pairs])
    scores = []
    for (_, f), done, state in zip(pairs, trained, targets, strict=True):
        prediction = state.user_values(done.output)
        scores.append(metrics.score("regression", folds[f]["y_val"], prediction)["r2"])
    t_done = time.time()
    result = {
        "pairs": pairs, "r2": scores, "packed": [t.packed for t in trained],
        "groups": sorted({t.packed for t in trained}),
        "n_groups": round(sum(1 / t.packed for t in trained)),
        "final_loss": [float(t.history["loss"][-1]) for t in trained],
        "seconds": {"total": t_done - spawned, "interpreter": t_top - spawned,
                    "imports": t_imports - t_top, "backend_init": t_backend - t_imports,
                    "load_build": t_built - t_backend, "train": t_done - t_built},
        "devices": devices, "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "jaxlib": __import__("jaxlib").__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
    }
    Path(args.result).write_text(json.dumps(result, indent=1))


def spawn(pairs: list[tuple[int, int]], args, folder: Path, name: str) -> dict:
    """Run a worker process on ``pairs``; its result, or the error it died of."""
    result = folder / f"{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", str(folder),
               "--pairs", ",".join(f"{c}:{f}" for c, f in pairs), "--epochs", str(args.epochs),
               "--result", str(result)]
    spawned = time.time()
    command += ["--spawned", repr(spawned)]
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.time() - spawned
    if done.returncode or not result.exists():
        return {"pairs": pairs, "error": f"exit {done.returncode}: {done.stderr[-3000:]}",
                "process_wall": wall}
    out = json.loads(result.read_text())
    out["process_wall"] = wall  # to the process' exit (teardown included)
    return out


def stats(values: list[float]) -> dict:
    """Mean, standard deviation (over folds) and count."""
    import numpy as np

    v = np.asarray(values, dtype="float64")
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def summarize(report: dict) -> None:
    """Fill in sums, extrapolations, ratios and R² per configuration."""
    packed = report.get("packed") or {}
    tasks = [t for t in report.get("unpacked", []) if "error" not in t]
    if not tasks:
        return
    by_config: dict[int, list[dict]] = {}
    for t in tasks:
        by_config.setdefault(t["pairs"][0][0], []).append(t)
    complete = len(tasks) == len(CONFIGS) * FOLDS
    est_total = est_train = 0.0
    for c in range(len(CONFIGS)):
        runs = by_config.get(c, [])
        if not runs:  # a configuration with no task: the mean of all tasks stands in
            runs = tasks
        est_total += FOLDS * sum(t["seconds"]["total"] for t in runs) / len(runs)
        est_train += FOLDS * sum(t["seconds"]["train"] for t in runs) / len(runs)
    unpacked = {
        "tasks_run": len(tasks),
        "folds_run_per_config": {label(CONFIGS[c]): sorted(t["pairs"][0][1] for t in runs)
                                 for c, runs in sorted(by_config.items())},
        "sum_seconds_run": sum(t["seconds"]["total"] for t in tasks),
        "sum_train_seconds_run": sum(t["seconds"]["train"] for t in tasks),
        "sum_process_wall_run": sum(t["process_wall"] for t in tasks),
        "extrapolated": not complete,
        "sum_seconds_30": est_total,
        "sum_train_seconds_30": est_train,
        "per_task_seconds": stats([t["seconds"]["total"] for t in tasks]),
        "per_task_train_seconds": stats([t["seconds"]["train"] for t in tasks]),
        "per_task_breakdown_mean": {
            k: sum(t["seconds"][k] for t in tasks) / len(tasks) for k in tasks[0]["seconds"]},
    }
    report["unpacked_summary"] = unpacked
    if "seconds" in packed:
        report["ratio_wall"] = est_total / packed["seconds"]["total"]
        report["ratio_train"] = est_train / packed["seconds"]["train"]
    # R² per configuration; and packed against alone on the very same (configuration, fold).
    per_config = {}
    diffs = []
    packed_r2 = {}
    if "r2" in packed:
        packed_r2 = {tuple(p): r for p, r in zip(packed["pairs"], packed["r2"], strict=True)}
    for c, config in enumerate(CONFIGS):
        row = {}
        ours = [r for (cc, _), r in packed_r2.items() if cc == c]
        if ours:
            row["packed"] = stats(ours)
        alone = [t["r2"][0] for t in by_config.get(c, [])]
        if alone:
            row["unpacked"] = stats(alone)
            row["unpacked_folds"] = [t["pairs"][0][1] for t in by_config[c]]
        for t in by_config.get(c, []):
            key = tuple(t["pairs"][0])
            if key in packed_r2:
                diffs.append(abs(packed_r2[key] - t["r2"][0]))
        per_config[label(config)] = row
    report["r2"] = per_config
    if diffs:
        report["max_abs_r2_diff_same_config_fold"] = max(diffs)


def table(report: dict) -> str:
    """A short text table of the results."""
    lines = []
    p = report.get("packed", {})
    u = report.get("unpacked_summary", {})
    if "seconds" in p:
        s = p["seconds"]
        lines.append(f"packed (1 process, 30 models): {s['total']:.1f} s from process start "
                     f"(train {s['train']:.1f} s, imports {s['imports']:.1f} s, backend "
                     f"{s['backend_init']:.1f} s, build {s['load_build']:.1f} s)")
    if u:
        how = (f"extrapolated ×{FOLDS} from {u['tasks_run']} tasks" if u["extrapolated"]
               else "all 30 tasks run")
        lines.append(f"unpacked (1 process per config×fold): {u['sum_seconds_30']:.1f} s summed "
                     f"({how}); train {u['sum_train_seconds_30']:.1f} s; per task "
                     f"{u['per_task_seconds']['mean']:.1f} ± {u['per_task_seconds']['std']:.1f} s")
    if "ratio_wall" in report:
        lines.append(f"ratio unpacked/packed: wall {report['ratio_wall']:.1f}×, train-only "
                     f"{report['ratio_train']:.1f}×")
    if "r2" in report:
        lines.append(f"{'config':<22} {'packed R² (5 folds)':<22} unpacked R² (folds run)")
        for name, row in report["r2"].items():
            pk = row.get("packed")
            un = row.get("unpacked")
            left = f"{pk['mean']:.4f} ± {pk['std']:.4f}" if pk else "—"
            right = f"{un['mean']:.4f} ± {un['std']:.4f} {row['unpacked_folds']}" if un else "—"
            lines.append(f"{name:<22} {left:<22} {right}")
    if "max_abs_r2_diff_same_config_fold" in report:
        lines.append("max |R² packed − R² alone| on the same (config, fold): "
                     f"{report['max_abs_r2_diff_same_config_fold']:.2e}")
    return "\n".join(lines)


def main() -> None:
    """Prepare the folds, run the packed process, then the unpacked tasks; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", default=str(DEFAULT_CSV))
    parser.add_argument("--rows", type=int, default=0, help="a seeded sample (0: every row)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu.json"))
    parser.add_argument("--work", default="/tmp/foldwise-gpu-bench")
    parser.add_argument("--unpacked-budget", type=float, default=150.0,
                        help="seconds for unpacked tasks: one fold of every configuration "
                             "always runs, further folds while the budget allows")
    parser.add_argument("--unpacked-cap", type=float, default=280.0,
                        help="seconds after which no further unpacked task starts at all")
    parser.add_argument("--unpacked-folds", default=",".join(map(str, range(FOLDS))),
                        help="the folds whose unpacked tasks run, in order (e.g. 1,2,3,4)")
    parser.add_argument("--packed-after", action="store_true",
                        help="run the packed process after the unpacked tasks")
    parser.add_argument("--require-gpu", action="store_true")
    # worker-only arguments
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--spawned", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(args.work)
    report: dict = {"grid": [label(c) for c in CONFIGS], "folds": FOLDS, "epochs": args.epochs,
                    "batch_size": 32, "engine": "core.training.vmapped.fit_members (both modes)",
                    "host": {"cpus": os.cpu_count(), "python": platform.python_version()}}

    def save() -> None:
        summarize(report)
        out.write_text(json.dumps(report, indent=1))

    report["data"] = prepare(Path(args.csv), args.rows or None, folder)
    print(f"fold data: {report['data']['rows']} rows, {report['data']['folds'][0]} per fold, "
          f"{report['data']['seconds']:.1f} s", flush=True)

    # Warm-up (not counted): file caches, the driver, the first CUDA context on the machine.
    started = time.time()
    warm = subprocess.run([sys.executable, "-c", "import jax, keras, sklearn; "
                           "import jax.numpy as jnp; print(jax.devices(), "
                           "float(jnp.ones(4).sum()))"], capture_output=True, text=True)
    print(f"warm-up {time.time() - started:.1f} s: {warm.stdout.strip()} "
          f"{warm.stderr.strip()[-500:] if warm.returncode else ''}", flush=True)

    def run_packed() -> None:
        everything = [(c, f) for c in range(len(CONFIGS)) for f in range(FOLDS)]
        report["packed"] = spawn(everything, args, folder, "packed")
        if "error" in report["packed"]:
            print("packed FAILED:", report["packed"]["error"], flush=True)
        else:
            p = report["packed"]
            report["device"] = {"devices": p["devices"], "backend": p["backend"],
                                "kind": p["device_kind"]}
            report["versions"] = p["versions"]
            print(f"packed: {p['seconds']['total']:.1f} s (train {p['seconds']['train']:.1f} s) on "
                  f"{p['devices']} ({p['device_kind']}), {p['n_groups']} groups of {p['groups']}; "
                  f"{p['versions']}", flush=True)
            if args.require_gpu and p["backend"] != "gpu":
                save()
                raise SystemExit(f"JAX ran on {p['backend']}, not a GPU")
        save()

    if not args.packed_after:
        run_packed()
    report["unpacked"] = []
    begun = time.time()
    for fold in [int(v) for v in args.unpacked_folds.split(",")]:
        round_started = time.time()
        for c in range(len(CONFIGS)):
            if time.time() - begun > args.unpacked_cap:
                print(f"unpacked cap reached: fold {fold} from config {c} on not run",
                      flush=True)
                break
            task = spawn([(c, fold)], args, folder, f"task-{c}-{fold}")
            report["unpacked"].append(task)
            if "error" in task:
                print(f"task {label(CONFIGS[c])} fold {fold} FAILED: {task['error']}",
                      flush=True)
            else:
                print(f"task {label(CONFIGS[c]):<18} fold {fold}: {task['seconds']['total']:.1f} s "
                      f"(train {task['seconds']['train']:.1f} s) R² {task['r2'][0]:.4f}",
                      flush=True)
            save()
        spent, last = time.time() - begun, time.time() - round_started
        if spent + last > args.unpacked_budget or spent > args.unpacked_cap:
            break
    if args.packed_after:
        run_packed()
    save()
    print(table(report), flush=True)
    print(f"written {out}", flush=True)


if __name__ == "__main__":
    main()
