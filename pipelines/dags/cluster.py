"""How each step runs on a cluster: image, CPU and memory, accelerators, retries, caching.

Set in the pipelines, never inside components. The same settings compile for Kubeflow
Pipelines on GKE (resource requests plus GKE node selectors and tolerations, through
kfp-kubernetes) or for Vertex AI Pipelines (Vertex accelerator types); kfp.local ignores
resources and accelerators.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import sys
from dataclasses import dataclass

from foldwise.components.core import options
from foldwise.components.core.data.table import suggest
from foldwise.components.core.errors import FoldwiseError

# User name → (GKE node label value, Vertex AI accelerator type).
GPUS = {
    "nvidia-t4": ("nvidia-tesla-t4", "NVIDIA_TESLA_T4"),
    "nvidia-l4": ("nvidia-l4", "NVIDIA_L4"),
    "nvidia-v100": ("nvidia-tesla-v100", "NVIDIA_TESLA_V100"),
    "nvidia-a100": ("nvidia-tesla-a100", "NVIDIA_TESLA_A100"),
    "nvidia-a100-80gb": ("nvidia-a100-80gb", "NVIDIA_A100_80GB"),
    "nvidia-h100": ("nvidia-h100-80gb", "NVIDIA_H100_80GB"),
}
TPUS = {
    "tpu-v5e": ("tpu-v5-lite-podslice", "TPU_V5_LITEPOD"),
    "tpu-v4": ("tpu-v4-podslice", "TPU_V4_POD"),
}
KNOWN = ["cpu", *GPUS, *TPUS]
PLATFORMS = options.choices("platform")
TRAINING_STEPS = ("train", "refit")
# Steps that read something outside the pipeline (the data, the promoted model) or write
# outside it are never served from cache: a scheduled retrain on changed data recomputes.
UNCACHED_STEPS = ("preprocess", "export", "champion", "promote")
# A retried train task resumes from its last finished epoch (core.training.vmapped checkpoints).
RETRY = {"num_retries": 3, "backoff_factor": 2.0, "backoff_max_duration": "600s"}


@dataclass(frozen=True)
class Accelerator:
    """An accelerator request: ``nvidia-l4:1``, ``tpu-v5e:4`` with topology ``2x2``."""

    name: str
    count: int
    topology: str | None = None

    @property
    def is_tpu(self) -> bool:
        """Whether this is a TPU slice."""
        return self.name in TPUS

    @property
    def gke_label(self) -> str:
        """The GKE node label value that selects this accelerator."""
        return (TPUS if self.is_tpu else GPUS)[self.name][0]

    @property
    def vertex_type(self) -> str:
        """The Vertex AI accelerator type."""
        return (TPUS if self.is_tpu else GPUS)[self.name][1]


def parse_accelerator(text: str, topology: str | None = None) -> Accelerator | None:
    """``cpu`` → ``None``; ``NAME[:COUNT]`` → an :class:`Accelerator`, checked.

    Raises:
        FoldwiseError: An unknown name (the known ones are listed), a bad count, or a TPU
            topology missing or not matching the chip count.
    """
    name, _, count_text = text.strip().lower().partition(":")
    if name == "cpu":
        if topology:
            raise FoldwiseError("--tpu-topology goes with a TPU --accelerator, not cpu")
        return None
    if name not in GPUS and name not in TPUS:
        raise FoldwiseError(
            f"unknown accelerator {name!r}{suggest(name, KNOWN)}; known: {', '.join(KNOWN)} "
            "(as NAME:COUNT, e.g. nvidia-l4:1)")
    if count_text and not count_text.isdigit() or count_text == "0":
        raise FoldwiseError(f"accelerator count must be a positive whole number, got "
                            f"{count_text!r} in {text!r}")
    count = int(count_text or 1)
    if name in TPUS:
        if not topology or not re.fullmatch(r"\d+x\d+(x\d+)?", topology):
            raise FoldwiseError(
                f"{name} needs --tpu-topology such as 2x2 (chips per dimension), got "
                f"{topology!r}")
        chips = math.prod(int(part) for part in topology.split("x"))
        if chips != count:
            raise FoldwiseError(
                f"--tpu-topology {topology} has {chips} chips but {text!r} asks for {count}: "
                f"use {name}:{chips}")
    elif topology:
        raise FoldwiseError("--tpu-topology goes with a TPU --accelerator")
    return Accelerator(name, count, topology)


@dataclass(frozen=True)
class ClusterSettings:
    """Per-step settings compiled into a pipeline.

    Attributes:
        image: Image of every step (``None``: the components' default image).
        accelerator: Accelerator of the training steps (train, refit), or ``None`` for CPU.
        platform: ``kfp`` (Kubeflow Pipelines on GKE) or ``vertex`` (Vertex AI Pipelines).
        train_cpu, train_memory: CPU and memory requested by training steps.
        step_cpu, step_memory: CPU and memory requested by every other step.
        retry_backoff: Wait before the first retry of a training step (doubling after).
        retries: Whether training steps are retried. On a cluster a retry resumes a pre-empted
            step from its checkpoint; on this machine nothing pre-empts a step, and a step that
            failed would fail again, so the embedded engine runs without (:data:`LOCAL`).
    """

    image: str | None = None
    accelerator: Accelerator | None = None
    platform: str = "kfp"
    train_cpu: str = "2"
    train_memory: str = "8G"
    step_cpu: str = "1"
    step_memory: str = "4G"
    retry_backoff: str = "30s"
    retries: bool = True

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise FoldwiseError(f"--platform must be one of {', '.join(PLATFORMS)}, got "
                                f"{self.platform!r}")

    def apply(self, task, step: str):
        """Name ``task`` after its step and set it up for that step.

        Image, resources, accelerator, retries and caching follow the step's name.
        """
        with _cheap_caller_lookup():
            return self._apply(task, step)

    def _apply(self, task, step: str):
        from kfp import kubernetes

        task.set_display_name(step)
        if self.image:
            task.set_container_image(self.image)
        training = step in TRAINING_STEPS
        cpu, memory = ((self.train_cpu, self.train_memory) if training
                       else (self.step_cpu, self.step_memory))
        task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
        task.set_caching_options(step not in UNCACHED_STEPS)
        if not training:
            return task
        if self.retries:
            task.set_retry(**RETRY, backoff_duration=self.retry_backoff)
        accelerator = self.accelerator
        if accelerator is None:
            return task
        if self.platform == "vertex":
            task.set_accelerator_type(accelerator.vertex_type)
            task.set_accelerator_limit(accelerator.count)
        elif accelerator.is_tpu:
            task.set_accelerator_type("google.com/tpu").set_accelerator_limit(accelerator.count)
            kubernetes.add_node_selector(task, "cloud.google.com/gke-tpu-accelerator",
                                         accelerator.gke_label)
            kubernetes.add_node_selector(task, "cloud.google.com/gke-tpu-topology",
                                         accelerator.topology)
            kubernetes.add_toleration(task, key="google.com/tpu", operator="Exists",
                                      effect="NoSchedule")
        else:
            task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(accelerator.count)
            kubernetes.add_node_selector(task, "cloud.google.com/gke-accelerator",
                                         accelerator.gke_label)
            kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists",
                                      effect="NoSchedule")
        return task


class _CallerOnly:
    """``inspect`` as kfp's task setters use it: ``stack()`` without reading source files.

    kfp's ``PipelineTask`` setters (``set_cpu_request``, ``set_memory_*``, ...) each call
    ``inspect.stack()`` only to name the calling method in an error message; that reads every
    frame's source file (about 70 ms a call here), 2.5 s of building one pipeline. This
    ``stack`` returns the same frames, names and line numbers with no context lines.
    """

    def __getattr__(self, name):
        return getattr(inspect, name)

    @staticmethod
    def stack(context: int = 1) -> list:
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            frames.append(inspect.FrameInfo(frame, frame.f_code.co_filename, frame.f_lineno,
                                            frame.f_code.co_name, None, None))
            frame = frame.f_back
        return frames


@contextlib.contextmanager
def _cheap_caller_lookup():
    """Let kfp's task setters find their caller's name cheaply while a step is set up."""
    from kfp.dsl import pipeline_task

    saved = pipeline_task.inspect
    pipeline_task.inspect = _CallerOnly()
    try:
        yield
    finally:
        pipeline_task.inspect = saved


LOCAL = ClusterSettings(retries=False)
