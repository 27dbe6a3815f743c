"""The one training engine: every Keras model, packed, under Keras 3's JAX backend.

foldwise's own MLP and every user's builder train here, on whatever devices JAX finds (CPU,
GPUs, TPU), with Keras' own train step: with Keras' JAX backend a compiled model's training
step is a pure function of its state (trainable, non-trainable and optimizer variables) and
a batch (``compute_loss_and_updates`` and ``optimizer.stateless_apply``, exactly what
``fit`` runs). Members that compute one function (folds of one configuration, and
configurations that differ only in values a step can take as data) have their states
stacked on a leading axis, ``jax.vmap`` turns the step into one computation over all of
them, and ``lax.scan`` runs a whole epoch in one compiled call.

What a step takes as data, so that members differing in it still share one program: the
learning rate (a variable of each member's optimizer), the batch order, and, for networks
made only of Keras' ``Dense``, ``Dropout`` and ``Activation`` layers (foldwise's MLP, and
users' builders written that way), the L2 factor of each layer's kernel, each dropout rate
and every layer's width. Such members are padded to the widest: padded inputs are zero,
padded weights start at zero and their gradients are held at zero, so nothing of the
padding ever reaches a real unit and each member ends as a run at its own width would, to
float rounding. What still splits a pack is named by :func:`pack_key`: depth, activations,
loss, optimizer and its other settings, epochs, batch size, early stopping and precision;
and, where dropout is on, the widths (a dropout mask is drawn at its layer's width).

Each member keeps everything a separate run has: its own rows, initial weights, data order,
dropout seed state, batch normalization statistics, optimizer moments and step count, and
early stopping; no reduction ever crosses members, so a diverging member cannot disturb its
mates. Members whose folds have different row counts are padded: a padded row carries
sample weight 0 (and real rows ``batch / real rows``, so the batch's mean loss is the mean
over its real rows, as an unpadded batch's), and a member with no rows left in a step skips
it (no update, no step count). Members of equal row counts are not padded at all: their
last, shorter batch is a step of its own length. A model whose training output depends on
its batch's other rows (batch normalization, or a layer that is not Keras' own) packs only
with members of as many rows, so it never sees padding.

Epoch ``e`` of a member visits its rows in the order ``default_rng([seed, e])`` draws, and
its dropout masks come from its own seed state: a member's run depends on nothing but its
seed, data and settings. So an interrupted run resumed from its last epoch's checkpoint
ends where an uninterrupted one does, and a member can be continued from its own state
(:func:`save_state`) in a pack of other mates: successive halving by epochs trains its
survivors on from where the last rung left them.
Compiled metrics are not tracked per epoch (the history holds ``loss``, ``val_loss`` and
``test_loss``): the fold's scores are computed on its validation rows afterwards.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import math
import os
import sys
import time
import weakref
from dataclasses import dataclass

import numpy as np

from foldwise.components.core.models.estimators import role_of
from foldwise.components.core.training.step_costs import MEASURED, layer_macs

ENGINE = "jax.vmap"
CHECKPOINT_FILE = "checkpoint-vmapped.npz"
PREDICT_ROWS = 4096  # rows per member per prediction call
EVALUATE_ROWS = 16384  # rows per member per step of an epoch's loss on held-out rows
# Activations that act on each unit alone: a padded unit cannot change a real one's value.
_NOT_ELEMENTWISE = ("softmax", "log_softmax", "glu")


def epoch_order(seed: int, epoch: int, rows: int) -> np.ndarray:
    """The order in which a member visits its ``rows`` training rows in ``epoch``."""
    return np.random.default_rng([seed, epoch]).permutation(rows)


def pack_key(spec: dict) -> tuple | None:
    """Which configurations can train as one program, from their specs alone (the plan's).

    foldwise's MLP: depth, activation, loss, optimizer and its settings other than the
    learning rate, epochs, batch size, early stopping and precision; whether dropout is on,
    and then the widths. Learning rate, L2 factor, dropout rate and widths are data. A
    user's builder: every configuration of one builder (the engine finds, once they are
    built, which of them compute one function). ``None``: not a Keras model.
    """
    role = role_of(spec)
    fit = tuple(spec.get(k) for k in ("epochs", "batch_size", "early_stopping", "patience",
                                      "mixed_precision"))
    if role == "user":
        builder = spec.get("builder") or {}
        return ("builder", builder.get("sha256"), builder.get("function"), fit)
    if role != "mlp":
        return None
    optimizer = spec["optimizer"]
    settings = tuple(sorted((k, spec[k]) for k in spec
                            if k in _OPTIMIZER_SETTINGS and k != "learning_rate"))
    dropout = spec["dropout"] > 0
    return ("mlp", len(spec["hidden_units"]), spec["activation"], spec["loss"], optimizer,
            settings, fit, dropout, tuple(spec["hidden_units"]) if dropout else None)


_OPTIMIZER_SETTINGS = ("learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay",
                       "momentum", "rho")


def pack_split(a: dict, b: dict) -> list[str]:
    """The settings that keep two configurations' models out of one pack (``[]``: none)."""
    if pack_key(a) == pack_key(b):
        return []
    if a.get("estimator", "keras") != b.get("estimator", "keras"):
        return ["estimator"]
    names = ["builder", "epochs", "batch_size", "early_stopping", "patience",
             "mixed_precision", "activation", "loss", "optimizer",
             *[k for k in _OPTIMIZER_SETTINGS if k != "learning_rate"]]
    split = [k for k in names if a.get(k) != b.get(k)]
    units_a, units_b = a.get("hidden_units"), b.get("hidden_units")
    if units_a is not None and units_b is not None:
        if len(units_a) != len(units_b):
            split.append("depth")
        elif (a.get("dropout", 0) > 0) != (b.get("dropout", 0) > 0):
            split.append("dropout on/off")
        elif a.get("dropout", 0) > 0 and units_a != units_b:
            split.append("widths (with dropout)")
    return split


def pack_groups(specs: list[dict]) -> tuple[int, list[str]]:
    """How many programs train these configurations, and what splits them (for the plan).

    Configurations of one :func:`pack_key` share a program (scikit-learn's MLP has none of
    its own); the reasons are the settings in which the programs' first configurations
    differ (:func:`pack_split`).
    """
    leaders: dict = {}
    for spec in specs:
        key = pack_key(spec)
        if key is not None:
            leaders.setdefault(key, spec)
    firsts = list(leaders.values())
    reasons: list[str] = []
    for i, a in enumerate(firsts):
        for b in firsts[i + 1:]:
            reasons += [r for r in pack_split(a, b) if r not in reasons]
    return len(firsts), reasons


def block_tensorflow() -> None:
    """Keep TensorFlow out of this process (a JAX train or plan step).

    Keras imports TensorFlow, when it is installed, to serialize a model (4-6 s per
    process): with the import refused, it does without. Users'
    builders written against ``tensorflow.keras`` still load: see
    :func:`~foldwise.components.core.models.tensorflow_standin.keras_as_tensorflow`.
    """
    if sys.modules.get("tensorflow") is None:  # not imported: keep it out
        sys.modules["tensorflow"] = None  # Python's own way to make an import fail


def select_backend(tensorflow: bool = False) -> str:
    """Choose Keras' backend for a step's process, before Keras is first imported.

    JAX, the one training engine's, unless ``tensorflow`` (a user's builder that runs
    TensorFlow operations: the plan found it by trying) or ``KERAS_BACKEND`` or an earlier
    import of Keras has chosen already. Under JAX, TensorFlow is kept out of the process
    (:func:`block_tensorflow`). Returns the backend the process will use.
    """
    chosen = os.environ.get("KERAS_BACKEND")
    if "keras" in sys.modules or chosen:
        backend = chosen or "already imported"
    else:
        backend = "tensorflow" if tensorflow else "jax"
        os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        _compilation_cache()
        block_tensorflow()
    return backend


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
        x_test: The fold's validation rows: their loss is recorded every epoch.
        y_test: Their targets.
        initial: A state to continue from (:func:`load_state`), or ``None`` to start afresh.
    """

    model: object
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_stop: np.ndarray | None
    y_stop: np.ndarray | None
    seed: int
    spec: dict
    key: str = ""
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    initial: dict | None = None


@dataclass
class Trained:
    """A member's result: the model holds its final (or best epoch's) weights."""

    history: dict
    fit_time: float
    output: np.ndarray | None
    packed: int
    resumed_from_epoch: int = 0
    continued_from_epoch: int = 0
    state: dict | None = None  # with keep_state: what to continue from (:func:`save_state`)
    program: str = ""  # "padded" when packed across widths and data-valued settings
    spread: str = ""  # over several devices: "members" (each its share) or "batch" rows


def architecture_key(model, spec: dict, params_id: str) -> str:
    """What members must share to train as one vectorized computation (any Keras model).

    Layer classes and configurations (with their automatic names made positional), variable
    shapes and dtypes, the compile configuration (the learning rate aside: it is a variable
    of each member's own), batch size and early stopping (:func:`fit_members` adds epochs).
    A model with a layer that is not Keras' own (whose configuration may not say everything
    it does) only packs with models of the same configuration, ``params_id``. Networks of
    ``Dense``, ``Dropout`` and ``Activation`` layers pack more widely (:func:`fit_members`).
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
    shapes = [(tuple(v.shape), str(v.dtype), bool(v.trainable)) for v in model.variables]
    parts = [config, positional(_compile_key(model)), shapes, _fit_key(spec),
             None if own else params_id]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def _compile_key(model) -> dict:
    """The compile configuration, the learning rate left out (a variable of each member)."""
    compiled = dict(model.get_compile_config() or {})
    optimizer = compiled.get("optimizer")
    if isinstance(optimizer, dict):
        inner = dict(optimizer.get("config", {}))
        inner.pop("name", None)
        if not isinstance(inner.get("learning_rate"), dict):  # a schedule stays in the key
            inner.pop("learning_rate", None)
        compiled["optimizer"] = {**optimizer, "config": inner}
    for name in ("metrics", "weighted_metrics", "steps_per_execution", "jit_compile",
                 "run_eagerly"):
        compiled.pop(name, None)  # not part of the training step the engine runs
    return compiled


def _fit_key(spec: dict) -> dict:
    return {k: spec.get(k) for k in ("batch_size", "early_stopping", "patience")}


# ----- networks of Dense layers: one program across widths ------------------------------------
@dataclass
class _Chain:
    """A model that is a chain of Keras' ``Dense``, ``Dropout`` and ``Activation`` layers."""

    layers: list
    features: int
    units: list  # per layer: a Dense layer's units, else None
    l2: list[float]  # per Dense layer: its kernel's L2 factor (0: none)
    keep: list[float]  # per Dropout layer: 1 - rate
    key: str


def _dense_chain(model, spec: dict) -> _Chain | None:
    """``model`` as a :class:`_Chain`, or ``None`` when it is anything else.

    Its key leaves out what the padded program takes as data (widths, L2 factors, dropout
    rates, the learning rate); with dropout on, the widths stay in (a mask is drawn at its
    layer's width). Whether the model really is the chain is checked later, numerically.
    """
    import keras

    if (type(model).__name__ not in ("Sequential", "Functional")
            or not type(model).__module__.startswith("keras.")
            or len(model.inputs) != 1 or len(model.outputs) != 1
            or len(model.inputs[0].shape) != 2 or model.inputs[0].shape[1] is None):
        return None
    # A Dropout at rate 0 is the identity (Keras gives it no seed state): left out.
    layers = [layer for layer in model.layers
              if not isinstance(layer, keras.layers.InputLayer)
              and not (type(layer) is keras.layers.Dropout and layer.rate == 0)]
    dense = [i for i, layer in enumerate(layers) if type(layer) is keras.layers.Dense]
    if not layers or not dense:
        return None
    parts, units, l2, keep = [], [], [], []
    for index, layer in enumerate(layers):
        kind = type(layer)
        policy = layer.dtype_policy.name
        if kind is keras.layers.Dense:
            regularizer = layer.kernel_regularizer
            if (layer.bias_regularizer is not None or layer.activity_regularizer is not None
                    or layer.kernel_constraint is not None or layer.bias_constraint is not None
                    or getattr(layer, "lora_enabled", False)
                    or getattr(layer, "quantization_mode", None)
                    or (regularizer is not None
                        and type(regularizer) is not keras.regularizers.L2)):
                return None
            activation = keras.activations.serialize(layer.activation)
            last = index == dense[-1]
            if not last and (not isinstance(activation, str)
                             or activation in _NOT_ELEMENTWISE):
                return None
            parts.append(["dense", activation, layer.use_bias, policy,
                          layer.units if last else None])
            units.append(layer.units)
            l2.append(0.0 if regularizer is None else float(regularizer.l2))
        elif kind is keras.layers.Dropout:
            if layer.noise_shape is not None:
                return None
            parts.append(["dropout", policy])
            units.append(None)
            keep.append(float(np.float32(1.0 - layer.rate)))
        elif kind is keras.layers.Activation:
            activation = keras.activations.serialize(layer.activation)
            if index < dense[-1] and (not isinstance(activation, str)
                                      or activation in _NOT_ELEMENTWISE):
                return None
            parts.append(["activation", activation, policy])
            units.append(None)
        else:
            return None
    features = int(model.inputs[0].shape[1])
    if any(k < 1.0 for k in keep):  # a mask is drawn at its layer's width: those split
        width, at_dropouts = features, []
        for layer_units, part in zip(units, parts, strict=True):
            if layer_units is not None:
                width = layer_units
            elif part[0] == "dropout":
                at_dropouts.append(width)
        parts.append(["widths at dropout", at_dropouts])
    try:
        compiled = _compile_key(model)
    except Exception:
        return None
    key = json.dumps([parts, compiled, model.dtype_policy.name, _fit_key(spec)],
                     sort_keys=True, default=repr)
    return _Chain(layers, features, units, l2, keep,
                  "chain-" + hashlib.sha256(key.encode()).hexdigest())


def _data_dropout_class():
    """``Dropout`` whose keep probability is a value the traced step hands it (data)."""
    import keras
    from keras.src.backend.jax.random import jax_draw_seed

    class DataDropout(keras.layers.Dropout):
        keep = None  # set while the step is traced: this member's 1 - rate

        def call(self, inputs, training=False):  # noqa: D102 - Keras' hook
            if not training:
                return inputs
            import jax

            # What Keras' JAX dropout computes, with the probability as data.
            seed = jax_draw_seed(self.seed_generator)
            keep = jax.numpy.asarray(self.keep, dtype=inputs.dtype)
            mask = jax.random.bernoulli(seed, p=self.keep, shape=inputs.shape)
            return jax.lax.select(mask, inputs / keep, jax.numpy.zeros_like(inputs))

    return DataDropout


def _data_l2_class():
    """Keras' L2 penalty with its factor a value the traced step hands it (data)."""
    import keras

    class DataL2(keras.regularizers.Regularizer):
        factor = 0.0  # set while the step is traced: this member's factor

        def __call__(self, x):
            return self.factor * keras.ops.sum(keras.ops.square(x))

    return DataL2


def _chain_leader(members: list[Member], chains: list[_Chain]):
    """The program that trains ``chains``: their layers at the widest widths, compiled.

    Returns the leader, its dropout layers and its L2 penalties (``None`` for a Dense
    layer no member penalizes).
    """
    import keras

    first = chains[0]
    widths = [None if u is None else max(c.units[i] for c in chains)
              for i, u in enumerate(first.units)]
    dropout_class, l2_class = _data_dropout_class(), _data_l2_class()
    layers, dropouts, penalties = [], [], []
    dense = 0
    for index, layer in enumerate(first.layers):
        config = layer.get_config()
        if type(layer) is keras.layers.Dense:
            config.update(units=widths[index], kernel_regularizer=None)
            new = keras.layers.Dense.from_config(config)
            penalty = None
            if any(c.l2[dense] > 0 for c in chains):
                penalty = l2_class()
                new.kernel_regularizer = penalty
            penalties.append(penalty)
            dense += 1
        elif type(layer) is keras.layers.Dropout:
            new = dropout_class.from_config(config)
            dropouts.append(new)
        else:
            new = type(layer).from_config(config)
        layers.append(new)
    model = members[0].model
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(model.dtype_policy.name)  # the model's, as built
    try:
        leader = keras.Sequential(
            [keras.Input((max(c.features for c in chains),), dtype=model.inputs[0].dtype),
             *layers])
        optimizer = model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a loss-scale wrapper
        leader.compile(optimizer=type(optimizer).from_config(optimizer.get_config()),
                       loss=model.loss)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return leader, dropouts, penalties


def _padded(value, shape) -> np.ndarray:
    """``value`` zero-padded at the end of each axis to ``shape``."""
    value = np.asarray(value)
    if tuple(value.shape) == tuple(shape):
        return value
    out = np.zeros(shape, dtype=value.dtype)
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out


def _own(value, shape) -> np.ndarray:
    """A member's own part of a padded ``value``."""
    return np.asarray(value)[tuple(slice(0, n) for n in shape)]


# ----- the engine --------------------------------------------------------------------------
def fit_members(members: list[Member], *, predict: list[np.ndarray] | None = None,
                checkpoint_dir: str | None = None,
                keep_state: bool = False) -> list[Trained]:
    """Train every member, those of one program as one vectorized computation.

    Args:
        members: The models and their rows (see :class:`Member`).
        predict: Rows per member to compute the trained model's raw outputs on.
        checkpoint_dir: Where each group keeps the state of its last finished epoch; a run
            that finds a checkpoint of the same members resumes from it.
        keep_state: Return each member's state at the end (``Trained.state``).

    Returns:
        One :class:`Trained` per member, in order; each member's model holds its weights.
    """
    groups: dict[tuple, list[int]] = {}
    chains: dict[int, _Chain] = {}
    for index, member in enumerate(members):
        rows = len(member.x_fit) if _batch_dependent(member.model) else None
        chain = _dense_chain(member.model, member.spec)
        if chain is not None:
            chains[index] = chain
        key = chain.key if chain is not None else (member.key or str(index))
        start = None if member.initial is None else int(member.initial["epochs"])
        groups.setdefault((key, member.spec["epochs"], rows, start), []).append(index)
    results: list[Trained | None] = [None] * len(members)
    number = 0
    for indices in groups.values():
        if indices[0] in chains:
            parts = [part for widths in _by_width(members, indices, chains)
                     for part in _same_chain(members, widths, chains)]
        else:
            parts = [(part, None) for part in _same_function(members, indices)]
        for part, leader in parts:
            folder = None
            if checkpoint_dir is not None:
                folder = os.path.join(checkpoint_dir, f"vmapped-{number}")
            number += 1
            group = _Group([members[i] for i in part], folder, leader,
                           [chains[i] for i in part] if leader is not None else None)
            trained = group.run(None if predict is None else [predict[i] for i in part],
                                keep_state)
            del group  # its stacked rows go before the next program stacks its own
            gc.collect()  # the group and its compiled functions refer to each other
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


def _close(own, traced) -> bool:
    return own.shape == traced.shape and np.allclose(own, traced, rtol=1e-5, atol=1e-6,
                                                     equal_nan=True)


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
        if _close(own, keras.ops.convert_to_numpy(traced)):
            same.append(i)
        else:
            alone.append([i])
    return [same, *alone]


def _by_width(members: list[Member], indices: list[int],
              chains: dict[int, _Chain]) -> list[list[int]]:
    """A padded group cut where one program per width range costs fewer steps' time.

    Padding every member to the widest costs each narrow one the wide one's arithmetic;
    a program of its own costs a fixed part per step (``core.search.costs``). Members are sorted by
    their own cost and cut into contiguous runs with the least total cost (exactly, by
    dynamic programming over the distinct widths).
    """

    def widths(i):
        chain = chains[i]
        return (chain.features, *[u for u in chain.units if u is not None])

    kinds: dict[tuple, list[int]] = {}
    for i in indices:
        kinds.setdefault(widths(i), []).append(i)
    if len(kinds) == 1:
        return [indices]
    order = sorted(kinds, key=lambda w: layer_macs(list(w[1:-1]), w[0], w[-1]))
    fixed = MEASURED["step_seconds"] / MEASURED["mac_seconds"]
    batch = int(members[indices[0]].spec["batch_size"])

    def cost(first: int, last: int) -> float:  # one program for order[first:last + 1]
        span = order[first:last + 1]
        widest = [max(w[j] for w in span) for j in range(len(span[0]))]
        count = sum(len(kinds[w]) for w in span)
        return fixed + count * batch * layer_macs(widest[1:-1], widest[0], widest[-1])

    best = [0.0] + [float("inf")] * len(order)  # best[k]: order[:k] cut optimally
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            value = best[start] + cost(start, end - 1)
            if value < best[end]:
                best[end], cut[end] = value, start
    parts, end = [], len(order)
    while end:
        parts.append([i for w in order[cut[end]:end] for i in kinds[w]])
        end = cut[end]
    return parts[::-1]


def _same_chain(members: list[Member], indices: list[int], chains: dict[int, _Chain]):
    """``indices`` as ``(members, leader)`` parts: those the padded program computes exactly.

    A member the padded leader does not reproduce (a functional model whose layers are not
    the chain they seem) trains on its own, with its own layers.
    """
    import keras

    try:
        leader = _chain_leader([members[i] for i in indices], [chains[i] for i in indices])
    except Exception:  # a layer or compile setting that does not rebuild: no padding
        return [(part, None) for i in indices for part in _same_function(members, [i])]
    model = leader[0]
    width = model.inputs[0].shape[1]
    same, alone = [], []
    for i in indices:
        member = members[i].model
        probe = members[i].x_fit[:8]
        own = keras.ops.convert_to_numpy(member(probe, training=False))
        tv = [_padded(v.value, w.shape) for v, w in zip(
            member.trainable_variables, model.trainable_variables, strict=True)] \
            if len(member.trainable_variables) == len(model.trainable_variables) else None
        ntv = [v.value for v in member.non_trainable_variables]
        fits = tv is not None and len(ntv) == len(model.non_trainable_variables)
        if fits:
            traced, _ = model.stateless_call(tv, ntv, _padded(probe, (len(probe), width)),
                                             training=False)
            fits = _close(own, keras.ops.convert_to_numpy(traced))
        (same if fits else alone).append(i)
    parts = [(same, leader)] if same else []
    return parts + [(part, None) for i in alone for part in _same_function(members, [i])]


class _EarlyStopping:
    """Keras' ``EarlyStopping(monitor="val_loss", restore_best_weights=True)``, per member.

    A member whose epoch loss is not finite stops there, as Keras' ``TerminateOnNaN`` ends
    a fit, while its mates train on; the caller records it as diverged.
    """

    def __init__(self, members: list[Member]):
        self.enabled = [m.spec["early_stopping"] for m in members]
        self.patience = [m.spec["patience"] for m in members]
        k = len(members)
        self.best = [math.inf] * k
        self.wait = [0] * k
        self.best_weights: list[list | None] = [None] * k
        self.stopped = [False] * k
        tested = [m.x_test is not None for m in members]
        self.histories: list[dict] = [
            {"loss": [], **({"val_loss": []} if e else {}), **({"test_loss": []} if t else {})}
            for e, t in zip(self.enabled, tested, strict=True)]

    def update(self, epoch: int, trainer: _Group) -> None:
        losses, val_losses, test_losses = trainer.last_losses
        for k in range(len(self.enabled)):
            if self.stopped[k]:
                continue
            self.histories[k]["loss"].append(float(losses[k]))
            if self.enabled[k]:
                self.histories[k]["val_loss"].append(float(val_losses[k]))
            if "test_loss" in self.histories[k] and test_losses is not None:
                self.histories[k]["test_loss"].append(float(test_losses[k]))
            if not math.isfinite(float(losses[k])):
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

    def final_weights(self, k: int, trainer: _Group) -> list:
        if self.best_weights[k] is not None:
            return self.best_weights[k]
        return trainer.weights_of(k)

    def to_arrays(self) -> dict:
        arrays = {"es_best": np.array(self.best), "es_wait": np.array(self.wait),
                  "es_stopped": np.array(self.stopped),
                  "es_history": np.array(json.dumps(self.histories))}
        for i in range(len(self.enabled)):
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


class _Group:
    """Members of one program, their states stacked, trained epoch by epoch."""

    def __init__(self, members: list[Member], checkpoint_dir: str | None, leader=None,
                 chains: list[_Chain] | None = None):
        import jax

        self.members = members
        self.spec = members[0].spec
        self.batch = int(self.spec["batch_size"])
        self.checkpoint = (None if checkpoint_dir is None
                           else os.path.join(checkpoint_dir, CHECKPOINT_FILE))
        for member in members:  # build metrics, loss and optimizer state as fit would
            model = member.model
            model._symbolic_build(data_batch=(member.x_fit[:self.batch],
                                              member.y_fit[:self.batch]))
            model.reset_metrics()
        if leader is None:
            self.leader, self.dropouts, self.penalties = members[0].model, [], []
            self.program = ""
        else:
            self.leader, self.dropouts, self.penalties = leader
            self.program = "padded"
        # Inputs are padded to the leader's width in a padded program; any other model's
        # rows stack as they are (its inputs need not even be described).
        self.width = None if leader is None else int(self.leader.inputs[0].shape[1])
        if leader is not None:
            self.leader._symbolic_build(data_batch=(
                _padded(members[0].x_fit[:self.batch], (min(self.batch, len(
                    members[0].x_fit)), self.width)), members[0].y_fit[:self.batch]))
        self.spread, self.sharding, self.batch_sharding = _placement(len(members), self.batch)
        # Rows are held once however many members share them (the configurations of one
        # fold), on the device (whole on each), written there array by array: each member
        # reads its own through ``source``.
        self.x, self.source = self._shared([m.x_fit for m in members], None)
        self.y = _stacked([m.y_fit for m in members])
        self.rows = [len(m.x_fit) for m in members]
        self.stopping = self.spec["early_stopping"]
        # Held-out rows are evaluated EVALUATE_ROWS at a time (padded to whole chunks).
        if self.stopping:
            rows = _chunked(max(len(m.x_stop) for m in members))
            self.x_stop, self.source_stop = self._shared([m.x_stop for m in members], rows)
            self.y_stop = _stacked([m.y_stop for m in members], rows)
            self.w_stop = _weights([len(m.x_stop) for m in members], rows)
        self.tested = all(m.x_test is not None and len(m.x_test) for m in members)
        if self.tested:
            rows = _chunked(max(len(m.x_test) for m in members))
            self.x_test, self.source_test = self._shared([m.x_test for m in members], rows)
            self.y_test = _stacked([m.y_test for m in members], rows)
            self.w_test = _weights([len(m.x_test) for m in members], rows)
        self.shapes = [[tuple(v.shape) for v in part] for part in self._parts(self.leader)]
        states = [self._state_of(m.model) for m in members]
        self.own_shapes = [[[tuple(v.shape) for v in part] for part in self._parts(m.model)[:3]]
                           for m in members]
        self.state = jax.tree_util.tree_map(lambda *a: np.stack(a), *states)
        self.masks = None
        if any(shapes[0] != self.shapes[0] for shapes in self.own_shapes):
            self.masks = [np.stack([_padded(np.ones(own[0][i], "float32"), shape)
                                    for own in self.own_shapes])
                          for i, shape in enumerate(self.shapes[0])]
        chains = (chains or [_dense_chain(m.model, m.spec) for m in members]) if leader else []
        self.keep = np.array([c.keep for c in chains] or [[]] * len(members), "float32")
        self.l2 = np.array([[c.l2[j] for j, p in enumerate(self.penalties) if p is not None]
                            for c in chains] or [[]] * len(members), "float32")
        self.y, self.source, self.state, self.masks, self.keep, self.l2 = self._placed(
            self.y, self.source, self.state, self.masks, self.keep, self.l2)
        if self.stopping:
            self.y_stop, self.w_stop, self.source_stop = self._placed(
                self.y_stop, self.w_stop, self.source_stop)
        if self.tested:
            self.y_test, self.w_test, self.source_test = self._placed(
                self.y_test, self.w_test, self.source_test)
        self.epoch_fn = jax.jit(self._epoch)
        self.evaluate_fn = jax.jit(self._evaluate_all)
        self.predict_fn = jax.jit(jax.vmap(self._predict))
        self.last_losses = (None, None, None)

    def _placed(self, *values):
        """``values`` placed over the devices (:func:`_placement`), or left as they are."""
        if self.sharding is None:
            return values
        import jax

        return tuple(None if v is None else jax.device_put(v, self.sharding) for v in values)

    def _shared(self, arrays: list[np.ndarray], rows: int | None):
        """``(stacked, source)``: each distinct array once, on the device; whose each is.

        The arrays are zero-padded to ``rows`` and the group's width. Members of one fold
        are handed the same rows (the same array): stacking them once per member would hold
        as many copies as configurations. The stack is made on the device, each array
        written into it in place, so no second copy is made on the host.
        """
        import jax

        distinct: dict[int, int] = {}
        unique, source = [], []
        for array in arrays:
            if id(array) not in distinct:
                distinct[id(array)] = len(unique)
                unique.append(array)
            source.append(distinct[id(array)])
        rows = max(len(a) for a in unique) if rows is None else rows
        width = self.width or max(np.shape(a)[1] for a in unique)
        whole = None if self.sharding is None else jax.sharding.NamedSharding(
            self.sharding.mesh, jax.sharding.PartitionSpec())
        stacked = jax.numpy.zeros((len(unique), rows, width), dtype="float32")
        if whole is not None:
            stacked = jax.device_put(stacked, whole)
        for k, array in enumerate(unique):
            stacked = _write_rows(stacked, np.asarray(array, dtype="float32")[:rows], k)
        return stacked, np.asarray(source, dtype="int32")

    @staticmethod
    def _parts(model):
        return (model.trainable_variables, model.non_trainable_variables,
                model.optimizer.variables, model.metrics_variables)

    def _state_of(self, model):
        """A member's state in the leader's shapes (zero-padded where the leader is wider)."""
        parts = []
        for index, (own, shapes) in enumerate(zip(self._parts(model), self.shapes,
                                                  strict=False)):
            if index == 3 and model is not self.leader:  # metrics: the leader's own
                own = self._parts(self.leader)[3]
            parts.append([_padded(v.value, shape) for v, shape in zip(own, shapes,
                                                                      strict=True)])
        return tuple(parts)

    # ----- the traced functions ---------------------------------------------------------
    def _set_data(self, keep, l2):
        """Hand this member's data-valued settings to the layers being traced."""
        for layer, value in zip(self.dropouts, keep, strict=True):
            object.__setattr__(layer, "keep", value)  # past Keras' attribute tracking
        for penalty, value in zip([p for p in self.penalties if p is not None], l2,
                                  strict=True):
            penalty.factor = value

    def _step(self, state, x, y, weight, rows, keep, l2, masks):
        import jax
        import jax.numpy as jnp

        model = self.leader
        self._set_data(keep, l2)
        tv, ntv, ov, mv = state
        grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)
        (_, aux), grads = grad_fn(tv, ntv, mv, x, y, weight, training=True,
                                  optimizer_variables=ov)
        unscaled, _, ntv2, _ = aux
        if masks is not None:  # padding learns nothing
            grads = [jnp.where(m > 0, g, jnp.zeros_like(g)) for g, m in zip(grads, masks,
                                                                          strict=True)]
        tv2, ov2 = model.optimizer.stateless_apply(ov, grads, tv)
        if masks is not None:
            tv2 = [jnp.where(m > 0, new, old) for new, old, m in zip(tv2, tv, masks,
                                                                    strict=True)]
        active = rows > 0
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b),
                                     (tv2, ntv2, ov2), (tv, ntv, ov))
        return (*new, mv), unscaled

    def _epoch(self, state, x, source, y, index, weight, rows, tail, keep, l2, masks):
        import jax

        def take(data, idx):
            return data[idx]

        def take_rows(s, idx):  # a member's rows out of the shared ones
            return x[s, idx]

        step = jax.vmap(self._step)

        def body(carry, number):
            xb = jax.vmap(take_rows)(source, index[:, number])
            yb = jax.vmap(take)(y, index[:, number])
            wb = weight[:, number]
            if self.batch_sharding is not None:  # each device a share of the batch's rows
                xb, yb, wb = (jax.lax.with_sharding_constraint(v, self.batch_sharding)
                              for v in (xb, yb, wb))
            return step(carry, xb, yb, wb, rows[:, number], keep, l2, masks)

        losses = None
        if index.shape[1]:  # none when every member has fewer rows than a batch
            state, losses = jax.lax.scan(body, state, jax.numpy.arange(index.shape[1]))
        if tail is None:
            return state, losses
        ones = jax.numpy.ones(tail.shape, dtype=weight.dtype)
        count = jax.numpy.full(tail.shape[:1], tail.shape[1], dtype=rows.dtype)
        state, last = step(state, jax.vmap(take_rows)(source, tail),
                           jax.vmap(take)(y, tail), ones, count, keep, l2, masks)
        if losses is None:
            return state, last[None]
        return state, jax.numpy.concatenate([losses, last[None]])

    def _evaluate(self, tv, ntv, mv, x, y, weight, keep, l2):
        self._set_data(keep, l2)
        loss, _ = self.leader.compute_loss_and_updates(tv, ntv, mv, x, y, weight,
                                                       training=False)
        return loss

    def _evaluate_all(self, tv, ntv, mv, x, source, y, weight, keep, l2):
        """Every member's loss on its own rows of the shared ``x``, a chunk at a time.

        Keras' loss is a mean over the rows given (the weights make it the mean over the
        real ones), so the mean of equal chunks' losses is the loss of all the rows, while
        only one chunk's activations are held at once.
        """
        import jax

        size = min(EVALUATE_ROWS, y.shape[1])

        def chunk(number):
            start = number * size
            xs = jax.lax.dynamic_slice_in_dim(x, start, size, axis=1)
            ys = jax.lax.dynamic_slice_in_dim(y, start, size, axis=1)
            ws = jax.lax.dynamic_slice_in_dim(weight, start, size, axis=1)

            def one(tv, ntv, mv, s, y, weight, keep, l2):
                rows = jax.lax.dynamic_index_in_dim(xs, s, keepdims=False)
                return self._evaluate(tv, ntv, mv, rows, y, weight, keep, l2)

            return jax.vmap(one)(tv, ntv, mv, source, ys, ws, keep, l2)

        return jax.lax.map(chunk, jax.numpy.arange(y.shape[1] // size)).mean(axis=0)

    def _predict(self, tv, ntv, x):
        out, _ = self.leader.stateless_call(tv, ntv, x, training=False)
        return out

    # ----- the loop -----------------------------------------------------------------------
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
        members, batch = len(self.members), self.batch
        index = np.zeros((members, steps * batch), dtype="int32")
        weight = np.zeros((members, steps * batch), dtype="float32")
        rows = np.zeros((members, steps), dtype="int32")
        for k, order in enumerate(orders):
            used = min(len(order), steps * batch)
            full, rest = divmod(used, batch)
            index[k, :used] = order[:used]
            weight[k, :full * batch] = 1.0  # batch / batch
            rows[k, :full] = batch
            if rest:  # the last, shorter batch: its mean over its own rows
                weight[k, full * batch:used] = batch / rest
                rows[k, full] = rest
        return (index.reshape(members, steps, batch), weight.reshape(members, steps, batch),
                rows, tail)

    def run_epoch(self, epoch: int) -> None:
        """One epoch of every member; sets ``last_losses`` (epoch, stop- and test-row losses)."""
        index, weight, rows, tail = self._order(epoch)
        if self.sharding is not None:
            index, weight, placed_rows, tail = self._placed(index, weight, rows, tail)
        else:
            placed_rows = rows
        self.state, losses = self.epoch_fn(self.state, self.x, self.source, self.y, index,
                                           weight, placed_rows, tail, self.keep, self.l2,
                                           self.masks)
        losses = np.asarray(losses, dtype="float64")  # (steps, members)
        if tail is not None:
            rows = np.concatenate([rows, np.full((len(rows), 1), tail.shape[1])], axis=1)
        counts = rows.T.astype("float64")
        with np.errstate(invalid="ignore"):
            epoch_loss = (losses * counts).sum(axis=0) / counts.sum(axis=0)
        val = test = None
        tv, ntv, _, mv = self.state
        if self.stopping:
            val = np.asarray(self.evaluate_fn(tv, ntv, mv, self.x_stop, self.source_stop,
                                              self.y_stop, self.w_stop, self.keep, self.l2),
                             dtype="float64")
        if self.tested:  # the validation fold's loss, as Keras' evaluate computes it
            test = np.asarray(self.evaluate_fn(tv, ntv, mv, self.x_test, self.source_test,
                                               self.y_test, self.w_test, self.keep, self.l2),
                              dtype="float64")
        self.last_losses = (epoch_loss, val, test)

    def weights_of(self, k: int) -> list[np.ndarray]:
        """Member ``k``'s own trainable and non-trainable values (what early stopping keeps)."""
        own = self.own_shapes[k]
        return ([_own(v[k], s) for v, s in zip(self.state[0], own[0], strict=True)]
                + [_own(v[k], s) for v, s in zip(self.state[1], own[1], strict=True)])

    def member_state(self, k: int, stopping: _EarlyStopping) -> dict:
        """Member ``k``'s state after the last epoch run, to continue from (own shapes)."""
        own = self.own_shapes[k]
        member = self.members[k]
        return {"fingerprint": member_fingerprint(member), "epochs": len(
                    stopping.histories[k]["loss"]), "history": stopping.histories[k],
                "parts": [[_own(v[k], s) for v, s in zip(self.state[p], own[p], strict=True)]
                          for p in range(3)]}

    def continue_from(self, stopping: _EarlyStopping) -> int:
        """Load each member's ``initial`` state; return the epoch they all continue from."""
        import jax

        epochs = {int(m.initial["epochs"]) for m in self.members}
        if len(epochs) != 1:
            raise ValueError(f"states after different epochs {sorted(epochs)} cannot continue "
                             "in one pack")
        leaves = [list(part) for part in self.state]
        for k, member in enumerate(self.members):
            state = member.initial
            if state["fingerprint"] != member_fingerprint(member):
                raise ValueError(f"member {k}'s state was made from other data, seed or "
                                 "model options")
            for p in range(3):
                if [tuple(np.shape(v)) for v in state["parts"][p]] != list(
                        self.own_shapes[k][p]):
                    raise ValueError(f"member {k}'s state does not fit its model's shapes")
                for i, value in enumerate(state["parts"][p]):
                    stacked = np.array(leaves[p][i])
                    stacked[k] = _padded(value, stacked.shape[1:])
                    leaves[p][i] = stacked
            stopping.histories[k] = {key: list(values)
                                     for key, values in state["history"].items()}
        self.state = jax.tree_util.tree_map(np.asarray, tuple(leaves))
        return epochs.pop()

    def run(self, predict: list[np.ndarray] | None, keep_state: bool = False) -> list[Trained]:
        """Train every epoch; put each member's final weights in its model."""
        started = time.perf_counter()
        stopping = _EarlyStopping(self.members)
        fingerprint = self._fingerprint()
        continued = (self.continue_from(stopping)
                     if self.members[0].initial is not None else 0)
        restored = self._restore(fingerprint, stopping)
        if self.sharding is not None:
            (self.state,) = self._placed(self.state)
        for epoch in range(restored or continued, int(self.spec["epochs"])):
            self.run_epoch(epoch)
            stopping.update(epoch, self)
            self._save(fingerprint, stopping, epoch + 1)
            if stopping.all_stopped():
                break
        fit_time = time.perf_counter() - started
        states = ([self.member_state(k, stopping) for k in range(len(self.members))]
                  if keep_state else [None] * len(self.members))
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
                        len(self.members), restored, continued, states[k], self.program,
                        self.spread)
                for k in range(len(self.members))]

    def _outputs(self, finals: list[list], predict: list[np.ndarray]) -> list:
        """Every member's raw outputs on its ``predict`` rows (``finals``: its weights)."""
        trainable = len(self.shapes[0])
        tv = [np.stack([_padded(f[j], shape) for f in finals])
              for j, shape in enumerate(self.shapes[0])]
        ntv = [np.stack([_padded(f[trainable + j], shape) for f in finals])
               for j, shape in enumerate(self.shapes[1])]
        longest = max(len(p) for p in predict)
        outputs = [[] for _ in predict]
        for start in range(0, max(longest, 1), PREDICT_ROWS):
            chunk = _stacked([p[start:start + PREDICT_ROWS] for p in predict],
                             rows=min(PREDICT_ROWS, max(longest - start, 1)), width=self.width)
            out = np.asarray(self.predict_fn(tv, ntv, chunk))
            for k, p in enumerate(predict):
                outputs[k].append(out[k, :max(0, min(PREDICT_ROWS, len(p) - start))])
        return [np.concatenate(parts) for parts in outputs]

    # ----- checkpoints --------------------------------------------------------------------
    def _fingerprint(self) -> str:
        digest = hashlib.sha256(self.program.encode())
        for member in self.members:
            digest.update(member_fingerprint(member).encode())
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
        try:
            with np.load(self.checkpoint) as arrays:
                if str(arrays["fingerprint"]) != fingerprint:
                    return 0
                leaves, tree = jax.tree_util.tree_flatten(self.state)
                self.state = jax.tree_util.tree_unflatten(
                    tree, [arrays[f"state_{i}"] for i in range(len(leaves))])
                stopping.from_arrays(arrays)
                return int(arrays["epochs"])
        except (OSError, ValueError, KeyError):
            return 0  # an unreadable checkpoint: start over rather than fail


def member_fingerprint(member: Member) -> str:
    """What a member's state must have been made from to be continued (not ``epochs``)."""
    digest = hashlib.sha256()
    spec = {k: v for k, v in member.spec.items() if k != "epochs"}
    digest.update(json.dumps([member.seed, member.key, spec], sort_keys=True,
                             default=repr).encode())
    for array in (member.x_fit, member.y_fit, member.x_stop, member.y_stop):
        if array is not None:
            digest.update(_array_digest(array))
    return digest.hexdigest()


_DIGESTS: dict[int, tuple] = {}


def _array_digest(array: np.ndarray) -> bytes:
    """SHA-256 of an array's bytes, computed once for an array many members share."""
    found = _DIGESTS.get(id(array))
    if found is not None and found[0]() is array:
        return found[1]
    digest = hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).digest()
    try:
        _DIGESTS[id(array)] = (weakref.ref(array), digest)
    except TypeError:  # not an object a weak reference can point to: no cache
        pass
    return digest


def save_state(state: dict, path: str) -> None:
    """Write a member's state (``Trained.state``) as ``.npz``: a temp file, then a rename."""
    arrays = {"fingerprint": np.array(state["fingerprint"]),
              "epochs": np.array(state["epochs"]),
              "history": np.array(json.dumps(state["history"]))}
    for p, part in enumerate(state["parts"]):
        arrays.update({f"part{p}_{i}": np.asarray(v) for i, v in enumerate(part)})
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = path + ".partial.npz"
    np.savez(partial, **arrays)
    os.replace(partial, path)


def load_state(path) -> dict:
    """A member's state as :func:`save_state` wrote it (a path or a binary file object)."""
    with np.load(path) as arrays:
        def numbered(prefix: str) -> list[np.ndarray]:
            names = sorted((n for n in arrays.files if n.startswith(prefix)),
                           key=lambda n: int(n.rsplit("_", 1)[1]))
            return [arrays[n] for n in names]

        return {"fingerprint": str(arrays["fingerprint"]), "epochs": int(arrays["epochs"]),
                "history": json.loads(str(arrays["history"])),
                "parts": [numbered(f"part{p}_") for p in range(3)]}


def _placement(members: int, batch: int):
    """How a group spreads over several devices: ``(spread, arrays, batch rows)``.

    Members share nothing, so with as many members as a multiple of the devices (GPUs, TPU
    cores) each device trains its share of them, with no traffic between them
    (``"members"``). Otherwise, where the batch divides among the devices, the state and
    the rows stay whole on every device and each step's batch is cut by rows (``"batch"``):
    data parallelism, XLA summing the gradients over the devices, which is how one large
    model (a refit, a lone configuration) uses every GPU. On one device, ``("", None, None)``.
    """
    import jax

    devices = jax.devices()
    if len(devices) < 2:
        return "", None, None
    if members % len(devices) == 0:
        mesh = jax.sharding.Mesh(np.array(devices), ("members",))
        return "members", jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec("members")), None
    if batch % len(devices):
        return "", None, None
    mesh = jax.sharding.Mesh(np.array(devices), ("rows",))
    return ("batch", jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
            jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "rows")))


def _stacked(arrays: list[np.ndarray], rows: int | None = None,
             width: int | None = None) -> np.ndarray:
    """Arrays stacked on a new axis, zero-padded to ``rows`` (the longest) and ``width``."""
    rows = max(len(a) for a in arrays) if rows is None else rows
    first = np.asarray(arrays[0])
    tail = tuple(max(np.shape(a)[i] for a in arrays) for i in range(1, first.ndim))
    if width is not None and tail:
        tail = (width, *tail[1:])
    out = np.zeros((len(arrays), rows, *tail), dtype=first.dtype)
    for k, array in enumerate(arrays):
        array = np.asarray(array)[:rows]
        out[(k, slice(0, len(array)), *[slice(0, n) for n in array.shape[1:]])] = array
    return out


def _write_rows(stacked, array: np.ndarray, k: int):
    """``array`` written into ``stacked[k]`` at its top-left corner, in place (donated)."""
    return _row_writer()(stacked, array, k)


@functools.cache
def _row_writer():
    import jax

    return jax.jit(lambda buffer, rows, at: jax.lax.dynamic_update_slice(
        buffer, rows[None], (at, 0, 0)), donate_argnums=0)


def _chunked(rows: int) -> int:
    """``rows`` padded up to whole chunks of ``EVALUATE_ROWS`` (as they are when fewer)."""
    if rows <= EVALUATE_ROWS:
        return rows
    return -(-rows // EVALUATE_ROWS) * EVALUATE_ROWS


def _weights(counts: list[int], rows: int) -> np.ndarray:
    """Sample weights over padded rows: ``rows / real`` on real rows, 0 on padding."""
    weight = np.zeros((len(counts), rows), dtype="float32")
    for k, n in enumerate(counts):
        weight[k, :n] = rows / max(n, 1)
    return weight
