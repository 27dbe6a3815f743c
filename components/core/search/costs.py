"""What training and running steps cost: the model behind balanced packing and ``foldwise plan``.

A packed train task runs, per epoch, as many steps as its largest member has batches; one
step of the one engine (``training.vmapped``: Keras' train step under ``jax.vmap``, an epoch per
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
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.search.packing import plan_trials
from foldwise.components.core.training.step_costs import MEASURED, NOMINAL_FEATURES, pack_step_units
from foldwise.components.core.training.vmapped import pack_groups, pack_key


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
            packs of ``core.training.vmapped.pack_key``), and what keeps them apart.
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
        packing: How train tasks are formed
            (:func:`~foldwise.components.core.search.packing.plan_trials`).
        refit: Whether the best configuration is refitted on all rows after the search.
        nodes: Nodes of the cluster, each running one train pod at a time.
        pod_start: Seconds a pod takes to start on the cluster.
        speedup: How much faster a cluster node trains than the reference machine.
    """
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

    return Estimate(packing, len(planned),
                    [len(t["configs"]) * len(t["folds"]) for t in planned], task_seconds,
                    local, cluster, (cluster_fixed + sum(cluster_tasks)) / 3600,
                    pack_groups([c["params"] for c in configs]))

