"""Packing a search into train tasks.

Which (configuration, fold) trials share a train task and its vectorized program, and where a
sorted list of configurations is cut in two.
"""

from __future__ import annotations

from foldwise.components.core import options
from foldwise.components.core.data.table import suggest
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.estimators import role_of
from foldwise.components.core.training.step_costs import (
    MEASURED,
    NOMINAL_FEATURES,
    step_macs,
)
from foldwise.components.core.training.vmapped import pack_key


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


PACKINGS = options.choices("packing")
# kfp.local runs two loop iterations at a time: packed configurations are spread over two tasks.
CONFIG_PACK_TASKS = 2


def check_packing(packing: str) -> str:
    """A known packing: ``none``, ``folds`` or ``configs`` (see :func:`plan_trials`)."""
    if packing not in PACKINGS:
        raise FoldwiseError(f"unknown packing {packing!r}{suggest(str(packing), list(PACKINGS))} "
                            f"(known: {', '.join(PACKINGS)})")
    return packing


def plan_trials(configs: list[dict], fold_ids: list[int], packing: str = "none") -> list[dict]:
    """The train tasks: ``{"configs": [{"config_id", "params"}, ...], "folds": [...]}`` each.

    Every task trains each of its configurations on each of its folds; models that share one
    program (``training.vmapped``) are trained as one: the same models as separate runs, without
    a process start-up each.

    - ``none``: one task per (configuration, fold), the unit a cluster schedules as a pod;
    - ``folds``: one task per configuration, all its folds;
    - ``configs``: the configurations that share one program (``core.training.vmapped.pack_key``:
      same depth, activation, loss, optimizer settings, epochs and batch size; widths,
      learning rate, L2 and dropout rate are data) spread over :data:`CONFIG_PACK_TASKS`
      tasks, all folds each; so are the configurations of one user's builder (the engine
      finds which of them compute one function); any other configuration alone.
    """
    folds = [int(fold) for fold in fold_ids]
    entries = [{"config_id": c["config_id"], "params": c["params"],
                "searched": c.get("searched", {}),
                **({"tensorflow": c["tensorflow"]} if c.get("tensorflow") else {})}
               for c in configs]
    if check_packing(packing) == "none":
        return [_task([entry], [fold]) for entry in entries for fold in folds]
    if packing == "folds":
        return [_task([entry], folds) for entry in entries]
    groups: dict[tuple, list[dict]] = {}
    for entry in entries:
        key = pack_key(entry["params"])
        if key and entry.get("tensorflow"):  # trained through TensorFlow, apart
            key = ("tensorflow", key)
        groups.setdefault(("stack", key) if key else ("alone", entry["config_id"]),
                          []).append(entry)
    tasks = []
    for members in groups.values():
        tasks += [_task(members[start:end], folds)
                  for start, end in _balanced(members, len(folds))]
    return tasks


def _task(entries: list[dict], folds: list[int]) -> dict:
    """A train task; ``backend: tensorflow`` where a configuration needs TensorFlow."""
    task = {"configs": entries, "folds": folds}
    if any(entry.get("tensorflow") for entry in entries):
        task["backend"] = "tensorflow"
    return task


def _balanced(members: list[dict], n_folds: int) -> list[tuple[int, int]]:
    """Where to cut one pack's configurations into :data:`CONFIG_PACK_TASKS` tasks.

    Each task costs its steps (``core.search.costs``): a stacked step costs a fixed part plus every
    member's multiply-adds at the task's widest widths, so wide configurations are kept
    apart from narrow ones where that shortens the longest task. Cuts keep the
    configurations' order. Users' builders (their cost unknown) are cut into equal counts.
    """
    specs = [m["params"] for m in members]
    if (CONFIG_PACK_TASKS != 2 or len(members) < 2
            or any(role_of(s) != "mlp" for s in specs)):
        size = -(-len(members) // min(CONFIG_PACK_TASKS, len(members)))
        return [(start, min(start + size, len(members)))
                for start in range(0, len(members), size)]
    cut = best_cut(specs, n_folds)
    return [(0, cut), (cut, len(members))]

