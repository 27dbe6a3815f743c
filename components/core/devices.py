"""Where training runs: the devices a step finds, and the precision it trains in.

The one engine (``core.training.vmapped``) trains under Keras' JAX backend on the devices JAX finds
(:func:`jax_placement`): the CPU, one or several GPUs (the GPU image's ``jax[cuda12]``),
or a TPU (``libtpu``). Over several devices a pack spreads by member, or, where its members
do not divide among them (one large model), each batch's rows are cut among the devices
(data parallelism; ``training.vmapped._placement``). Mixed precision uses float16 on GPUs and
bfloat16 elsewhere.

Keras' own ``fit`` under TensorFlow (a user's builder that runs TensorFlow operations)
picks a TensorFlow strategy (:func:`tensorflow_placement`): TPU → ``TPUStrategy``; several
GPUs → ``MirroredStrategy``; one GPU → that GPU with memory growth; otherwise the CPU.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def tensorflow_placement(gpus: int, tpu: bool, mixed_precision: bool) -> dict:
    """Decide strategy and precision from what was found (pure, so every case is testable)."""
    if tpu:
        placement = {"device": "tpu", "strategy": "tpu", "replicas": None}
    elif gpus > 1:
        placement = {"device": "gpu", "strategy": "mirrored", "replicas": gpus}
    elif gpus == 1:
        placement = {"device": "gpu", "strategy": "one_device", "replicas": 1}
    else:
        placement = {"device": "cpu", "strategy": "default", "replicas": 1}
    if mixed_precision:
        gpu = placement["device"] == "gpu"
        placement["precision"] = "mixed_float16" if gpu else "mixed_bfloat16"
    else:
        placement["precision"] = "float32"
    return placement


def jax_placement(platforms: list[str], mixed_precision: bool) -> dict:
    """The placement under Keras' JAX backend, from the platforms of ``jax.devices()``."""
    kind = platforms[0] if platforms else "cpu"
    placement = {"device": kind, "replicas": max(len(platforms), 1),
            "strategy": "jax_data_parallel" if len(platforms) > 1 else "jax_one_device"}
    if mixed_precision:
        placement["precision"] = "mixed_float16" if kind == "gpu" else "mixed_bfloat16"
    else:
        placement["precision"] = "float32"
    return placement


class _NoScope:
    """Stands in for a TensorFlow strategy where Keras places variables itself (JAX)."""

    def scope(self):
        from contextlib import nullcontext

        return nullcontext()


def tpu_present() -> bool:
    """Whether this machine (a GKE TPU node or TPU VM) exposes TPU chips."""
    return bool(list(Path("/dev").glob("accel*")) or list(Path("/dev/vfio").glob("[0-9]*"))
                or os.environ.get("TPU_NAME"))


def describe_devices(mixed_precision: bool = False) -> dict:
    """The placement for the devices this process sees; one GPU is set to grow its memory."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    placement = tensorflow_placement(len(gpus), tpu_present(), mixed_precision)
    if placement["strategy"] == "one_device":
        try:
            tf.config.experimental.set_memory_growth(gpus[0], True)
        except RuntimeError:
            pass  # already initialized: the setting was made earlier in this process
    return placement


@contextmanager
def training_devices(mixed_precision: bool = False, distribute: bool = True):
    """Yield ``(strategy, placement)``; the precision policy is restored afterwards.

    ``distribute=False`` (the one engine, which places its packed state itself): under JAX,
    no Keras distribution is set, only the precision.
    """
    import keras

    if keras.backend.backend() == "jax":
        import jax

        devices = jax.devices()
        placement = jax_placement([d.platform for d in devices], mixed_precision)
        previous_distribution = keras.distribution.distribution()
        previous = keras.mixed_precision.global_policy().name
        if placement["replicas"] > 1 and distribute:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices))
        keras.mixed_precision.set_global_policy(placement["precision"])
        try:
            yield _NoScope(), placement
        finally:
            keras.distribution.set_distribution(previous_distribution)
            keras.mixed_precision.set_global_policy(previous)
        return

    import tensorflow as tf

    placement = describe_devices(mixed_precision)
    if placement["strategy"] == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
        placement["replicas"] = strategy.num_replicas_in_sync
    elif placement["strategy"] == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif placement["strategy"] == "one_device":
        strategy = tf.distribute.OneDeviceStrategy("/gpu:0")
    else:
        strategy = tf.distribute.get_strategy()
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(placement["precision"])
    try:
        yield strategy, placement
    finally:
        keras.mixed_precision.set_global_policy(previous)
