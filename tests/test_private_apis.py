"""Every private API foldwise patches or calls, one entry each, checked against the pins.

A library may change what it does not promise in any release. Each entry below names the
private name, where foldwise uses it and why, and checks exactly what foldwise relies on, so
that a version bump fails here, by name, rather than somewhere in a run:

- kfp ``kfp.local.task_dispatcher.run_single_task_implementation``, replaced during a run
  (pipelines/engine.py): one progress line per task, and no new task after Ctrl-C.
- kfp ``kfp.local.docker_task_handler.run_docker_container``, replaced during a container run
  (pipelines/containers.py): kfp's auto-removes each container and counts one that vanished
  before its status was read as a success; foldwise's keeps the step's exit status.
- google-cloud-storage's ``DEFAULT_RETRY._predicate`` (components/storage.py): which errors
  the library retries, wrapped so that the first one starts the outage's shared deadline.
- kfp ``kfp.dsl.pipeline_task.inspect``, replaced while a step is set up
  (pipelines/dags/cluster.py): kfp's ``inspect.stack()`` reads every frame's source, 2.5 s per
  pipeline built.
- kfp ``kfp.Client._uihost`` (pipelines/submit.py): the link to a submitted run.
- keras ``keras.src.backend.common.global_state``, ``keras.src.utils.rng_utils`` and
  ``keras.src.random.seed_generator``'s global names (components/core/models/estimators.py): seeding
  Keras under JAX without importing TensorFlow, which ``keras.utils.set_random_seed`` does.
- keras ``keras.src.backend.jax.random.jax_draw_seed`` (components/core/training/vmapped.py): the
  data-valued dropout draws its masks as Keras' own ``Dropout`` does.
- keras ``keras.src.utils.module_utils.tensorflow`` (components/core/models/tensorflow_standin.py):
  Keras must find TensorFlow absent before the stand-in answers ``tensorflow.keras``.
- keras ``Model._flatten_layers`` and ``Model._symbolic_build`` (core/training/vmapped.py):
  a model's layers in order; its metrics, loss and optimizer state built as ``fit`` builds them.
- keras ``JAXTrainer.compute_loss_and_updates`` (core/training/vmapped.py): one step's loss
  and gradients, exactly as Keras' ``fit`` computes them.
"""

import inspect

import pytest


def test_kfp_local_runs_each_task_through_one_replaceable_function():
    from kfp.local import task_dispatcher
    from kfp.local.orchestrator import task_executor

    parameters = inspect.signature(task_dispatcher.run_single_task_implementation).parameters
    assert {"component_name", "arguments"} <= set(parameters)  # what the engine reads
    assert "Tuple" in str(inspect.signature(
        task_dispatcher.run_single_task_implementation).return_annotation)  # (outputs, status)
    # found through the module at call time, so replacing the attribute reaches every task
    assert "task_dispatcher.run_single_task_implementation(" in inspect.getsource(
        task_executor)


def test_kfp_local_starts_each_container_through_one_replaceable_function():
    from kfp.local import docker_task_handler

    parameters = inspect.signature(docker_task_handler.run_docker_container).parameters
    assert list(parameters)[:4] == ["client", "image", "command", "volumes"]
    source = inspect.getsource(docker_task_handler.DockerTaskHandler.run)
    # called by its module-level name, with the task's environment among the run arguments,
    # and its return value taken as the exit status
    assert source.count("return_code = run_docker_container(") == 2
    assert "container_run_args['environment'] = self.env_vars" in source
    assert "status.Status.SUCCESS if return_code == 0" in source


def test_kfp_pipeline_task_looks_up_its_caller_through_the_inspect_module():
    from kfp.dsl import pipeline_task

    assert pipeline_task.inspect is inspect
    assert "inspect.stack()" in inspect.getsource(pipeline_task)


def test_kfp_client_keeps_its_ui_host():
    import kfp

    assert "self._uihost" in inspect.getsource(kfp.Client.__init__)


def test_keras_keeps_its_global_seed_state_where_foldwise_sets_it():
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    assert isinstance(rng_utils.GLOBAL_RANDOM_SEED, str)
    assert isinstance(seed_generator.GLOBAL_SEED_GENERATOR, str)
    saved = global_state.get_global_attribute(rng_utils.GLOBAL_RANDOM_SEED)
    try:
        global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, 1234)
        assert rng_utils.get_random_seed() == 1234
    finally:
        global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, saved)


def test_keras_jax_backend_draws_seeds_as_the_data_valued_dropout_expects():
    from keras.src.backend.jax import random as jax_random

    assert list(inspect.signature(jax_random.jax_draw_seed).parameters) == ["seed"]
    assert "jax_draw_seed(seed)" in inspect.getsource(jax_random.dropout)


def test_keras_asks_whether_tensorflow_is_available_through_module_utils():
    from keras.src.utils import module_utils

    assert hasattr(type(module_utils.tensorflow), "available")
    assert module_utils.tensorflow.name == "tensorflow"


@pytest.mark.parametrize("name, parameters", [
    ("_flatten_layers", ["self", "include_self", "recursive"]),
    ("_symbolic_build", ["self", "iterator", "data_batch"]),
])
def test_keras_models_keep_the_private_methods_the_engine_calls(name, parameters):
    import keras

    assert list(inspect.signature(getattr(keras.Model, name)).parameters) == parameters


def test_keras_jax_trainer_computes_a_steps_loss_and_updates_statelessly():
    from keras.src.backend.jax.trainer import JAXTrainer

    assert list(inspect.signature(JAXTrainer.compute_loss_and_updates).parameters) == [
        "self", "trainable_variables", "non_trainable_variables", "metrics_variables", "x",
        "y", "sample_weight", "training", "optimizer_variables"]


def test_google_cloud_storage_keeps_its_retry_predicate():
    from google.api_core import exceptions
    from google.cloud.storage.retry import DEFAULT_RETRY

    predicate = DEFAULT_RETRY._predicate
    assert predicate(exceptions.ServiceUnavailable("x")) and predicate(ConnectionError())
    assert not predicate(exceptions.NotFound("x"))
    assert DEFAULT_RETRY.with_predicate(predicate)._predicate is predicate
