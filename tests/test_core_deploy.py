"""The KServe manifest the export writes: names and fields Kubernetes and KServe take."""

import re

import pytest

from foldwise.components.core.serving.deploy import inference_service, service_name

RFC_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize(("destination", "name"), [
    ("gs://acme-ml/experiments/penguins", "foldwise-penguins"),
    ("gs://acme-ml/experiments/Penguins_2026/", "foldwise-penguins-2026"),
    ("/home/ana/runs/größe & gewicht", "foldwise-gr-e-gewicht"),
    ("gs://acme-ml/€€", "foldwise"),
    ("gs://b/" + "very-long-name-" * 6, "foldwise-very-long-name-very-long-name-very-l"),
])
def test_service_names_are_kubernetes_names(destination, name):
    assert service_name(destination) == name
    assert RFC_1035.fullmatch(name) and len(name) <= 45


def test_inference_service_fields_parse_as_kubernetes_objects():
    from kubernetes.client import ApiClient
    from kubernetes.utils.quantity import parse_quantity

    service = inference_service("foldwise-penguins", "gs://acme-ml/penguins/model/tfserving",
                                "2.21.0")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    model = service["spec"]["predictor"]["model"]
    assert model == {"modelFormat": {"name": "tensorflow"}, "runtimeVersion": "2.21.0",
                     "storageUri": "gs://acme-ml/penguins/model/tfserving",
                     "resources": model["resources"]}
    client = ApiClient()
    resources = client._ApiClient__deserialize(model["resources"], "V1ResourceRequirements")
    for kind in (resources.requests, resources.limits):
        assert set(kind) == {"cpu", "memory"}
        assert all(parse_quantity(value) > 0 for value in kind.values())
    assert parse_quantity(resources.requests["memory"]) <= parse_quantity(
        resources.limits["memory"])
    meta = client._ApiClient__deserialize(service["metadata"], "V1ObjectMeta")
    assert RFC_1035.fullmatch(meta.name)
    # Each call gets its own resources: editing one manifest leaves the next alone.
    model["resources"]["limits"]["memory"] = "64Gi"
    assert inference_service("a", "gs://b", "2.21.0")["spec"]["predictor"]["model"][
        "resources"]["limits"]["memory"] == "2Gi"
