"""foldwise beside the ecosystem it composes with: Google's pipeline components.

Everything here uses the real google-cloud-pipeline-components and google-cloud-aiplatform
packages that the README's setup installs beside foldwise.
"""

import importlib.util
import json
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vertex_deploy.py"
SERVING = {"schemaTitle": "google.UnmanagedContainerModel", "schemaVersion": "0.0.1"}


def test_the_environment_is_consistent():
    """``pip check``: every installed package's requirements hold, GCPC's included."""
    checked = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_google_cloud_pipeline_components_and_foldwise_accept_the_same_aiplatform():
    installed = version("google-cloud-aiplatform")
    for package in ("foldwise", "google-cloud-pipeline-components"):
        (wanted,) = [Requirement(r) for r in requires(package)
                     if Requirement(r).name == "google-cloud-aiplatform" and not Requirement(
                         r).marker]
        assert wanted.specifier.contains(installed), (package, str(wanted), installed)


# Composing: examples/vertex_deploy.py, compiled with the real packages.


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Both example pipelines, compiled by the example's own command line."""
    spec = importlib.util.spec_from_file_location("vertex_deploy", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path_factory.mktemp("compiled")
    example.main(["--image", "europe-docker.pkg.dev/acme/ml/foldwise:0.1.0-cpu",
                  "--out-dir", str(out)])
    return {name: yaml.safe_load((out / f"{name}.yaml").read_text())
            for name in ("search_and_deploy", "retrain_and_deploy")} | {"folder": out}


def test_foldwise_serving_model_type_is_googles():
    from google_cloud_pipeline_components.types import artifact_types

    from foldwise.components.artifacts import UnmanagedContainerModel

    google = artifact_types.UnmanagedContainerModel
    assert (UnmanagedContainerModel.schema_title, UnmanagedContainerModel.schema_version) == (
        google.schema_title, google.schema_version)


def test_search_output_goes_into_model_upload_with_no_importer(compiled):
    ir = compiled["search_and_deploy"]
    tasks = ir["root"]["dag"]["tasks"]
    assert set(tasks) == {"foldwise-grid-search", "model-upload", "endpoint-create",
                          "model-deploy"}
    assert tasks["model-upload"]["inputs"]["artifacts"]["unmanaged_container_model"] == {
        "taskOutputArtifact": {"producerTask": "foldwise-grid-search",
                               "outputArtifactKey": "serving_model"}}
    assert not [name for name in ir["deploymentSpec"]["executors"] if "importer" in name]
    search = ir["components"]["comp-foldwise-grid-search"]
    assert search["outputDefinitions"]["artifacts"]["serving_model"]["artifactType"] == SERVING
    assert search["dag"]["outputs"]["artifacts"]["serving_model"]["artifactSelectors"] == [
        {"producerSubtask": "refit", "outputArtifactKey": "serving_model"}]
    upload = ir["components"]["comp-model-upload"]["inputDefinitions"]["artifacts"]
    assert upload["unmanaged_container_model"]["artifactType"] == SERVING
    deploy = tasks["model-deploy"]["inputs"]["artifacts"]
    assert deploy["model"]["taskOutputArtifact"]["producerTask"] == "model-upload"
    assert deploy["endpoint"]["taskOutputArtifact"]["producerTask"] == "endpoint-create"
    refit = ir["deploymentSpec"]["executors"]["exec-refit"]["container"]
    assert refit["image"] == "europe-docker.pkg.dev/acme/ml/foldwise:0.1.0-cpu"


def test_retrain_deploys_only_a_promoted_challenger(compiled):
    ir = compiled["retrain_and_deploy"]
    tasks = ir["root"]["dag"]["tasks"]
    (condition,) = [name for name in tasks if name.startswith("condition")]
    assert tasks[condition]["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--foldwise-retrain-promoted'] == true")
    assert tasks[condition]["inputs"]["parameters"][
        "pipelinechannel--foldwise-retrain-promoted"]["taskOutputParameter"] == {
        "producerTask": "foldwise-retrain", "outputParameterKey": "promoted"}
    assert tasks[condition]["inputs"]["artifacts"][
        "pipelinechannel--foldwise-retrain-serving_model"]["taskOutputArtifact"] == {
        "producerTask": "foldwise-retrain", "outputArtifactKey": "serving_model"}
    inner = ir["components"][tasks[condition]["componentRef"]["name"]]["dag"]["tasks"]
    assert {"model-upload", "model-deploy"} <= set(inner)
    assert inner["model-upload"]["inputs"]["artifacts"]["unmanaged_container_model"] == {
        "componentInputArtifact": "pipelinechannel--foldwise-retrain-serving_model"}
    retrain = ir["components"]["comp-foldwise-retrain"]
    assert retrain["outputDefinitions"]["parameters"]["promoted"]["parameterType"] == "BOOLEAN"
    assert retrain["dag"]["outputs"]["parameters"]["promoted"]["valueFromParameter"] == {
        "producerSubtask": "promote", "outputParameterKey": "promoted"}


def test_vertex_takes_the_composed_pipeline_as_a_job(compiled):
    """The real client library builds the PipelineJob request from the compiled YAML."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    job = aiplatform.PipelineJob(
        display_name="penguins-deploy",
        template_path=str(compiled["folder"] / "search_and_deploy.yaml"),
        pipeline_root="gs://acme-ml/root", project="acme", location="europe-west4",
        credentials=AnonymousCredentials(),
        parameter_values={"project": "acme", "location": "europe-west4",
                          "data": "gs://acme-ml/penguins.csv", "target": "species",
                          "param_grid": [{"learning_rate": [0.001, 0.01]}],
                          "destination": "gs://acme-ml/experiments/penguins"})
    body = json.loads(type(job._gca_resource).to_json(job._gca_resource))
    values = body["runtimeConfig"]["parameterValues"]
    assert values["param_grid"] == [{"learning_rate": [0.001, 0.01]}]
    assert body["pipelineSpec"]["root"]["dag"]["tasks"]["model-upload"]["inputs"]["artifacts"][
        "unmanaged_container_model"]["taskOutputArtifact"]["outputArtifactKey"] == "serving_model"
