"""Train many models of one architecture at once: Keras' own train step under ``jax.vmap``.

Any Keras model can be packed this way, a user's own included (embeddings, batch
normalization, dropout, residual blocks, custom layers, custom losses).
With Keras' JAX backend a compiled model's training step is a pure function of its state
(trainable, non-trainable and optimizer variables) and a batch: Keras' own
``compute_loss_and_updates`` and ``optimizer.stateless_apply``, exactly what ``fit`` runs.
Members of one architecture (same layers, shapes, compile settings, epochs and batch size;
folds of one configuration, or configurations that differ only in their learning rate) have
their states stacked on a leading axis, and ``jax.vmap`` turns the step into one computation
over all of them; ``lax.scan`` runs a whole epoch in one compiled call. Each member keeps
everything a separate run has: its own rows, initial weights, data order, dropout seed state,
batch normalization statistics, optimizer moments and step count, learning rate and early
stopping; no reduction ever crosses members, so a diverging member cannot disturb its
mates, and the packed models equal lone runs to float rounding.

Members whose folds have different row counts are padded: a padded row carries sample
weight 0 (and real rows ``batch / real rows``, so the batch's mean loss is the mean over its
real rows, as an unpadded batch's), and a member with no rows left in a step skips it (no
update, no step count), as a lone run with one batch fewer would. Members of equal row
counts are not padded at all: their last, shorter batch is a step of its own length. A
model whose training output depends on its batch's other rows (batch normalization, or a
layer that is not Keras' own) packs only with members of as many rows, so it never sees
padding.
Compiled metrics are not tracked per epoch (the history holds ``loss`` and ``val_loss``):
the fold's scores are computed on its validation rows afterwards, as for every model.

Epoch ``e`` of a member visits its rows in the order ``default_rng([seed, e])`` draws (as
``core.packed`` does), so a member's run depends on nothing but its seed, data and settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from foldwise.components.core.packed import _EarlyStopping, epoch_order

ENGINE = "jax.vmap"
CHECKPOINT_FILE = "checkpoint-vmapped.npz"
PREDICT_ROWS = 4096  # rows per member per prediction call


def select_backend(specs: list[dict]) -> str:
    """Choose Keras' backend for a train task's process, before Keras is first imported.

    JAX, for this engine, when :func:`suits_jax` says so and neither ``KERAS_BACKEND`` nor an
    earlier import of Keras has chosen already; TensorFlow otherwise. Returns the backend
    the process will use.
    """
    import sys

    chosen = os.environ.get("KERAS_BACKEND")
    if "keras" in sys.modules or chosen:
        return chosen or "already imported"
    if suits_jax(specs):
        os.environ["KERAS_BACKEND"] = "jax"
        _compilation_cache()
        return "jax"
    return "tensorflow"


def suits_jax(specs: list[dict]) -> bool:
    """Whether a task's models train under JAX: users' builders that can, on a CPU.

    Every model is a user's builder without mixed precision, JAX is installed, the
    builder's code does not import TensorFlow itself, and no GPU or TPU is attached (JAX's
    CPU build would leave it idle; there TensorFlow's device plan, ``core.devices``, trains).
    """
    import importlib.util

    return (bool(specs)
            and all(s.get("estimator") == "keras_builder" and not s.get("mixed_precision")
                    for s in specs)
            and importlib.util.find_spec("jax") is not None
            and not _accelerator_attached()
            and not any(_uses_tensorflow(s.get("builder") or {}) for s in specs))


def _compilation_cache() -> None:
    """Keep JAX's compiled programs on disk, so the next task or run skips compiling them.

    Every train task is a process of its own and compiles the same programs (a model's
    initializers, its vectorized epoch) again; XLA's compilation takes about a second per
    architecture on a CPU. ``FOLDWISE_JAX_CACHE`` sets the folder (default
    ``~/.cache/foldwise/jax``, a few megabytes per architecture, safe to delete at any time;
    empty: no cache); JAX's own ``JAX_*`` settings win.
    """
    folder = os.environ.get("FOLDWISE_JAX_CACHE")
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        folder = os.path.join(base, "foldwise", "jax")
    if not folder:
        return
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def _accelerator_attached() -> bool:
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/accel[0-9]*")
                or os.environ.get("TPU_NAME") or os.environ.get("TPU_WORKER_HOSTNAMES"))


def _uses_tensorflow(reference: dict) -> bool:
    """Whether a builder's code imports TensorFlow (which Keras' JAX backend cannot run)."""
    import importlib.util
    import re

    source = reference.get("source")
    if source is None and reference.get("module"):
        try:
            spec = importlib.util.find_spec(reference["module"])
            with open(spec.origin, encoding="utf-8") as handle:
                source = handle.read()
        except Exception:  # unreadable: assume the worst
            return True
    return bool(re.search(r"^\s*(import|from)\s+tensorflow\b", source or "", re.MULTILINE))


def ready() -> bool:
    """Whether Keras runs on JAX in this process (the engine's precondition)."""
    import keras

    return keras.backend.backend() == "jax"


@dataclass
class Member:
    """One model to train: built, compiled, with its rows (targets in the loss' form).

    Attributes:
        model: A compiled Keras model, freshly built from its seed.
        x_fit: Rows to fit on.
        y_fit: Their targets in the form the model's loss takes.
        x_stop: Rows to stop early on (``None`` without early stopping).
        y_stop: Their targets.
        seed: Seed of the data order.
        spec: ``epochs``, ``batch_size``, ``early_stopping`` and ``patience``.
        key: What members must share to be packed (``architecture_key``); members of one key
            are checked to compute the same function before they are packed.
    """

    model: object
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_stop: np.ndarray | None
    y_stop: np.ndarray | None
    seed: int
    spec: dict
    key: str = ""
    x_test: np.ndarray | None = None  # the fold's validation rows: their loss every epoch
    y_test: np.ndarray | None = None


@dataclass
class Trained:
    """A member's result: the model holds its final (or best epoch's) weights."""

    history: dict
    fit_time: float
    output: np.ndarray | None
    packed: int
    resumed_from_epoch: int = 0


def architecture_key(model, spec: dict, params_id: str) -> str:
    """What members must share to train as one vectorized computation.

    Layer classes and configurations (with their automatic names made positional), variable
    shapes and dtypes, the compile configuration (the learning rate aside: it is a variable
    of each member's own), batch size and early stopping (:func:`fit_members` adds epochs).
    A model with a layer that is not Keras' own (whose configuration may not say everything
    it does) only packs with models of the same configuration, ``params_id``.
    """
    layers = list(model._flatten_layers(include_self=True))
    names = {layer.name: f"#{index}" for index, layer in enumerate(layers)}

    def positional(value):
        if isinstance(value, dict):
            return {k: positional(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [positional(v) for v in value]
        if isinstance(value, str):
            return names.get(value, value)
        return value

    try:
        config = positional(model.get_config())
    except Exception:  # a model that cannot describe itself packs with its own folds only
        config, params_id = None, params_id or "custom"
    own = all(type(layer).__module__.startswith("keras.") for layer in layers[1:])
    compiled = dict(model.get_compile_config() or {})
    optimizer = compiled.get("optimizer")
    if isinstance(optimizer, dict):
        inner = dict(optimizer.get("config", {}))
        inner.pop("name", None)
        if not isinstance(inner.get("learning_rate"), dict):  # a schedule stays in the key
            inner.pop("learning_rate", None)
        compiled["optimizer"] = {**optimizer, "config": inner}
    shapes = [(tuple(v.shape), str(v.dtype), bool(v.trainable)) for v in model.variables]
    fit = {k: spec.get(k) for k in ("batch_size", "early_stopping", "patience")}
    parts = [config, positional(compiled), shapes, fit, None if own else params_id]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def fit_members(members: list[Member], *, predict: list[np.ndarray] | None = None,
                checkpoint_dir: str | None = None) -> list[Trained]:
    """Train every member, those of one architecture as one vectorized computation.

    Args:
        members: The models and their rows (see :class:`Member`).
        predict: Rows per member to compute the trained model's raw outputs on.
        checkpoint_dir: Where each group keeps the state of its last finished epoch; a run
            that finds a checkpoint of the same members resumes from it.

    Returns:
        One :class:`Trained` per member, in order; each member's model holds its weights.
    """
    groups: dict[tuple, list[int]] = {}
    for index, member in enumerate(members):
        rows = len(member.x_fit) if _batch_dependent(member.model) else None
        groups.setdefault((member.key or str(index), member.spec["epochs"], rows),
                          []).append(index)
    results: list[Trained | None] = [None] * len(members)
    number = 0
    for indices in groups.values():
        for part in _same_function(members, indices):
            folder = None
            if checkpoint_dir is not None:
                folder = os.path.join(checkpoint_dir, f"vmapped-{number}")
            number += 1
            trained = _Group([members[i] for i in part], folder).run(
                None if predict is None else [predict[i] for i in part])
            for i, result in zip(part, trained, strict=True):
                results[i] = result
    return results


def _batch_dependent(model) -> bool:
    """Whether a layer's training output may depend on the other rows of its batch.

    Batch normalization does (and a layer that is not Keras' own might): a padded last batch
    would change its statistics, so such members pack only with members of as many rows,
    whose last batch is then trained at its own length, unpadded.
    """
    import keras

    return any(isinstance(layer, keras.layers.BatchNormalization)
               or not type(layer).__module__.startswith("keras.")
               for layer in list(model._flatten_layers(include_self=True))[1:])


def _same_function(members: list[Member], indices: list[int]) -> list[list[int]]:
    """``indices`` split into runs of members the leader's code computes exactly.

    The packed step traces the first member's layers: a member is packed with it only if the
    leader's forward pass on that member's weights gives that member's own outputs (a layer
    whose behavior its configuration does not describe would differ).
    """
    if len(indices) == 1:
        return [indices]
    import keras

    leader = members[indices[0]].model
    probe = members[indices[0]].x_fit[:8]
    same, alone = [indices[0]], []
    for i in indices[1:]:
        model = members[i].model
        own = keras.ops.convert_to_numpy(model(probe, training=False))
        traced, _ = leader.stateless_call(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables], probe, training=False)
        traced = keras.ops.convert_to_numpy(traced)
        if own.shape == traced.shape and np.allclose(own, traced, rtol=1e-5, atol=1e-6,
                                                     equal_nan=True):
            same.append(i)
        else:
            alone.append([i])
    return [same, *alone]


class _Group:
    """Members of one architecture, their states stacked, trained epoch by epoch."""

    def __init__(self, members: list[Member], checkpoint_dir: str | None):
        import jax

        self.members = members
        self.leader = members[0].model
        self.spec = members[0].spec
        self.batch = int(self.spec["batch_size"])
        self.checkpoint = (None if checkpoint_dir is None
                           else os.path.join(checkpoint_dir, CHECKPOINT_FILE))
        for member in members:  # build metrics, loss and optimizer state as fit would
            model = member.model
            model._symbolic_build(data_batch=(member.x_fit[:self.batch],
                                              member.y_fit[:self.batch]))
            model.reset_metrics()
        self.x = _stacked([m.x_fit for m in members])
        self.y = _stacked([m.y_fit for m in members])
        self.rows = [len(m.x_fit) for m in members]
        self.stopping = self.spec["early_stopping"]
        if self.stopping:
            self.x_stop = _stacked([m.x_stop for m in members])
            self.y_stop = _stacked([m.y_stop for m in members])
            self.w_stop = _weights([len(m.x_stop) for m in members], self.x_stop.shape[1])
        self.tested = all(m.x_test is not None and len(m.x_test) for m in members)
        if self.tested:
            self.x_test = _stacked([m.x_test for m in members])
            self.y_test = _stacked([m.y_test for m in members])
            self.w_test = _weights([len(m.x_test) for m in members], self.x_test.shape[1])
        states = [self._state_of(m.model) for m in members]
        self.state = jax.tree_util.tree_map(lambda *a: np.stack(a), *states)
        self.epoch_fn = jax.jit(self._epoch)
        self.evaluate_fn = jax.jit(jax.vmap(self._evaluate))
        self.predict_fn = jax.jit(jax.vmap(self._predict))
        self.last_losses = (None, None)

    # ----- the traced functions ---------------------------------------------------------
    def _step(self, state, x, y, weight, rows):
        import jax
        import jax.numpy as jnp

        model = self.leader
        tv, ntv, ov, mv = state
        grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)
        (_, aux), grads = grad_fn(tv, ntv, mv, x, y, weight, training=True,
                                  optimizer_variables=ov)
        unscaled, _, ntv2, _ = aux
        tv2, ov2 = model.optimizer.stateless_apply(ov, grads, tv)
        active = rows > 0
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b),
                                     (tv2, ntv2, ov2), (tv, ntv, ov))
        return (*new, mv), unscaled

    def _epoch(self, state, x, y, index, weight, rows, tail):
        import jax

        def take(data, idx):
            return data[idx]

        def body(carry, step):
            xb = jax.vmap(take)(x, index[:, step])
            yb = jax.vmap(take)(y, index[:, step])
            return jax.vmap(self._step)(carry, xb, yb, weight[:, step], rows[:, step])

        state, losses = jax.lax.scan(body, state, jax.numpy.arange(index.shape[1]))
        if tail is None:
            return state, losses
        ones = jax.numpy.ones(tail.shape, dtype=weight.dtype)
        count = jax.numpy.full(tail.shape[:1], tail.shape[1], dtype=rows.dtype)
        state, last = jax.vmap(self._step)(state, jax.vmap(take)(x, tail),
                                           jax.vmap(take)(y, tail), ones, count)
        return state, jax.numpy.concatenate([losses, last[None]])

    def _evaluate(self, tv, ntv, mv, x, y, weight):
        loss, _ = self.leader.compute_loss_and_updates(tv, ntv, mv, x, y, weight,
                                                       training=False)
        return loss

    def _predict(self, tv, ntv, x):
        out, _ = self.leader.stateless_call(tv, ntv, x, training=False)
        return out

    # ----- the loop -----------------------------------------------------------------------
    @staticmethod
    def _state_of(model):
        return ([v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                [v.value for v in model.optimizer.variables],
                [v.value for v in model.metrics_variables])

    def _order(self, epoch: int):
        """Row indices, sample weights and real row counts per (member, step) for ``epoch``.

        With equal row counts, the last shorter batch comes apart (``tail``), unpadded.
        """
        orders = [epoch_order(m.seed, epoch, n)
                  for m, n in zip(self.members, self.rows, strict=True)]
        short = self.rows[0] % self.batch
        tail = None
        if len(set(self.rows)) == 1 and short:
            tail = np.stack([order[-short:] for order in orders]).astype("int32")
            steps = self.rows[0] // self.batch
        else:
            steps = max(-(-n // self.batch) for n in self.rows)
        index = np.zeros((len(self.members), steps, self.batch), dtype="int32")
        weight = np.zeros((len(self.members), steps, self.batch), dtype="float32")
        rows = np.zeros((len(self.members), steps), dtype="int32")
        for k, order in enumerate(orders):
            for step, start in enumerate(range(0, steps * self.batch, self.batch)):
                part = order[start:start + self.batch]
                if not len(part):
                    break
                index[k, step, :len(part)] = part
                weight[k, step, :len(part)] = self.batch / len(part)
                rows[k, step] = len(part)
        return index, weight, rows, tail

    def run_epoch(self, epoch: int) -> None:
        """One epoch of every member; sets ``last_losses`` (epoch, stop- and test-row losses)."""
        index, weight, rows, tail = self._order(epoch)
        self.state, losses = self.epoch_fn(self.state, self.x, self.y, index, weight, rows,
                                           tail)
        losses = np.asarray(losses, dtype="float64")  # (steps, members)
        if tail is not None:
            rows = np.concatenate([rows, np.full((len(rows), 1), tail.shape[1])], axis=1)
        counts = rows.T.astype("float64")
        with np.errstate(invalid="ignore"):
            epoch_loss = (losses * counts).sum(axis=0) / counts.sum(axis=0)
        val = test = None
        tv, ntv, _, mv = self.state
        if self.stopping:
            val = np.asarray(self.evaluate_fn(tv, ntv, mv, self.x_stop, self.y_stop,
                                              self.w_stop), dtype="float64")
        if self.tested:  # the validation fold's loss, as Keras' evaluate computes it
            test = np.asarray(self.evaluate_fn(tv, ntv, mv, self.x_test, self.y_test,
                                               self.w_test), dtype="float64")
        self.last_losses = (epoch_loss, val, test)

    def weights_of(self, k: int) -> list[np.ndarray]:
        """Member ``k``'s trainable and non-trainable values (what early stopping keeps)."""
        tv, ntv = self.state[0], self.state[1]
        return [np.asarray(v[k]) for v in tv] + [np.asarray(v[k]) for v in ntv]

    def run(self, predict: list[np.ndarray] | None) -> list[Trained]:
        """Train every epoch; put each member's final weights in its model."""
        started = time.perf_counter()
        stopping = _EarlyStopping([_StreamLike(m.spec, m.x_test) for m in self.members])
        fingerprint = self._fingerprint()
        start = self._restore(fingerprint, stopping)
        for epoch in range(start, int(self.spec["epochs"])):
            self.run_epoch(epoch)
            stopping.update(epoch, self)
            self._save(fingerprint, stopping, epoch + 1)
            if stopping.all_stopped():
                break
        fit_time = time.perf_counter() - started
        finals = [stopping.final_weights(k, self) for k in range(len(self.members))]
        for member, weights in zip(self.members, finals, strict=True):
            variables = member.model.trainable_variables + member.model.non_trainable_variables
            for variable, value in zip(variables, weights, strict=True):
                variable.assign(value)
        started = time.perf_counter()
        outputs = None if predict is None else self._outputs(finals, predict)
        predict_time = time.perf_counter() - started
        share = (fit_time + predict_time) / len(self.members)
        return [Trained(stopping.histories[k], share, None if outputs is None else outputs[k],
                        len(self.members), start) for k in range(len(self.members))]

    def _outputs(self, finals: list[list], predict: list[np.ndarray]) -> list:
        """Every member's raw outputs on its ``predict`` rows (``finals``: its weights)."""
        trainable = len(self.leader.trainable_variables)
        tv = [np.stack([f[j] for f in finals]) for j in range(trainable)]
        ntv = [np.stack([f[j] for f in finals]) for j in range(trainable, len(finals[0]))]
        longest = max(len(p) for p in predict)
        outputs = [[] for _ in predict]
        for start in range(0, max(longest, 1), PREDICT_ROWS):
            chunk = _stacked([p[start:start + PREDICT_ROWS] for p in predict],
                             rows=min(PREDICT_ROWS, max(longest - start, 1)))
            out = np.asarray(self.predict_fn(tv, ntv, chunk))
            for k, p in enumerate(predict):
                outputs[k].append(out[k, :max(0, min(PREDICT_ROWS, len(p) - start))])
        return [np.concatenate(parts) for parts in outputs]

    # ----- checkpoints --------------------------------------------------------------------
    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for member in self.members:
            spec = {k: v for k, v in member.spec.items() if k != "epochs"}
            digest.update(json.dumps([member.seed, member.key, spec], sort_keys=True,
                                     default=repr).encode())
            for array in (member.x_fit, member.y_fit, member.x_stop, member.y_stop):
                if array is not None:
                    digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def _save(self, fingerprint: str, stopping: _EarlyStopping, epochs: int) -> None:
        import jax

        if self.checkpoint is None:
            return
        os.makedirs(os.path.dirname(self.checkpoint), exist_ok=True)
        leaves = jax.tree_util.tree_leaves(self.state)
        arrays = {f"state_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        arrays.update(stopping.to_arrays())
        temporary = self.checkpoint + ".tmp.npz"
        np.savez(temporary, fingerprint=np.array(fingerprint), epochs=np.array(epochs),
                 **arrays)
        os.replace(temporary, self.checkpoint)

    def _restore(self, fingerprint: str, stopping: _EarlyStopping) -> int:
        import jax

        if self.checkpoint is None or not os.path.exists(self.checkpoint):
            return 0
        with np.load(self.checkpoint) as arrays:
            if str(arrays["fingerprint"]) != fingerprint:
                return 0
            leaves, tree = jax.tree_util.tree_flatten(self.state)
            self.state = jax.tree_util.tree_unflatten(
                tree, [arrays[f"state_{i}"] for i in range(len(leaves))])
            stopping.from_arrays(arrays)
            return int(arrays["epochs"])


@dataclass
class _StreamLike:
    """What ``_EarlyStopping`` reads of a member: its spec, and whether it has test rows."""

    spec: dict
    x_test: np.ndarray | None = None


def _stacked(arrays: list[np.ndarray], rows: int | None = None) -> np.ndarray:
    """Arrays of one row shape stacked on a new axis, zero-padded to ``rows`` (the longest)."""
    rows = max(len(a) for a in arrays) if rows is None else rows
    first = np.asarray(arrays[0])
    out = np.zeros((len(arrays), rows, *first.shape[1:]), dtype=first.dtype)
    for k, array in enumerate(arrays):
        out[k, :len(array)] = array[:rows]
    return out


def _weights(counts: list[int], rows: int) -> np.ndarray:
    """Sample weights over padded rows: ``rows / real`` on real rows, 0 on padding."""
    weight = np.zeros((len(counts), rows), dtype="float32")
    for k, n in enumerate(counts):
        weight[k, :n] = rows / max(n, 1)
    return weight
