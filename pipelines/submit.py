"""Submitting and scheduling compiled pipelines on Kubeflow Pipelines or Vertex AI Pipelines.

Both go through the services' own client libraries (``kfp.Client``,
``google.cloud.aiplatform``); this module only decides what to send.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from foldwise.components.core.errors import FoldwiseError


@dataclass(frozen=True)
class Submitted:
    """What the service answered: an id, and where a person can look at it."""

    kind: str  # "run", "recurring run", "pipeline job" or "schedule"
    id: str
    url: str | None = None


def kfp_cron(cron: str) -> str:
    """A cron expression as Kubeflow Pipelines wants it: six fields, seconds first.

    Five-field (minute-first) expressions get ``0`` seconds prepended.
    """
    fields = cron.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6 or not all(re.fullmatch(r"[\d*/,\-?A-Za-z]+", f) for f in fields):
        raise FoldwiseError(
            f"--cron {cron!r} is not a cron expression: use 'SEC MIN HOUR DAY MONTH WEEKDAY' "
            "(e.g. '0 0 3 * * *', daily at 03:00) or the five fields without seconds")
    return " ".join(fields)


def vertex_cron(cron: str) -> str:
    """A cron expression as Vertex AI wants it: five fields (no seconds)."""
    fields = kfp_cron(cron).split()
    if fields[0] != "0":
        raise FoldwiseError(f"--cron {cron!r}: Vertex AI schedules run on whole minutes; "
                            "use 0 seconds")
    return " ".join(fields[1:])


class ServiceUnreachable(RuntimeError):
    """A pipeline service did not answer (an environment error: exit 1, its name in the line)."""


@contextlib.contextmanager
def reaching(service: str, where: str):
    """Within: a connection that fails is :class:`ServiceUnreachable`, naming ``service``.

    The client libraries raise their transport's errors (urllib3's, requests', gRPC's through
    google.api_core); a message about a bucket would send the user to the wrong place.
    """
    try:
        yield
    except FoldwiseError:
        raise
    except Exception as err:
        names = {cls.__name__ for cls in type(err).__mro__}
        module = type(err).__module__
        transport = (names & {"ConnectionError", "MaxRetryError", "NewConnectionError",
                              "ProtocolError", "TimeoutError", "ServiceUnavailable",
                              "RetryError", "DeadlineExceeded"}
                     or module.startswith(("urllib3", "requests")))
        if not transport:
            raise
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ServiceUnreachable(
            f"the {service} service at {where} could not be reached ({type(err).__name__}: "
            f"{reason}); check its address, the network and the credentials") from err


def _quiet_client():
    """Keep the links kfp's client prints out of stdout; the command prints one line."""
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


def kfp_client(host: str, namespace: str | None = None):
    """A ``kfp.Client`` for the endpoint (credentials as kfp finds them)."""
    import kfp

    return kfp.Client(host=host, namespace=namespace or "kubeflow")


def submit_kfp(client, package: Path, arguments: dict, run_name: str, experiment: str,
               pipeline_root: str, namespace: str | None = None,
               service_account: str | None = None) -> Submitted:
    """Start one run of a compiled pipeline on Kubeflow Pipelines."""
    with _quiet_client():
        result = client.create_run_from_pipeline_package(
            pipeline_file=str(package), arguments=arguments, run_name=run_name,
            experiment_name=experiment, namespace=namespace, pipeline_root=pipeline_root,
            service_account=service_account)
    return Submitted("run", result.run_id, f"{client._uihost}/#/runs/details/{result.run_id}")


def schedule_kfp(client, package: Path, arguments: dict, name: str, experiment: str,
                 cron: str, namespace: str | None = None,
                 service_account: str | None = None) -> Submitted:
    """Create a recurring run: one run at a time, no catch-up of missed runs."""
    with _quiet_client():
        experiment_id = client.create_experiment(name=experiment,
                                                 namespace=namespace).experiment_id
    recurring = client.create_recurring_run(
        experiment_id=experiment_id, job_name=name, cron_expression=kfp_cron(cron),
        max_concurrency=1, no_catchup=True, params=arguments,
        pipeline_package_path=str(package), enabled=True, service_account=service_account)
    return Submitted("recurring run", recurring.recurring_run_id)


def vertex_job(package: Path, arguments: dict, name: str, project: str, region: str,
               pipeline_root: str, credentials=None):
    """A Vertex AI ``PipelineJob`` for a compiled pipeline (nothing is sent yet)."""
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name=name, template_path=str(package), pipeline_root=pipeline_root,
        parameter_values=arguments, project=project, location=region,
        credentials=credentials)


def submit_vertex(job, service_account: str | None = None) -> Submitted:
    """Start the pipeline job on Vertex AI Pipelines."""
    job.submit(service_account=service_account)
    return Submitted("pipeline job", job.resource_name, _vertex_url(job.resource_name))


def schedule_vertex(job, name: str, cron: str,
                    service_account: str | None = None) -> Submitted:
    """Create a Vertex AI schedule: one run at a time."""
    schedule = job.create_schedule(display_name=name, cron=vertex_cron(cron),
                                   max_concurrent_run_count=1, service_account=service_account)
    return Submitted("schedule", schedule.resource_name)


def _vertex_url(resource_name: str) -> str | None:
    match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/pipelineJobs/([^/]+)",
                         resource_name or "")
    if not match:
        return None
    project, region, job = match.groups()
    return (f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/"
            f"{job}?project={project}")
