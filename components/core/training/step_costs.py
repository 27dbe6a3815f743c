"""What one training step of a packed program costs.

Measured on the reference machine: the multiply-accumulates of a stack of layers and of a
pack's step, used to order packs and to cut them.
"""

from __future__ import annotations

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
    """The widths a pack of these MLP specs trains at: each layer's widest (``vmapped``)."""
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

