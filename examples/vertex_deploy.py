"""Search → register → endpoint → deploy, in one Vertex AI pipeline.

foldwise's grid search (or retrain) composed with Google's pipeline components: the search's
``serving_model`` output (a ``google.UnmanagedContainerModel``: the refitted SavedModel and
its serving image) goes straight into ``ModelUploadOp``, with no importer and no URI typed in.

    pip install -e '.[vertex]'      # google-cloud-pipeline-components beside foldwise
    python examples/vertex_deploy.py --image REGISTRY/foldwise:0.1.0-cpu --out-dir compiled/

writes ``search_and_deploy.yaml`` and ``retrain_and_deploy.yaml``; submit either with
``google.cloud.aiplatform.PipelineJob(template_path=..., parameter_values={...})``.
"""

import argparse
from pathlib import Path

from google_cloud_pipeline_components.types.artifact_types import VertexEndpoint
from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp
from google_cloud_pipeline_components.v1.model import ModelUploadOp
from kfp import compiler, dsl

from foldwise.components.core.options import SERVING_IMAGE
from foldwise.pipelines.dags.cluster import ClusterSettings
from foldwise.pipelines.dags.grid_search import build_grid_search
from foldwise.pipelines.dags.retrain import build_retrain

MACHINE_TYPE = "n1-standard-2"


def build_search_and_deploy(settings: ClusterSettings):
    """Grid search, then upload the refitted model, create an endpoint and deploy to it."""
    grid_search = build_grid_search(settings)

    @dsl.pipeline(name="foldwise-search-and-deploy",
                  description="foldwise grid search; the best model registered in Vertex AI "
                              "and deployed to a new endpoint.")
    def search_and_deploy(
        project: str,
        location: str,
        data: str,
        target: str,
        param_grid: list,
        destination: str,
        model_spec: dict = {},  # noqa: B006 - KFP reads defaults from the signature
        model_name: str = "foldwise-model",
        endpoint_name: str = "foldwise-endpoint",
        machine_type: str = MACHINE_TYPE,
        serving_image: str = SERVING_IMAGE,
    ):
        search = grid_search(data=data, target=target, param_grid=param_grid,
                             destination=destination, model_spec=model_spec,
                             serving_image=serving_image)
        upload = ModelUploadOp(project=project, location=location, display_name=model_name,
                               unmanaged_container_model=search.outputs["serving_model"])
        endpoint = EndpointCreateOp(project=project, location=location,
                                    display_name=endpoint_name)
        ModelDeployOp(endpoint=endpoint.outputs["endpoint"], model=upload.outputs["model"],
                      dedicated_resources_machine_type=machine_type,
                      dedicated_resources_min_replica_count=1,
                      dedicated_resources_max_replica_count=1, traffic_split={"0": 100})

    return search_and_deploy


def build_retrain_and_deploy(settings: ClusterSettings):
    """Retrain; only if the challenger was promoted, upload it and move an endpoint to it."""
    retrain = build_retrain(settings)

    @dsl.pipeline(name="foldwise-retrain-and-deploy",
                  description="foldwise retrain; a promoted challenger is registered in Vertex "
                              "AI and takes all of an existing endpoint's traffic.")
    def retrain_and_deploy(
        project: str,
        location: str,
        data: str,
        target: str,
        promote_to: str,
        endpoint: str,
        param_grid: list = [],  # noqa: B006 - KFP reads defaults from the signature
        model_spec: dict = {},  # noqa: B006
        model_name: str = "foldwise-model",
        machine_type: str = MACHINE_TYPE,
        serving_image: str = SERVING_IMAGE,
    ):
        """``endpoint``: the endpoint's resource name, projects/.../endpoints/ID."""
        run = retrain(data=data, target=target, promote_to=promote_to, param_grid=param_grid,
                      model_spec=model_spec, serving_image=serving_image)
        with dsl.If(run.outputs["promoted"] == True, name="promoted"):  # noqa: E712 - KFP
            upload = ModelUploadOp(project=project, location=location, display_name=model_name,
                                   unmanaged_container_model=run.outputs["serving_model"])
            serving = dsl.importer(artifact_uri=endpoint, artifact_class=VertexEndpoint,
                                   metadata={"resourceName": endpoint}, reimport=False)
            ModelDeployOp(endpoint=serving.output, model=upload.outputs["model"],
                          dedicated_resources_machine_type=machine_type,
                          dedicated_resources_min_replica_count=1,
                          dedicated_resources_max_replica_count=1, traffic_split={"0": 100})

    return retrain_and_deploy


def main(argv: list[str] | None = None) -> None:
    """Compile both pipelines for Vertex AI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True,
                        help="foldwise's image in a registry Vertex AI can pull from")
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    settings = ClusterSettings(image=args.image, platform="vertex")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, build in (("search_and_deploy", build_search_and_deploy),
                        ("retrain_and_deploy", build_retrain_and_deploy)):
        compiler.Compiler().compile(build(settings), str(args.out_dir / f"{name}.yaml"))
        print(f"wrote {args.out_dir / f'{name}.yaml'}")


if __name__ == "__main__":
    main()
