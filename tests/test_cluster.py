"""Compiled YAML for clusters: image, resources, accelerators, selectors, retries, caching."""

import pytest
import yaml

from foldwise.components.core.errors import FoldwiseError
from foldwise.pipelines.cli import main
from foldwise.pipelines.dags.cluster import GPUS, TPUS, parse_accelerator

IMAGE = "europe-docker.pkg.dev/acme/ml/foldwise:0.1.0-gpu"


def compiled(tmp_path, *extra, pipeline="grid-search"):
    out = tmp_path / "pipeline.yaml"
    assert main(["compile", pipeline, "--image", IMAGE, "--out", str(out), *extra]) == 0
    documents = list(yaml.safe_load_all(out.read_text()))
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] \
        if len(documents) > 1 else {}
    return documents[0], platform


def all_tasks(ir):
    """Every task of the pipeline, loops included: ``{task name: task}``."""
    found = dict(ir["root"]["dag"]["tasks"])
    for component in ir["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


@pytest.mark.parametrize("name", sorted(GPUS))
def test_gpu_on_gke_requests_gpus_and_lands_on_the_gpu_node_pool(name, tmp_path):
    ir, platform = compiled(tmp_path, "--accelerator", f"{name}:2")
    executors = ir["deploymentSpec"]["executors"]
    for step in ("exec-train", "exec-refit"):
        resources = executors[step]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "2"
        assert resources["resourceCpuRequest"] == "2" and resources["resourceMemoryLimit"] == "8G"
        assert platform[step]["nodeSelector"]["labels"] == {
            "cloud.google.com/gke-accelerator": GPUS[name][0]}
        assert platform[step]["tolerations"] == [
            {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    assert "accelerator" not in executors["exec-preprocess"]["container"]["resources"]
    assert set(platform) == {"exec-train", "exec-refit"}


@pytest.mark.parametrize(("name", "topology", "chips"), [("tpu-v5e", "2x2", 4),
                                                          ("tpu-v4", "2x2x1", 4)])
def test_tpu_on_gke_requests_chips_with_topology(name, topology, chips, tmp_path):
    ir, platform = compiled(tmp_path, "--accelerator", f"{name}:{chips}", "--tpu-topology",
                            topology)
    resources = ir["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "google.com/tpu"
    assert resources["accelerator"]["resourceCount"] == str(chips)
    assert platform["exec-train"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-tpu-accelerator": TPUS[name][0],
        "cloud.google.com/gke-tpu-topology": topology}
    assert platform["exec-train"]["tolerations"][0]["key"] == "google.com/tpu"


@pytest.mark.parametrize("name", sorted(GPUS))
def test_vertex_gets_vertex_accelerator_types_and_no_kubernetes_settings(name, tmp_path):
    ir, platform = compiled(tmp_path, "--accelerator", f"{name}:1", "--platform", "vertex")
    accelerator = ir["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"][
        "accelerator"]
    assert accelerator["resourceType"] == GPUS[name][1] and accelerator["resourceCount"] == "1"
    assert platform == {}


@pytest.mark.parametrize("pipeline", ["cross-validation", "grid-search"])
def test_every_step_gets_the_image_resources_retries_and_caching(pipeline, tmp_path):
    ir, platform = compiled(tmp_path, "--step-memory", "6G", pipeline=pipeline)
    for name, executor in ir["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["image"] == IMAGE, name
        training = name in ("exec-train", "exec-refit")
        assert container["resources"]["resourceMemoryRequest"] == ("8G" if training else "6G")
        assert "accelerator" not in container["resources"]
    assert platform == {}
    tasks = all_tasks(ir)
    for name, task in tasks.items():
        if name.startswith("for-loop"):
            continue
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        assert cached == (name not in ("preprocess", "export")), name
        retried = "retryPolicy" in task
        assert retried == (name in ("train", "refit")), name
    assert tasks["train"]["retryPolicy"] == {"backoffDuration": "30s", "backoffFactor": 2.0,
                                             "backoffMaxDuration": "600s", "maxRetryCount": 3}


@pytest.mark.parametrize(
    ("text", "topology", "match"),
    [("nvidia-l5:1", None, r"unknown accelerator 'nvidia-l5'.*known: cpu, nvidia-t4"),
     ("nvidia-l4:0", None, r"count must be a positive whole number"),
     ("nvidia-l4:x", None, r"count must be a positive whole number"),
     ("tpu-v5e:4", None, r"tpu-v5e needs --tpu-topology"),
     ("tpu-v5e:4", "2x4", r"2x4 has 8 chips but 'tpu-v5e:4' asks for 4: use tpu-v5e:8"),
     ("nvidia-t4:1", "2x2", r"--tpu-topology goes with a TPU"),
     ("cpu", "2x2", r"goes with a TPU --accelerator, not cpu")],
)
def test_bad_accelerators_are_refused_with_the_known_names(text, topology, match):
    with pytest.raises(FoldwiseError, match=match):
        parse_accelerator(text, topology)


def test_cpu_means_no_accelerator_and_counts_default_to_one():
    assert parse_accelerator("cpu") is None
    assert parse_accelerator("nvidia-t4").count == 1


def test_compile_command_refuses_bad_input_cleanly(tmp_path, capsys):
    assert main(["compile", "grid-search", "--accelerator", "gpu", "--out",
                 str(tmp_path / "p.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: unknown accelerator 'gpu'")
    assert main(["compile", "grid-search", "--out", str(tmp_path / "p.json")]) == 2
    assert "must be a .yaml file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
