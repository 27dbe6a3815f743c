"""Submit and schedule: the exact requests, built by the real client libraries.

Only the network is replaced: for Kubeflow Pipelines the HTTP pool under kfp's generated API
client; for Vertex AI the gRPC channel under google-cloud-aiplatform. Everything above it —
kfp.Client, PipelineJob, request models and their serialization — is the real code.
"""

import json
import re
from unittest import mock

import pytest
import urllib3
import yaml

from foldwise.components import storage
from foldwise.pipelines.cli import main


class FakeKfpServer:
    """Answers kfp's REST calls like a Kubeflow Pipelines API server, and records them."""

    def __init__(self):
        self.calls = []

    def request(self, method, url, body=None, fields=None, **kwargs):
        path = url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        payload = json.loads(body) if body else None
        self.calls.append((method, "/" + path, payload))
        if method == "GET" and path.endswith("healthz"):
            answer = {"multi_user": False, "pipeline_store": "database"}
        elif method == "GET" and path.endswith("experiments"):
            answer = {"experiments": [], "total_size": 0}
        elif method == "POST" and path.endswith("experiments"):
            answer = {"experiment_id": "exp-1", "display_name": payload["display_name"]}
        elif method == "POST" and path.endswith("recurringruns"):
            answer = {"recurring_run_id": "rr-1", "display_name": payload["display_name"]}
        elif method == "POST" and path.endswith("runs"):
            answer = {"run_id": "run-1", "display_name": payload["display_name"]}
        else:
            raise AssertionError(f"unexpected call {method} {url}")
        return urllib3.response.HTTPResponse(
            body=json.dumps(answer).encode(), status=200, preload_content=True,
            headers={"Content-Type": "application/json"})

    def posted(self, suffix):
        (payload,) = [p for m, path, p in self.calls if m == "POST" and path.endswith(suffix)]
        return payload


@pytest.fixture
def kfp_server():
    server = FakeKfpServer()
    with mock.patch.object(urllib3.PoolManager, "request", server.request):
        yield server


class FakeVertexChannel:
    """A gRPC channel that records serialized requests and answers like Vertex AI."""

    def __init__(self):
        self.requests = []

    def unary_unary(self, path, request_serializer=None, response_deserializer=None, *a, **k):
        from google.cloud.aiplatform_v1.types import pipeline_job, schedule

        def call(request, *args, **kwargs):
            self.requests.append((path.rsplit("/", 1)[1], request_serializer(request)))
            if path.endswith("CreatePipelineJob"):
                return pipeline_job.PipelineJob(
                    name="projects/acme/locations/europe-west4/pipelineJobs/job-1")
            if path.endswith("GetProject"):
                from google.cloud.resourcemanager_v3.types import Project

                return Project(name="projects/123456789", project_id="acme")
            if path.endswith("CreateSchedule"):
                return schedule.Schedule(
                    name="projects/acme/locations/europe-west4/schedules/sched-1")
            raise AssertionError(path)

        class Method:
            def __call__(self, *args, **kwargs):
                return call(*args, **kwargs)

            def with_call(self, *args, **kwargs):
                return call(*args, **kwargs), None

        return Method()

    def sent(self, method: str) -> list[bytes]:
        return [wire for name, wire in self.requests if name == method]

    def close(self):
        pass


@pytest.fixture
def vertex(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    channel = FakeVertexChannel()
    monkeypatch.setattr("google.auth.default",
                        lambda *a, **k: (AnonymousCredentials(), "acme"))
    with mock.patch("google.api_core.grpc_helpers.create_channel", return_value=channel):
        yield channel


@pytest.fixture
def inputs(bucket, tmp_path, penguins):
    table = tmp_path / "penguins.csv"
    penguins.to_csv(table, index=False)
    data = f"gs://{bucket.name}/data/penguins.csv"
    storage.upload(table, data)
    grid = tmp_path / "grid.yaml"
    grid.write_text("learning_rate: [0.001, 0.01]\nhidden_units: [[32], [64]]\n")
    return {"data": data, "grid": str(grid), "root": f"gs://{bucket.name}/root",
            "output": f"gs://{bucket.name}/experiments/penguins"}


def grid_args(inputs):
    return ["--data", inputs["data"], "--target", "species", "--grid", inputs["grid"],
            "--epochs", "30", "--output", inputs["output"], "--pipeline-root", inputs["root"]]


def test_submit_to_kubeflow_pipelines(kfp_server, inputs, capsys):
    code = main(["submit", "grid-search", "--host", "https://kfp.example.com", *grid_args(inputs),
                 "--image", "reg/foldwise:0.1.0-gpu", "--accelerator", "nvidia-l4:1",
                 "--name", "penguins-nightly", "--experiment", "penguins"])
    assert code == 0
    assert capsys.readouterr().out.strip() == (
        "run run-1: https://kfp.example.com/#/runs/details/run-1")
    assert kfp_server.posted("experiments")["display_name"] == "penguins"
    run = kfp_server.posted("runs")
    assert run["display_name"] == "penguins-nightly" and run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["pipeline_root"] == inputs["root"]
    parameters = run["runtime_config"]["parameters"]
    assert parameters["data"] == inputs["data"] and parameters["destination"] == inputs["output"]
    assert parameters["param_grid"] == [{"learning_rate": [0.001, 0.01],
                                         "hidden_units": [[32], [64]]}]
    assert parameters["model_spec"] == {"epochs": 30}  # fixed where the grid is silent
    spec = run["pipeline_spec"]
    train = spec["pipeline_spec"]["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["image"] == "reg/foldwise:0.1.0-gpu"
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    selectors = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert selectors["exec-train"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"}


def test_an_unreachable_kubeflow_host_is_named_not_the_bucket(inputs, capsys, tmp_path,
                                                               monkeypatch):
    import socket

    from foldwise.pipelines import cli

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(cli.tempfile, "gettempdir", lambda: str(tmp_path))
    host = f"http://127.0.0.1:{port}"
    assert main(["submit", "grid-search", "--host", host, *grid_args(inputs)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: the Kubeflow Pipelines service at {host} could not be "
                           "reached (")
    assert "check its address, the network and the credentials; full log: " in line
    assert "storage" not in line and "bucket" not in line


def test_schedule_on_kubeflow_pipelines(kfp_server, inputs, capsys):
    code = main(["schedule", "grid-search", "--host", "https://kfp.example.com",
                 *grid_args(inputs), "--cron", "0 3 * * *", "--name", "retrain-nightly"])
    assert code == 0 and capsys.readouterr().out.strip() == "recurring run rr-1"
    recurring = kfp_server.posted("recurringruns")
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # seconds first
    assert int(recurring["max_concurrency"]) == 1 and recurring["no_catchup"] is True
    assert recurring["mode"] == "ENABLE" and recurring["experiment_id"] == "exp-1"
    assert recurring["runtime_config"]["parameters"]["target"] == "species"
    spec = recurring["pipeline_spec"]  # wrapped with platform_spec only when it has one
    assert spec.get("pipeline_spec", spec)["pipelineInfo"]["name"] == "foldwise-grid-search"


def test_submit_and_schedule_on_vertex(vertex, inputs, capsys):
    from google.cloud.aiplatform_v1.types import pipeline_service, schedule_service

    region = ["--vertex-project", "acme", "--vertex-region", "europe-west4"]
    serving = "europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    assert main(["submit", "grid-search", *region, *grid_args(inputs), "--accelerator",
                 "nvidia-a100:2", "--service-account", "runner@acme.iam",
                 "--serving-image", serving]) == 0
    assert "pipeline job projects/acme/locations/europe-west4/pipelineJobs/job-1" in \
        capsys.readouterr().out
    (wire,) = vertex.sent("CreatePipelineJob")
    request = pipeline_service.CreatePipelineJobRequest.deserialize(wire)
    assert request.parent == "projects/acme/locations/europe-west4"
    job = request.pipeline_job
    assert job.service_account == "runner@acme.iam"
    assert job.runtime_config.gcs_output_directory == inputs["root"]
    assert job.runtime_config.parameter_values["target"] == "species"
    assert job.runtime_config.parameter_values["serving_image"] == serving
    spec = dict(job.pipeline_spec)
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["resources"]["accelerator"]["resourceType"] == "NVIDIA_TESLA_A100"
    assert "platform_spec" not in spec

    assert main(["schedule", "grid-search", *region, *grid_args(inputs), "--cron",
                 "0 0 3 * * *"]) == 0
    (wire,) = vertex.sent("CreateSchedule")
    request = schedule_service.CreateScheduleRequest.deserialize(wire)
    assert request.schedule.cron == "0 3 * * *"
    assert request.schedule.max_concurrent_run_count == 1
    assert request.schedule.create_pipeline_job_request.pipeline_job.runtime_config \
        .gcs_output_directory == inputs["root"]


@pytest.mark.parametrize(
    ("extra", "match"),
    [(["--host", "https://k", "--vertex-project", "p", "--vertex-region", "r"],
      "give --host .* or both --vertex-project and --vertex-region"),
     (["--vertex-project", "p"], "give --host"),
     (["--host", "https://k", "--cron", "every day"], "is not a cron expression")],
)
def test_bad_submissions_are_refused_before_anything_is_sent(extra, match, inputs, kfp_server,
                                                             capsys):
    verb = "schedule" if "--cron" in extra else "submit"
    assert main([verb, "grid-search", *extra, *grid_args(inputs)]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert kfp_server.calls == []


def test_local_paths_are_refused_for_a_cluster(inputs, kfp_server, capsys, tmp_path):
    args = grid_args(inputs)
    args[args.index("--pipeline-root") + 1] = str(tmp_path)
    assert main(["submit", "grid-search", "--host", "https://k", *args]) == 2
    assert "--pipeline-root must be a gs:// prefix" in capsys.readouterr().err


def test_submitted_cross_validation_publishes_to_its_output(inputs, kfp_server, capsys):
    args = ["--data", inputs["data"], "--target", "species", "--pipeline-root", inputs["root"],
            "--hidden-units", "16"]
    assert main(["submit", "cross-validation", "--host", "https://k", *args]) == 2
    assert "cross-validation needs an --output gs:// prefix" in capsys.readouterr().err
    assert kfp_server.calls == []
    assert main(["submit", "cross-validation", "--host", "https://k", *args, "--output",
                 inputs["output"]]) == 0
    run = kfp_server.posted("runs")
    parameters = run["runtime_config"]["parameters"]
    assert parameters["destination"] == inputs["output"]
    assert parameters["model_spec"] == {"hidden_units": [16]}
    tasks = run["pipeline_spec"]["root"]["dag"]["tasks"]
    assert {"report", "export"} <= set(tasks) and "refit" not in tasks


def test_compiled_vertex_yaml_is_a_single_document(tmp_path):
    out = tmp_path / "p.yaml"
    assert main(["compile", "grid-search", "--platform", "vertex", "--accelerator",
                 "nvidia-l4:1", "--out", str(out)]) == 0
    assert len(list(yaml.safe_load_all(out.read_text()))) == 1


def test_a_python_search_compiles_and_submits_the_same_pipeline(kfp_server, inputs, tmp_path):
    import foldwise

    search = foldwise.GridSearchCV({"learning_rate": [0.001, 0.01],
                                    "hidden_units": [[32], [64]]}, epochs=30, cv=3)
    path = search.compile(tmp_path / "grid.yaml", accelerator="nvidia-l4:1")
    compiled = yaml.safe_load(path.read_text().split("\n---\n")[0])
    train = compiled["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    answer = search.submit(host="https://kfp.example.com", pipeline_root=inputs["root"],
                           data=inputs["data"], target="species", output=inputs["output"],
                           experiment="penguins")
    assert (answer.kind, answer.id) == ("run", "run-1")
    parameters = kfp_server.posted("runs")["runtime_config"]["parameters"]
    assert parameters["param_grid"] == [{"learning_rate": [0.001, 0.01],
                                         "hidden_units": [[32], [64]]}]
    assert parameters["model_spec"] == {"epochs": 30} and parameters["folds"] == 3
    assert parameters["destination"] == inputs["output"] and parameters["packing"] == "none"
    with pytest.raises(foldwise.FoldwiseError, match="--data must be a gs:// URI"):
        search.submit(host="https://k", pipeline_root=inputs["root"], data=str(tmp_path),
                      target="species", output=inputs["output"])
