"""What training and running steps cost: the model behind balanced packing and ``foldwise plan``.

A packed train task runs, per epoch, as many steps as its largest member has batches; one
step of the one engine (``core.vmapped``: Keras' train step under ``jax.vmap``, an epoch per
compiled call) costs a small fixed part plus a part proportional to the multiply-adds of
every member's batch, widths padded to the program's widest. Steps outside training cost a
process start each; a train step's start is Keras' and JAX's import and compiling its
programs. The figures in :data:`MEASURED` were measured on this project's 2-core reference
machine (``benchmarks/README.md``, *What a plan's estimate rests on*): the step costs from
the step log of the diamonds 10k grid, the packed step's two parts from packs of 15 models
of two 64-unit and two 128-unit layers and from lone models of 2 and 4 units. A plan is an
estimate from them and the grid's arithmetic, not a promise: a test holds it within 2× of a
real kfp.local run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from foldwise.components.core import options

MEASURED = {
    "machine": "2 cores (AMD EPYC), 24 GiB, no GPU",
    "measured": "2026-12-03",
    # seconds of one packed step (JAX, one compiled epoch): fixed, and per multiply-add of
    # one row
    "step_seconds": 2.0e-5,
    "mac_seconds": 1.37e-10,
    # a step process (start, imports, its artifacts), by step; "row_seconds" more per row
    "steps": {"preprocess": 1.5, "scale": 0.6, "one-hot-encode": 0.7, "plan-trials": 0.5,
              "aggregate": 0.9, "report": 1.4, "export": 0.1},
    "row_seconds": 7.2e-6,
    # a train step's start (Keras' and JAX's import, compiling its programs), and its
    # building, checking and writing of each model (diamonds 10k: tasks of 10 and 20 models
    # took 13 s beside each other, 6-7 s of it training)
    "train_start_seconds": 5.0,
    "model_save_seconds": 0.1,
    # the refit's start: the engine's child process beside TensorFlow's import, and the
    # SavedModel's export (diamonds 10k: 9.4 s, under a second of it training)
    "refit_start_seconds": 8.5,
    # the command before the first step (read, check and preprocess the table; the DAG)
    "command_seconds": 2.0,
}

# Nominal model-ready input width where the table is not known (the first layer's fan-in).
NOMINAL_FEATURES = 32


def layer_macs(hidden_units: list[int], n_features: int = NOMINAL_FEATURES,
               outputs: int = 1) -> int:
    """Multiply-adds of one row through an MLP of these hidden widths (forward pass)."""
    widths = [int(n_features), *[int(w) for w in hidden_units], int(outputs)]
    return sum(a * b for a, b in zip(widths, widths[1:], strict=False))


def step_macs(members: int, batch: int, widths: list[int],
              n_features: int = NOMINAL_FEATURES) -> int:
    """The multiply-adds of one stacked step: every member's batch through these widths."""
    return members * batch * layer_macs(widths, n_features)


def padded_widths(specs: list[dict]) -> list[int]:
    """The widths a pack of these MLP specs trains at: each layer's widest (``core.vmapped``)."""
    depth = max(len(s.get("hidden_units", [])) for s in specs)
    return [max(int(s["hidden_units"][i]) for s in specs if i < len(s["hidden_units"]))
            for i in range(depth)]


def pack_step_units(specs: list[dict], members_per_spec: int,
                    n_features: int = NOMINAL_FEATURES) -> float:
    """One stacked step of these configurations (``members_per_spec`` models each), in MACs.

    The fixed part is expressed in multiply-adds too (``step_seconds / mac_seconds``), so
    packs can be compared without knowing the machine.
    """
    fixed = MEASURED["step_seconds"] / MEASURED["mac_seconds"]
    if not specs or any("hidden_units" not in s for s in specs):
        return fixed * max(1, len(specs))  # not foldwise's MLP: one unit per configuration
    batch = max(int(s.get("batch_size", 32)) for s in specs)
    return fixed + step_macs(len(specs) * members_per_spec, batch, padded_widths(specs),
                             n_features)


def best_cut(specs: list[dict], members_per_spec: int,
             n_features: int = NOMINAL_FEATURES) -> int:
    """Where to cut one pack's configurations into two tasks: the longer as short as can be.

    Returns ``c``: the tasks are ``specs[:c]`` and ``specs[c:]`` (``c`` in ``1..n-1``), each
    costing :func:`pack_step_units` per step; ``n`` itself for fewer than two specs. Cuts
    keep the configurations' order (the order that breaks ties between equal scores).
    Linear in the number of configurations: each side's widest widths are running maxima.
    """
    n = len(specs)
    if n < 2:
        return n
    fixed = MEASURED["step_seconds"] / MEASURED["mac_seconds"]

    def running(items):
        widths, batch, costs = None, 0, []
        for count, spec in enumerate(items, start=1):
            units = [int(w) for w in spec["hidden_units"]]
            widths = units if widths is None else [max(a, b) for a, b in zip(
                widths, units, strict=True)]
            batch = max(batch, int(spec.get("batch_size", 32)))
            costs.append(fixed + step_macs(count * members_per_spec, batch, widths,
                                           n_features))
        return costs

    heads, tails = running(specs), running(reversed(specs))[::-1]
    # heads[i]: specs[:i + 1]; tails[i]: specs[i:]
    return min(range(1, n), key=lambda cut: (max(heads[cut - 1], tails[cut]), cut))


def train_seconds(specs: list[dict], members_per_spec: int, rows: int,
                  n_features: int = NOMINAL_FEATURES) -> float:
    """Estimated seconds to train one pack: epochs × batches × one step (on the reference)."""
    if not specs:
        return 0.0
    epochs = max(int(s.get("epochs", options.option("epochs").default)) for s in specs)
    batch = max(int(s.get("batch_size", options.option("batch_size").default)) for s in specs)
    steps = epochs * math.ceil(max(rows, 1) / batch)
    return steps * pack_step_units(specs, members_per_spec, n_features) * MEASURED["mac_seconds"]


# How much faster one node of an accelerator trains than the reference machine (measured;
# benchmarks/README.md). Accelerators not listed are refused by name, with a way around it.
SPEEDUPS = {"cpu": 1.0}


def node_speedup(accelerator: str) -> float:
    """The measured training speed of a node with ``accelerator``, relative to the reference.

    Raises:
        FoldwiseError: An accelerator with no measurement (name the speed-up instead).
    """
    from foldwise.components.core.errors import FoldwiseError

    name = (accelerator or "cpu").split(":")[0]
    if name not in SPEEDUPS:
        raise FoldwiseError(f"no measured training speed for --accelerator {accelerator!r} "
                            f"(measured: {', '.join(SPEEDUPS)}); pass --node-speedup FACTOR, "
                            "how many times faster one such node trains than the reference "
                            "machine")
    return SPEEDUPS[name]


# A pod's start on a cluster: scheduling, pulling the image (cached after a node's first),
# starting the container. Not measured here (no cluster); an assumption the user can change.
POD_START_SECONDS = 30.0
LOCAL_SLOTS = 2  # kfp.local runs two loop iterations at a time
STEPS_BEFORE_TRAINING = ("preprocess", "scale", "one-hot-encode", "plan-trials")
STEPS_AFTER_TRAINING = ("aggregate", "report", "export")


@dataclass
class Estimate:
    """What one packing of a search would run, and how long it would take.

    Attributes:
        packing: ``none``, ``folds`` or ``configs``.
        tasks: Train tasks (pods on a cluster).
        models: Models trained by each task.
        task_seconds: Each train task's estimated seconds (start included).
        local_seconds: The whole run on kfp.local on the reference machine.
        cluster_seconds: The whole run on ``nodes`` nodes, each running one train pod at a
            time, every pod paying ``pod_start`` seconds.
        node_hours: Node time the run occupies on the cluster (every pod's, summed).
        programs: How many programs the one engine compiles for the configurations (the
            packs of ``core.vmapped.pack_key``), and what keeps them apart.
    """

    packing: str
    tasks: int
    models: list[int]
    task_seconds: list[float]
    local_seconds: float
    cluster_seconds: float
    node_hours: float
    programs: tuple[int, list[str]] = (0, [])


def task_train_seconds(configs: list[dict], n_folds: int, rows: int, n_features: int) -> float:
    """One train task's training: its configurations' packs, one after another."""
    from foldwise.components.core.vmapped import pack_key

    packs: dict = {}
    for config in configs:
        spec = config["params"]
        key = pack_key(spec)
        packs.setdefault(("pack", key) if key else ("alone", config["config_id"]),
                         []).append(spec)
    seconds = 0.0
    for (kind, _), specs in packs.items():
        if kind == "pack":
            seconds += train_seconds(specs, n_folds, rows, n_features)
        else:  # trained one by one (Keras' fit, a user's builder, scikit-learn's MLP)
            seconds += sum(train_seconds([spec], 1, rows, n_features) for spec in specs) * n_folds
    return seconds


def longest_first(seconds: list[float], slots: int) -> float:
    """When the last of these tasks ends, run longest first on ``slots`` parallel slots."""
    import heapq

    ends = [0.0] * max(1, min(slots, len(seconds)))  # when each slot is free again
    for value in sorted(seconds, reverse=True):
        heapq.heapreplace(ends, ends[0] + value)
    return max(ends)


def estimate(configs: list[dict], folds: int, rows: int, n_features: int, packing: str, *,
             refit: bool = True, nodes: int = 1, pod_start: float = POD_START_SECONDS,
             speedup: float = 1.0) -> Estimate:
    """Estimate a search's run under one packing, here and on a cluster.

    Args:
        configs: ``{"config_id", "params"}`` of every configuration (normalized specs).
        folds: K.
        rows: Rows of the prepared table.
        n_features: Model-ready columns (numeric plus one-hot indicators).
        packing: How train tasks are formed (:func:`~foldwise.components.core.grid.plan_trials`).
        refit: Whether the best configuration is refitted on all rows after the search.
        nodes: Nodes of the cluster, each running one train pod at a time.
        pod_start: Seconds a pod takes to start on the cluster.
        speedup: How much faster a cluster node trains than the reference machine.
    """
    from foldwise.components.core.grid import plan_trials

    planned = plan_trials(configs, list(range(folds)), packing)
    train_rows = max(1, rows * (folds - 1) // max(folds, 1))
    measured = MEASURED
    task_seconds = []
    for task in planned:
        models = len(task["configs"]) * len(task["folds"])
        task_seconds.append(measured["train_start_seconds"] + models
                            * measured["model_save_seconds"] + task_train_seconds(
                                task["configs"], len(task["folds"]), train_rows, n_features))
    steps = [measured["steps"][name] for name in (*STEPS_BEFORE_TRAINING,
                                                  *STEPS_AFTER_TRAINING)]
    data_seconds = measured["row_seconds"] * rows
    refit_seconds = 0.0
    if refit and configs:
        refit_seconds = measured["refit_start_seconds"] + max(
            task_train_seconds([c], 1, rows, n_features) for c in configs)
    fixed = sum(steps) + data_seconds + refit_seconds
    local = measured["command_seconds"] + fixed + longest_first(task_seconds, LOCAL_SLOTS)
    cluster_tasks = [pod_start + seconds / speedup for seconds in task_seconds]
    cluster_fixed = (sum(steps) + data_seconds + refit_seconds / speedup
                     + pod_start * (len(steps) + (1 if refit else 0)))
    cluster = cluster_fixed + longest_first(cluster_tasks, nodes)
    from foldwise.components.core.vmapped import pack_groups

    return Estimate(packing, len(planned),
                    [len(t["configs"]) * len(t["folds"]) for t in planned], task_seconds,
                    local, cluster, (cluster_fixed + sum(cluster_tasks)) / 3600,
                    pack_groups([c["params"] for c in configs]))
