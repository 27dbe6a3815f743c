"""The compiled pipeline's structure: what a cluster and kfp.local will execute."""

import pytest
import yaml
from kfp import compiler

from foldwise.components.image import IMAGE
from foldwise.pipelines.cross_validation import cross_validation


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ir") / "cross_validation.yaml"
    compiler.Compiler().compile(cross_validation, str(path))
    return yaml.safe_load(path.read_text())


def loop_of(ir):
    tasks = ir["root"]["dag"]["tasks"]
    (name,) = [n for n, t in tasks.items() if "parameterIterator" in t]
    return tasks[name], ir["components"][tasks[name]["componentRef"]["name"]]


def test_dag_shape_preprocess_fold_loop_aggregate(ir):
    tasks = ir["root"]["dag"]["tasks"]
    loop_task, loop = loop_of(ir)
    assert loop_task["taskInfo"]["name"] == "folds"
    assert {n for n in tasks if n != "preprocess" and n != "aggregate"} == {
        n for n in tasks if n.startswith("for-loop")}
    assert len(tasks) == 3
    assert set(loop["dag"]["tasks"]) == {"scale", "one-hot-encode", "train"}
    assert loop_task["parameterIterator"]["items"]["inputParameter"].endswith(
        "preprocess-Output")
    assert loop["dag"]["tasks"]["one-hot-encode"]["dependentTasks"] == ["scale"]
    assert loop["dag"]["tasks"]["train"]["dependentTasks"] == ["one-hot-encode"]


def test_no_task_in_the_loop_reads_another_tasks_parameter_output(ir):
    """kfp.local replaces such inputs with the loop item: only artifacts may flow in."""
    _, loop = loop_of(ir)
    for name, task in loop["dag"]["tasks"].items():
        for key, source in task["inputs"].get("parameters", {}).items():
            assert "taskOutputParameter" not in source, (name, key)
    fold_inputs = {t["inputs"]["parameters"]["fold"]["componentInputParameter"]
                   for t in loop["dag"]["tasks"].values()}
    assert len(fold_inputs) == 1 and fold_inputs.pop().endswith("loop-item")


def test_fold_results_fan_in_as_parameters_not_artifacts(ir):
    aggregate = ir["root"]["dag"]["tasks"]["aggregate"]["inputs"]
    assert aggregate["parameters"]["fold_results"]["taskOutputParameter"][
        "producerTask"].startswith("for-loop")
    assert set(aggregate["artifacts"]) == {"schema"}


def test_every_step_runs_the_foldwise_image_and_installs_nothing(ir):
    executors = ir["deploymentSpec"]["executors"]
    assert set(executors) == {f"exec-{n}" for n in
                              ("preprocess", "scale", "one-hot-encode", "train", "aggregate")}
    for executor in executors.values():
        container = executor["container"]
        assert container["image"] == IMAGE
        assert "pip install" not in " ".join(container["command"])


def test_pipeline_parameters_and_outputs(ir):
    parameters = ir["root"]["inputDefinitions"]["parameters"]
    assert {"data", "target", "folds", "seed", "scaler", "model_spec"} <= set(parameters)
    assert parameters["folds"]["defaultValue"] == 5
    assert not parameters["data"].get("isOptional", False)
    assert set(ir["root"]["outputDefinitions"]["artifacts"]) == {"cv_results", "summary",
                                                                 "folds"}


def test_train_outputs_model_metrics_and_confusion_matrix(ir):
    outputs = ir["components"]["comp-train"]["outputDefinitions"]["artifacts"]
    assert outputs["model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["classification_metrics"]["artifactType"]["schemaTitle"] == \
        "system.ClassificationMetrics"
