"""The compiled pipelines' structure: what a cluster and kfp.local will execute."""

import pytest
import yaml
from kfp import compiler

from foldwise.components.image import IMAGE
from foldwise.pipelines.dags.cross_validation import cross_validation
from foldwise.pipelines.dags.grid_search import grid_search

PIPELINES = {"cross_validation": cross_validation, "grid_search": grid_search}


def compile_ir(pipeline, folder):
    path = folder / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def ir(request, tmp_path_factory):
    return compile_ir(PIPELINES[request.param], tmp_path_factory.mktemp(request.param))


def loops(ir):
    """``{loop display name: (task in root dag, component)}``."""
    tasks = ir["root"]["dag"]["tasks"]
    return {t["taskInfo"]["name"]: (t, ir["components"][t["componentRef"]["name"]])
            for t in tasks.values() if "parameterIterator" in t}


def test_one_flat_loop_over_the_trials_after_two_transform_steps(ir):
    found = loops(ir)
    assert set(found) == {"trials"}
    trials_task, trials = found["trials"]
    assert trials_task["parameterIterator"]["items"]["inputParameter"].endswith(
        "plan-trials-Output")
    assert set(trials["dag"]["tasks"]) == {"train"}
    assert all("parameterIterator" not in t for t in trials["dag"]["tasks"].values())
    tasks = ir["root"]["dag"]["tasks"]
    # every fold's transforms in one task each: scale, then one-hot on its folder
    assert tasks["scale-folds"]["taskInfo"]["name"] == "scale"  # its display name
    assert tasks["one-hot-encode-folds"]["inputs"]["artifacts"]["scaled"][
        "taskOutputArtifact"] == {"outputArtifactKey": "scaled", "producerTask": "scale-folds"}


def test_no_task_in_a_loop_reads_another_tasks_parameter_output(ir):
    """kfp.local replaces such inputs with the loop item: only artifacts may flow in."""
    for _, component in loops(ir).values():
        for name, task in component["dag"]["tasks"].items():
            for key, source in task["inputs"].get("parameters", {}).items():
                assert "taskOutputParameter" not in source, (name, key)


def test_transforms_are_computed_once_per_fold_and_shared_by_every_trial(ir):
    _, trials = loops(ir)["trials"]
    train = trials["dag"]["tasks"]["train"]["inputs"]
    assert train["artifacts"]["fold_data"]["componentInputArtifact"].endswith(
        "one-hot-encode-folds-fold_data")
    # The task's number is the loop item; its configurations and folds are in the plan.
    assert "parameterExpressionSelector" not in train["parameters"]["trial"]
    assert train["parameters"]["trial"]["componentInputParameter"].startswith("pipelinechannel")
    assert train["artifacts"]["plan"]["componentInputArtifact"].endswith("plan-trials-plan")


def test_aggregate_measures_serving_costs_on_raw_rows_with_each_folds_preprocessing(ir):
    """The serving costs are measured in one step, on raw rows and each fold's states."""
    aggregate = ir["root"]["dag"]["tasks"]["aggregate"]["inputs"]
    assert aggregate["parameters"]["objectives"] == {"componentInputParameter": "objectives"}
    for name, producer, output in [("prepared", "preprocess", "prepared"),
                                   ("scaler_state", "scale-folds", "scaler_state"),
                                   ("encoder_state", "one-hot-encode-folds", "encoder_state")]:
        assert aggregate["artifacts"][name]["taskOutputArtifact"] == {
            "outputArtifactKey": output, "producerTask": producer}, name
    assert ir["root"]["inputDefinitions"]["parameters"]["objectives"]["defaultValue"] == ""
    # the permutation importance: the fold tables, and the switch
    assert aggregate["parameters"]["importance"] == {"componentInputParameter": "importance"}
    assert aggregate["artifacts"]["fold_data"]["taskOutputArtifact"] == {
        "outputArtifactKey": "fold_data", "producerTask": "one-hot-encode-folds"}
    assert ir["root"]["inputDefinitions"]["parameters"]["importance"]["defaultValue"] == "on"
    _, trials = loops(ir)["trials"]
    assert "objectives" not in trials["dag"]["tasks"]["train"]["inputs"]["parameters"]


def test_trial_results_fan_in_as_parameters_not_artifacts(ir):
    aggregate = ir["root"]["dag"]["tasks"]["aggregate"]["inputs"]
    assert aggregate["parameters"]["fold_results"]["taskOutputParameter"][
        "producerTask"].startswith("for-loop")
    assert set(aggregate["artifacts"]) == {"schema", "prepared", "scaler_state",
                                           "encoder_state", "fold_data"}


def test_every_step_runs_the_foldwise_image_and_installs_nothing(ir):
    for executor in ir["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert container["image"] == IMAGE
        assert "pip install" not in " ".join(container["command"])


def test_cross_validation_parameters_and_outputs(tmp_path):
    ir = compile_ir(cross_validation, tmp_path)
    parameters = ir["root"]["inputDefinitions"]["parameters"]
    assert {"data", "target", "folds", "seed", "scaler", "model_spec"} <= set(parameters)
    assert parameters["folds"]["defaultValue"] == 5
    assert not parameters["data"].get("isOptional", False)
    assert set(ir["root"]["outputDefinitions"]["artifacts"]) == {"cv_results", "summary",
                                                                 "folds", "report"}
    assert not parameters["destination"].get("isOptional", False)


def test_cross_validation_publishes_report_and_results_but_no_model(tmp_path):
    ir = compile_ir(cross_validation, tmp_path)
    tasks = ir["root"]["dag"]["tasks"]
    assert "refit" not in tasks and {"report", "export"} <= set(tasks)
    export = tasks["export"]["inputs"]
    assert set(export["artifacts"]) == {"cv_results", "summary", "page", "fold_assignment"}
    assert export["parameters"]["destination"] == {"componentInputParameter": "destination"}
    assert set(tasks["export"]["dependentTasks"]) >= {"report", "aggregate", "preprocess"}


def test_train_outputs_model_metrics_and_confusion_matrix(ir):
    outputs = ir["components"]["comp-train"]["outputDefinitions"]["artifacts"]
    assert outputs["model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["classification_metrics"]["artifactType"]["schemaTitle"] == \
        "system.ClassificationMetrics"


def test_grid_search_refits_reports_and_exports_last(tmp_path):
    ir = compile_ir(grid_search, tmp_path)
    tasks = ir["root"]["dag"]["tasks"]
    assert {"refit", "report", "export"} <= set(tasks)
    assert tasks["refit"]["inputs"]["artifacts"]["best_config"]["taskOutputArtifact"][
        "producerTask"] == "aggregate"
    assert set(tasks["export"]["dependentTasks"]) >= {"refit", "report", "aggregate"}
    assert tasks["export"]["inputs"]["parameters"]["destination"] == {
        "componentInputParameter": "destination"}
    parameters = ir["root"]["inputDefinitions"]["parameters"]
    assert parameters["param_grid"]["parameterType"] == "LIST"
    assert ir["components"]["comp-report"]["outputDefinitions"]["artifacts"]["page"][
        "artifactType"]["schemaTitle"] == "system.HTML"


@pytest.mark.parametrize("platform", ["kfp", "vertex"])
def test_halving_rungs_are_stages_of_one_static_dag(platform, tmp_path):
    from foldwise.pipelines.cli import main

    out = tmp_path / "halving.yaml"
    assert main(["compile", "halving-search", "--rungs", "3", "--accelerator", "nvidia-l4:1",
                 "--platform", platform, "--out", str(out)]) == 0
    ir = yaml.safe_load(out.read_text().split("\n---\n")[0])
    found = loops(ir)
    assert set(found) == {"trials", "trials-rung-1", "trials-rung-2"}
    tasks = ir["root"]["dag"]["tasks"]
    named = {task["taskInfo"]["name"]: key for key, task in tasks.items()}  # shown → key
    assert set(named) >= {"rung-1", "rung-2", "rung-3", "aggregate"}
    for rung in (1, 2):  # each rung's loop runs over the tasks its plan step returns
        task, component = found[f"trials-rung-{rung}"]
        assert task["parameterIterator"]["items"]["inputParameter"].endswith(
            f"{named[f'rung-{rung}']}-Output")
        (train,) = component["dag"]["tasks"].values()
        assert train["taskInfo"]["name"] == "train"
        train = train["inputs"]
        assert train["artifacts"]["plan"]["componentInputArtifact"].endswith(
            f"{named[f'rung-{rung}']}-plan")
        assert "taskOutputParameter" not in str(train.get("parameters", {}))
    collected = tasks["aggregate"]["inputs"]["parameters"]["fold_results"]
    assert collected["taskOutputParameter"]["producerTask"] == named["rung-3"]
    executors = ir["deploymentSpec"]["executors"]
    trains = [name for name in executors if name.startswith("exec-train")]
    assert len(trains) == 3  # one per rung, each on the accelerator
    for name in trains:
        assert "accelerator" in executors[name]["container"]["resources"], name
    assert "halving" in ir["root"]["inputDefinitions"]["parameters"]


def test_random_search_samples_in_its_plan_step(tmp_path):
    from foldwise.pipelines.dags.random_search import random_search

    ir = compile_ir(random_search, tmp_path)
    plan = ir["root"]["dag"]["tasks"]["plan-trials"]["inputs"]["parameters"]
    assert plan["param_distributions"]["componentInputParameter"] == "param_distributions"
    assert plan["n_iter"]["componentInputParameter"] == "n_iter"
    assert plan["seed"]["componentInputParameter"] == "seed"


@pytest.mark.parametrize("platform", ["kfp", "vertex"])
def test_bayes_rounds_are_stages_of_one_static_dag(platform, tmp_path):
    """Each stage: a next_round plan step (the study travels as its plan artifact) and a loop."""
    from foldwise.pipelines.cli import main

    out = tmp_path / "bayes.yaml"
    assert main(["compile", "bayes-search", "--rungs", "4", "--accelerator", "nvidia-l4:1",
                 "--platform", platform, "--out", str(out)]) == 0
    ir = yaml.safe_load(out.read_text().split("\n---\n")[0])
    found = loops(ir)
    assert set(found) == {"trials", "trials-stage-1", "trials-stage-2", "trials-stage-3"}
    tasks = ir["root"]["dag"]["tasks"]
    named = {task["taskInfo"]["name"]: key for key, task in tasks.items()}
    assert set(named) >= {"stage-1", "stage-2", "stage-3", "stage-4", "aggregate"}
    for stage in (1, 2, 3):
        task, component = found[f"trials-stage-{stage}"]
        assert task["parameterIterator"]["items"]["inputParameter"].endswith(
            f"{named[f'stage-{stage}']}-Output")
        planned = tasks[named[f"stage-{stage}"]]
        assert planned["componentRef"]["name"].startswith("comp-next-round")
        previous = "plan-trials" if stage == 1 else named[f"stage-{stage - 1}"]
        assert planned["inputs"]["artifacts"]["previous"]["taskOutputArtifact"] == {
            "producerTask": previous, "outputArtifactKey": "plan"}
    collected = tasks["aggregate"]["inputs"]["parameters"]["fold_results"]
    assert collected["taskOutputParameter"]["producerTask"] == named["stage-4"]
    parameters = ir["root"]["inputDefinitions"]["parameters"]
    assert parameters["bayes"]["parameterType"] == "STRUCT"
    assert tasks["plan-trials"]["inputs"]["parameters"]["bayes"] == {
        "componentInputParameter": "bayes"}
