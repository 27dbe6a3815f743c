"""Train K independent Keras MLPs at once, as one stacked model ("packing").

Each sub-model keeps everything a separate run has: its own rows and per-epoch shuffling, its
own initial weights (built by :func:`~foldwise.components.core.model.build_model` from its own
seed, exactly as a separate run builds them), its own hyperparameters, optimizer state, step
count and early stopping. Only the storage is shared: every layer's weights are stacked along
a leading axis of length K, so one batched matrix product computes a layer of all K
sub-models, and one compiled graph call trains all of them for a whole epoch. Sub-models of
different widths (a fold whose one-hot encoding has fewer columns, a configuration with fewer
units in a layer) are padded to the widest: padded inputs are zero, padded units are masked
to zero after their activation, and their weights start at zero, so their gradients, optimizer
moments and updates are exactly zero and nothing of the padding ever reaches a real unit.
Because the sub-models never touch each other's weights, gradients or optimizer slots, the
result is the K models that K separate runs would produce, to float rounding.

The optimizer updates are Keras' own formulas (Adam, AdamW, SGD, RMSprop, as in
``keras/src/optimizers``), losses are Keras' own loss functions, applied per sample and
averaged over each sub-model's own rows. A sub-model with no rows in a step (its training set
is one batch shorter than its pack mates') skips that step: no moment decay, no step count.

A sub-model that diverges cannot disturb its pack mates. Every reduction (a sub-model's
mean loss over its rows, its L2 penalty, its epoch loss) runs along its own slice; the losses
are summed only to take gradients, and the gradient of a sum hands each slice its own part;
masks, padding and updates multiply within a slice, so its NaN and inf values (NaN × 0 is
NaN) stay in it. Its history ends with the epoch whose loss was not finite, as Keras'
``TerminateOnNaN`` ends a fit, while its mates train on; the caller records it as failed.

Epoch ``e`` of a sub-model visits its rows in the order ``default_rng([seed, e])`` draws, and
dropout masks are stateless functions of (seed, epoch, step, layer): a run's data order and
masks depend on nothing but those numbers, so an interrupted run resumed from its last
epoch's checkpoint ends with the same weights as an uninterrupted one. For the same reason a
sub-model can be continued from its own state (:meth:`PackResult.states`, ``initial``), in a
pack of other mates: successive halving by epochs trains its survivors on from where the last
rung left them, to the weights a run of the whole budget ends with.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from foldwise.components.core.model import build_model, output_kind

PACKABLE_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
CHECKPOINT_FILE = "checkpoint.npz"


def pack_key(spec: dict) -> tuple | None:
    """What sub-models sharing one pack must agree on; ``None`` when a spec cannot be packed.

    Depth, activation, loss, optimizer, epochs and batch size shape the stacked graph; layer
    widths (padded), learning rate, moments, L2, dropout, early stopping and seeds may differ
    per sub-model.
    Custom losses (``module:function``, whose reduction is the user's) and mixed precision
    train through Keras' ``fit`` instead.
    """
    if (spec.get("estimator", "keras") != "keras" or spec["mixed_precision"]
            or ":" in spec["loss"] or spec["optimizer"] not in PACKABLE_OPTIMIZERS):
        return None
    return (len(spec["hidden_units"]), spec["activation"], spec["loss"], spec["optimizer"],
            spec["epochs"], spec["batch_size"])


@dataclass
class Stream:
    """One sub-model's data: rows to fit on (targets already in loss form) and to stop on."""

    x_fit: np.ndarray
    y_fit: np.ndarray  # (n, outputs) float32
    x_stop: np.ndarray | None
    y_stop: np.ndarray | None
    seed: int
    spec: dict
    x_test: np.ndarray | None = None  # the fold's validation rows: their loss every epoch
    y_test: np.ndarray | None = None


@dataclass
class PackResult:
    """What training the pack produced, per sub-model."""

    models: list
    histories: list[dict]
    fit_time: float
    resumed_from_epoch: int = 0
    epochs: list[int] = field(default_factory=list)
    outputs: list = field(default_factory=list)  # each model's raw output on its ``predict`` rows
    predict_time: float = 0.0
    states: list = field(default_factory=list)  # with keep_state: each one's state to go on from


def epoch_order(seed: int, epoch: int, rows: int) -> np.ndarray:
    """The order in which a sub-model visits its ``rows`` training rows in ``epoch``."""
    return np.random.default_rng([seed, epoch]).permutation(rows)


def fit_packed(streams: list[Stream], *, task: str, n_classes: int | None,
               checkpoint_dir: str | None = None,
               predict: list[np.ndarray] | None = None,
               initial: list[dict] | None = None, keep_state: bool = False) -> PackResult:
    """Train one fresh model per stream, all at once; see the module docstring.

    Args:
        streams: The sub-models' data, seeds and normalized specs (one :func:`pack_key`).
        task: ``classification`` or ``regression``.
        n_classes: Number of classes (classification).
        checkpoint_dir: Where to keep the state of the last finished epoch. A run that finds
            a checkpoint of the same streams there resumes from it; one of other streams is
            ignored and overwritten.
        predict: Rows per stream to compute the trained models' raw outputs on, all in one
            graph call (what each Keras model's ``predict`` gives, to float rounding).
        initial: Each stream's state to continue from (:func:`member_state`), all after the
            same number of epochs; training runs on from there to the spec's ``epochs``.
        keep_state: Return each sub-model's state at the end (``states``), to continue from.

    Raises:
        ValueError: Streams that cannot share a pack, or ``initial`` states that are not
            these streams' or not after one same epoch.

    Returns:
        Keras models holding the trained weights (the best epoch's with early stopping), and
        per-epoch ``loss`` (and ``val_loss``) histories as Keras' ``fit`` reports them.
    """
    keys = {pack_key(s.spec) for s in streams}
    if len(keys) != 1 or None in keys:
        raise ValueError(f"streams cannot share a pack: {sorted(map(str, keys))}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from foldwise.components.core.estimators import seed_everything

    started = time.perf_counter()  # fit time: building the models, restoring, training
    models = []
    for stream in streams:
        seed_everything(stream.seed)
        models.append(build_model(stream.spec, stream.x_fit.shape[1], task, n_classes))
    trainer = _StackedTrainer(models, streams, output_kind(task, n_classes), keras, tf)
    trainer.task, trainer.n_classes = task, n_classes
    fingerprint = _fingerprint(streams, task, n_classes)
    path = None if checkpoint_dir is None else os.path.join(checkpoint_dir, CHECKPOINT_FILE)
    state = _EarlyStopping(streams)
    continued = trainer.continue_from(initial, state) if initial else 0
    restored = trainer.restore(path, fingerprint, state) if path else 0
    start = restored or continued

    spec = streams[0].spec
    for epoch in range(start, spec["epochs"]):
        trainer.run_epoch(epoch)
        state.update(epoch, trainer)
        if path:
            trainer.save(path, fingerprint, state, epoch + 1)
        if state.all_stopped():
            break
    fit_time = time.perf_counter() - started
    states = ([trainer.member_state(k, state) for k in range(len(streams))] if keep_state
              else [])
    finals = [state.final_weights(k, trainer) for k in range(len(streams))]
    for model, weights in zip(models, finals, strict=True):
        model.set_weights(weights)
        model.optimizer.build(model.trainable_variables)  # saved as a fresh optimizer
    started = time.perf_counter()
    outputs = [] if predict is None else trainer.outputs(finals, predict)
    return PackResult(models, state.histories, fit_time, restored,
                      [len(h["loss"]) for h in state.histories], outputs,
                      time.perf_counter() - started, states)


def member_fingerprint(stream: Stream, task: str, n_classes: int | None) -> str:
    """What a sub-model's state must have been made from to be continued (not ``epochs``)."""
    return _fingerprint([stream], task, n_classes)


def save_state(state: dict, path: str) -> None:
    """Write a sub-model's state (:meth:`PackResult.states`) as ``.npz``: temp, then rename."""
    arrays = {"fingerprint": np.array(state["fingerprint"]), "epochs": np.array(state["epochs"]),
              "count": np.array(state["count"]), "history": np.array(json.dumps(
                  state["history"])), "optimizer": np.array(state["optimizer"])}
    arrays.update({f"var_{i}": w for i, w in enumerate(state["variables"])})
    for name, slot in state["slots"].items():
        arrays.update({f"slot_{name}_{i}": w for i, w in enumerate(slot)})
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = path + ".partial.npz"
    np.savez(partial, **arrays)
    os.replace(partial, path)


def load_state(path) -> dict:
    """A sub-model's state as :func:`save_state` wrote it (a path or a binary file object)."""
    with np.load(path) as arrays:
        def numbered(prefix: str) -> list[np.ndarray]:
            names = sorted((n for n in arrays.files if n.startswith(prefix)),
                           key=lambda n: int(n.rsplit("_", 1)[1]))
            return [arrays[n] for n in names]

        slots = {n.split("_")[1] for n in arrays.files if n.startswith("slot_")}
        return {"fingerprint": str(arrays["fingerprint"]), "epochs": int(arrays["epochs"]),
                "count": float(arrays["count"]), "history": json.loads(str(arrays["history"])),
                "optimizer": str(arrays["optimizer"]), "variables": numbered("var_"),
                "slots": {name: numbered(f"slot_{name}_") for name in sorted(slots)}}


def _fingerprint(streams: list[Stream], task: str, n_classes: int | None) -> str:
    """What a checkpoint must have been made from to be resumed.

    Everything but ``epochs``: the state after epoch e does not depend on how many follow.
    """
    digest = hashlib.sha256(json.dumps([task, n_classes]).encode())
    for s in streams:
        spec = {k: v for k, v in s.spec.items() if k != "epochs"}
        digest.update(json.dumps([s.seed, spec], sort_keys=True).encode())
        for array in (s.x_fit, s.y_fit, s.x_stop, s.y_stop):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class _EarlyStopping:
    """Keras' ``EarlyStopping(monitor="val_loss", restore_best_weights=True)``, per sub-model."""

    def __init__(self, streams: list[Stream]):
        self.enabled = [s.spec["early_stopping"] for s in streams]
        self.patience = [s.spec["patience"] for s in streams]
        k = len(streams)
        self.best = [math.inf] * k
        self.wait = [0] * k
        self.best_weights: list[list | None] = [None] * k
        self.stopped = [False] * k
        tested = [getattr(s, "x_test", None) is not None for s in streams]
        self.histories: list[dict] = [
            {"loss": [], **({"val_loss": []} if e else {}), **({"test_loss": []} if t else {})}
            for e, t in zip(self.enabled, tested, strict=True)]

    def update(self, epoch: int, trainer: _StackedTrainer) -> None:
        losses, val_losses, *rest = trainer.last_losses
        test_losses = rest[0] if rest else None
        for k in range(len(self.enabled)):
            if self.stopped[k]:
                continue
            self.histories[k]["loss"].append(float(losses[k]))
            if self.enabled[k]:
                self.histories[k]["val_loss"].append(float(val_losses[k]))
            if "test_loss" in self.histories[k] and test_losses is not None:
                self.histories[k]["test_loss"].append(float(test_losses[k]))
            if not math.isfinite(float(losses[k])):
                # Diverged, as Keras' TerminateOnNaN stops a fit: this epoch is its last.
                self.stopped[k] = True
                continue
            if not self.enabled[k]:
                continue
            current = float(val_losses[k])
            if self.best_weights[k] is None:
                self.best_weights[k] = trainer.weights_of(k)
            self.wait[k] += 1
            if current < self.best[k]:
                self.best[k], self.wait[k] = current, 0
                self.best_weights[k] = trainer.weights_of(k)
                continue
            if self.wait[k] >= self.patience[k] and epoch > 0:
                self.stopped[k] = True

    def all_stopped(self) -> bool:
        return all(self.stopped)

    def final_weights(self, k: int, trainer: _StackedTrainer) -> list:
        if self.best_weights[k] is not None:
            return self.best_weights[k]
        return trainer.weights_of(k)

    def to_arrays(self) -> dict:
        k = len(self.enabled)
        arrays = {"es_best": np.array(self.best), "es_wait": np.array(self.wait),
                  "es_stopped": np.array(self.stopped),
                  "es_history": np.array(json.dumps(self.histories))}
        for i in range(k):
            for j, w in enumerate(self.best_weights[i] or []):
                arrays[f"es_best_weights_{i}_{j}"] = w
        return arrays

    def from_arrays(self, arrays) -> None:
        self.best = [float(v) for v in arrays["es_best"]]
        self.wait = [int(v) for v in arrays["es_wait"]]
        self.stopped = [bool(v) for v in arrays["es_stopped"]]
        self.histories = json.loads(str(arrays["es_history"]))
        for i in range(len(self.enabled)):
            names = sorted((n for n in arrays.files if n.startswith(f"es_best_weights_{i}_")),
                           key=lambda n: int(n.rsplit("_", 1)[1]))
            self.best_weights[i] = [arrays[n] for n in names] or None


class _StackedTrainer:
    """K sub-models' weights stacked on a leading axis; one graph call trains an epoch."""

    def __init__(self, models, streams: list[Stream], kind: str, keras, tf):
        self.tf, self.streams, self.kind = tf, streams, kind
        spec = streams[0].spec
        self.batch = spec["batch_size"]
        self.optimizer = spec["optimizer"]
        per_model = [m.get_weights() for m in models]
        self.widths = [s.x_fit.shape[1] for s in streams]
        self.width = max(self.widths)
        # Each sub-model's own shapes, then everything zero-padded to the widest.
        self.own_shapes = [[w.shape for w in weights] for weights in per_model]
        self.shapes = [tuple(max(sizes) for sizes in zip(*(own[i] for own in self.own_shapes),
                                                         strict=True))
                       for i in range(len(per_model[0]))]
        per_model = [[np.pad(w, [(0, full - size) for full, size in
                                 zip(shape, w.shape, strict=True)])
                      for w, shape in zip(weights, self.shapes, strict=True)]
                     for weights in per_model]
        self.variables = [
            tf.Variable(np.stack([w[i].reshape(1, -1) if w[i].ndim == 1 else w[i]
                                  for w in per_model]).astype("float32"))
            for i in range(len(self.shapes))
        ]
        self.hidden = len(spec["hidden_units"])
        self.units = [list(s.spec["hidden_units"]) for s in streams]
        self.unit_masks = [tf.constant(np.stack([
            (np.arange(self.shapes[2 * layer][1]) < units[layer]).astype("float32")[None, :]
            for units in self.units])) for layer in range(self.hidden)]
        self.masked = [any(u[layer] < self.shapes[2 * layer][1] for u in self.units)
                       for layer in range(self.hidden)]
        self.activation = keras.activations.get(spec["activation"])
        out_activation = {"regression": "linear", "binary": "sigmoid",
                          "multiclass": "softmax"}[kind]
        self.out_activation = keras.activations.get(out_activation)
        self.loss_fn = keras.losses.get(spec["loss"])

        def column(name, default=0.0):
            values = [s.spec.get(name, default) for s in streams]
            return tf.constant(np.array(values, dtype="float32").reshape(-1, 1, 1))

        self.hyper = {name: column(name) for name in (
            "learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay", "momentum", "rho")}
        self.one_minus = {name: tf.constant(np.array(
            [1.0 - s.spec.get(name, 0.0) for s in streams], dtype="float32").reshape(-1, 1, 1))
            for name in ("beta_1", "beta_2", "rho")}
        self.l2 = tf.constant(np.array([s.spec["l2"] for s in streams], dtype="float32"))
        self.dropout = [float(s.spec["dropout"]) for s in streams]
        self.seeds = [int(s.seed) for s in streams]
        slot_names = {"adam": ("m", "v"), "adamw": ("m", "v"), "sgd": ("m",),
                      "rmsprop": ("velocity", "momentum")}[self.optimizer]
        self.slots = {name: [tf.Variable(tf.zeros_like(v)) for v in self.variables]
                      for name in slot_names}
        self.counts = tf.Variable(tf.zeros([len(streams)], dtype="float32"))
        self.last_losses = (None, None)
        # XLA fuses each step's small ops: about twice the steps per second on CPU (measured).
        # The graphs hold no Python control flow on tensors (the epoch's loop is an explicit
        # while loop): without AutoGraph's rewriting of their source, tracing them takes a
        # fraction of a second instead of about 1.5 s per process.
        self._epoch_fn = tf.function(self._epoch, reduce_retracing=True, jit_compile=True,
                                     autograph=False)
        self._stop_fn = tf.function(self._stop_loss, reduce_retracing=True, autograph=False)
        self._stop_data = self._padded_rows("stop")
        self._test_data = self._padded_rows("test")

    # ----- graph pieces -------------------------------------------------------------------
    def _forward(self, x, training, epoch=None, step=None):
        tf = self.tf
        h = x
        for layer in range(self.hidden):
            kernel, bias = self.variables[2 * layer], self.variables[2 * layer + 1]
            h = self.activation(tf.matmul(h, kernel) + bias)
            if self.masked[layer]:  # padded units: zero, whatever the activation gives at 0
                h = h * self.unit_masks[layer]
            if training and any(r > 0 for r in self.dropout):
                h = self._dropout(h, epoch, step, layer)
        kernel, bias = self.variables[-2], self.variables[-1]
        return self.out_activation(tf.matmul(h, kernel) + bias)

    def _dropout(self, h, epoch, step, layer):
        tf = self.tf
        rows, width = tf.shape(h)[1], h.shape[2]
        masks = []
        for k, rate in enumerate(self.dropout):
            if rate <= 0:
                masks.append(tf.ones([rows, width], h.dtype))
                continue
            seed = tf.stack([tf.constant(self.seeds[k], tf.int64),
                             tf.cast(epoch, tf.int64) * (1 << 24)
                             + tf.cast(step, tf.int64) * 64 + layer])
            # Drawn at the sub-model's own width, so that it gets a separate run's masks.
            units = self.units[k][layer]
            keep = tf.random.stateless_uniform([rows, units], seed=seed) >= rate
            mask = tf.cast(keep, h.dtype) / (1.0 - rate)
            masks.append(tf.pad(mask, [[0, 0], [0, width - units]]))
        return h * tf.stack(masks)

    def _losses(self, x, y, mask, training, epoch=None, step=None):
        """Each sub-model's mean loss over its own rows plus its L2 penalty: shape (K,)."""
        tf = self.tf
        per_row = self.loss_fn(y, self._forward(x, training, epoch, step))  # (K, rows)
        rows = tf.reduce_sum(mask, axis=1)
        mean = tf.reduce_sum(per_row * mask, axis=1) / tf.maximum(rows, 1.0)
        penalty = [self.l2 * tf.reduce_sum(tf.square(self.variables[2 * layer]), axis=[1, 2])
                   for layer in range(self.hidden)]
        return mean + tf.add_n(penalty) if penalty else mean, rows

    def _apply(self, grads, active):
        """Keras' update of the chosen optimizer, on the sub-models with rows this step."""
        tf = self.tf
        h, one_minus = self.hyper, self.one_minus
        on = tf.reshape(active, [-1, 1, 1])
        self.counts.assign_add(active)
        step = tf.reshape(self.counts, [-1, 1, 1])
        lr = h["learning_rate"]
        for i, (grad, var) in enumerate(zip(grads, self.variables, strict=True)):
            if self.optimizer in ("adam", "adamw"):
                if self.optimizer == "adamw":
                    var.assign(tf.where(on > 0, var - var * h["weight_decay"] * lr, var))
                m, v = self.slots["m"][i], self.slots["v"][i]
                alpha = lr * tf.sqrt(1 - tf.pow(h["beta_2"], step)) / (
                    1 - tf.pow(h["beta_1"], step))
                new_m = m + (grad - m) * one_minus["beta_1"]
                new_v = v + (tf.square(grad) - v) * one_minus["beta_2"]
                update = (new_m * alpha) / (tf.sqrt(new_v) + h["epsilon"])
                m.assign(tf.where(on > 0, new_m, m))
                v.assign(tf.where(on > 0, new_v, v))
                var.assign(tf.where(on > 0, var - update, var))
            elif self.optimizer == "sgd":
                m = self.slots["m"][i]
                new_m = m * h["momentum"] - grad * lr
                m.assign(tf.where(on > 0, new_m, m))
                var.assign(tf.where(on > 0, var + new_m, var))
            else:  # rmsprop
                velocity, momentum = self.slots["velocity"][i], self.slots["momentum"][i]
                new_velocity = h["rho"] * velocity + one_minus["rho"] * tf.square(grad)
                increment = (lr * grad) / tf.sqrt(new_velocity + h["epsilon"])
                new_momentum = h["momentum"] * momentum + increment
                velocity.assign(tf.where(on > 0, new_velocity, velocity))
                momentum.assign(tf.where(on > 0, new_momentum, momentum))
                var.assign(tf.where(on > 0, var - new_momentum, var))

    def _epoch(self, x, y, mask, epoch):
        """Train every sub-model through one epoch; return the epoch's mean loss per model."""
        tf = self.tf
        steps = tf.shape(x)[1]

        def one_step(step, total, seen):
            xs, ys, ms = x[:, step], y[:, step], mask[:, step]
            with tf.GradientTape() as tape:
                losses, rows = self._losses(xs, ys, ms, True, epoch, step)
                objective = tf.reduce_sum(losses)
            grads = tape.gradient(objective, self.variables)
            self._apply(grads, tf.cast(rows > 0, tf.float32))
            return step + 1, total + losses * rows, seen + rows

        zeros = tf.zeros([len(self.streams)])
        _, total, seen = tf.while_loop(lambda step, total, seen: step < steps, one_step,
                                       (tf.constant(0), zeros, zeros))
        return total / tf.maximum(seen, 1.0)

    def _stop_loss(self, x, y, mask):
        return self._losses(x, y, mask, False)[0]

    # ----- host side ----------------------------------------------------------------------
    def _padded(self, parts: list[tuple[np.ndarray, np.ndarray]], rows: int):
        k, features = len(parts), self.width
        outputs = parts[0][1].shape[1]
        x = np.zeros((k, rows, features), "float32")
        y = np.zeros((k, rows, outputs), "float32")
        mask = np.zeros((k, rows), "float32")
        for i, (xi, yi) in enumerate(parts):
            x[i, :len(xi), :xi.shape[1]], y[i, :len(yi)], mask[i, :len(xi)] = xi, yi, 1.0
        return x, y, mask

    def _padded_rows(self, name: str):
        """Every stream's ``x_<name>``, ``y_<name>`` rows (``stop``, ``test``), padded.

        ``None`` when no stream has such rows.
        """
        rows = [(getattr(s, f"x_{name}"), getattr(s, f"y_{name}")) for s in self.streams]
        if all(x is None for x, _ in rows):
            return None
        outputs = self.streams[0].y_fit.shape[1]
        parts = [(x, y) if x is not None else
                 (np.zeros((0, self.width), "float32"), np.zeros((0, outputs), "float32"))
                 for x, y in rows]
        return self._padded(parts, max(len(p[0]) for p in parts))

    def run_epoch(self, epoch: int) -> None:
        steps = max(math.ceil(len(s.x_fit) / self.batch) for s in self.streams)
        parts = []
        for s in self.streams:
            order = epoch_order(s.seed, epoch, len(s.x_fit))
            parts.append((s.x_fit[order], s.y_fit[order]))
        x, y, mask = self._padded(parts, steps * self.batch)
        k = len(self.streams)
        x = x.reshape(k, steps, self.batch, -1)
        y = y.reshape(k, steps, self.batch, -1)
        mask = mask.reshape(k, steps, self.batch)
        losses = self._epoch_fn(x, y, mask, self.tf.constant(epoch, self.tf.int64)).numpy()
        val = test = None
        if self._stop_data is not None:
            val = self._stop_fn(*self._stop_data).numpy()
        if self._test_data is not None:  # the validation fold's loss, as Keras' evaluate
            test = self._stop_fn(*self._test_data).numpy()
        self.last_losses = (losses, val, test)

    def outputs(self, weights: list[list[np.ndarray]], rows: list[np.ndarray]) -> list:
        """Raw outputs of the models with ``weights`` on each one's ``rows``, in one call."""
        for i, variable in enumerate(self.variables):
            stacked = np.zeros(variable.shape, "float32")
            for k, own in enumerate(weights):
                w = own[i].reshape(1, -1) if own[i].ndim == 1 else own[i]
                stacked[(k, *tuple(slice(0, size) for size in w.shape))] = w
            variable.assign(stacked)
        parts = [(x.astype("float32"), np.zeros((len(x), 1), "float32")) for x in rows]
        x, _, _ = self._padded(parts, max(max(len(x) for x in rows), 1))
        raw = self.tf.function(lambda batch: self._forward(batch, False),
                               autograph=False)(x).numpy()
        return [raw[k, :len(own)] for k, own in enumerate(rows)]

    def _own(self, stacked: np.ndarray, k: int, i: int) -> np.ndarray:
        """Sub-model ``k``'s own part of variable ``i``'s stacked (padded) values."""
        return stacked[k].reshape(self.shapes[i])[tuple(slice(0, s) for s in
                                                        self.own_shapes[k][i])]

    def _embed(self, variable, k: int, i: int, own: np.ndarray) -> None:
        """Put sub-model ``k``'s own values of variable ``i`` into the stacked one (padding 0)."""
        if tuple(own.shape) != tuple(self.own_shapes[k][i]):
            raise ValueError(f"a state of shape {own.shape} for a weight of shape "
                             f"{self.own_shapes[k][i]}")
        full = np.zeros(self.shapes[i], "float32")
        full[tuple(slice(0, s) for s in own.shape)] = own
        stacked = variable.numpy()
        stacked[k] = full.reshape(stacked[k].shape)
        variable.assign(stacked)

    def member_state(self, k: int, stopping: _EarlyStopping) -> dict:
        """Sub-model ``k``'s state after the last epoch run: weights, optimizer, history."""
        return {"fingerprint": member_fingerprint(self.streams[k], self.task, self.n_classes),
                "epochs": len(stopping.histories[k]["loss"]),
                "count": float(self.counts.numpy()[k]), "history": stopping.histories[k],
                "optimizer": self.optimizer,
                "variables": [self._own(v.numpy(), k, i) for i, v in enumerate(self.variables)],
                "slots": {name: [self._own(v.numpy(), k, i) for i, v in enumerate(slot)]
                          for name, slot in self.slots.items()}}

    def continue_from(self, states: list[dict], stopping: _EarlyStopping) -> int:
        """Load each sub-model's own state; return the epoch they all continue from."""
        if len(states) != len(self.streams):
            raise ValueError(f"{len(states)} states for {len(self.streams)} sub-models")
        epochs = {int(s["epochs"]) for s in states}
        if len(epochs) != 1:
            raise ValueError(f"states after different epochs {sorted(epochs)} cannot continue "
                             "in one pack")
        counts = self.counts.numpy()
        for k, state in enumerate(states):
            expected = member_fingerprint(self.streams[k], self.task, self.n_classes)
            if state["fingerprint"] != expected or state["optimizer"] != self.optimizer:
                raise ValueError(f"sub-model {k}'s state was made from other data, seed or "
                                 "model options")
            for i, variable in enumerate(self.variables):
                self._embed(variable, k, i, state["variables"][i])
            for name, slot in self.slots.items():
                for i, variable in enumerate(slot):
                    self._embed(variable, k, i, state["slots"][name][i])
            counts[k] = state["count"]
            stopping.histories[k] = {key: list(values) for key, values in
                                     state["history"].items()}
        self.counts.assign(counts)
        return epochs.pop()

    def weights_of(self, k: int) -> list[np.ndarray]:
        return [v.numpy()[k].reshape(shape)[tuple(slice(0, size) for size in own)]
                for v, shape, own in zip(self.variables, self.shapes, self.own_shapes[k],
                                         strict=True)]

    def save(self, path: str, fingerprint: str, stopping: _EarlyStopping, epochs: int) -> None:
        """Write the state after ``epochs`` epochs: temp file, then an atomic rename."""
        arrays = {"fingerprint": np.array(fingerprint), "epochs": np.array(epochs),
                  "counts": self.counts.numpy(), **stopping.to_arrays()}
        for i, v in enumerate(self.variables):
            arrays[f"var_{i}"] = v.numpy()
        for name, slot in self.slots.items():
            for i, v in enumerate(slot):
                arrays[f"slot_{name}_{i}"] = v.numpy()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = path + ".partial.npz"
        np.savez(partial, **arrays)
        os.replace(partial, path)

    def restore(self, path: str, fingerprint: str, stopping: _EarlyStopping) -> int:
        """Load a checkpoint of these same streams; return the epoch to continue from."""
        if not os.path.exists(path):
            return 0
        try:
            with np.load(path) as arrays:
                if str(arrays["fingerprint"]) != fingerprint:
                    return 0
                for i, v in enumerate(self.variables):
                    v.assign(arrays[f"var_{i}"])
                for name, slot in self.slots.items():
                    for i, v in enumerate(slot):
                        v.assign(arrays[f"slot_{name}_{i}"])
                self.counts.assign(arrays["counts"])
                stopping.from_arrays(arrays)
                return int(arrays["epochs"])
        except (OSError, ValueError, KeyError):
            return 0  # an unreadable checkpoint: start over rather than fail
