"""Local paths and gs:// URIs, the latter against a real GCS-compatible server on loopback."""

import json
from pathlib import Path

import pytest

from foldwise.components import storage
from foldwise.components.core.errors import FoldwiseError


def test_round_trip_through_the_bucket(bucket, tmp_path):
    source = tmp_path / "table.csv"
    source.write_text("a,b\n1,2\n")
    uri = f"gs://{bucket.name}/in/table.csv"
    assert not storage.exists(uri)
    storage.upload(source, uri)
    assert storage.exists(uri) and storage.read_bytes(uri) == source.read_bytes()
    with storage.local_copy(uri) as local:
        assert local.name == "table.csv" and local.read_text() == "a,b\n1,2\n"
    storage.upload(source, f"gs://{bucket.name}/in/sub/other.csv")
    storage.download_folder(f"gs://{bucket.name}/in", tmp_path / "copy")
    assert sorted(p.relative_to(tmp_path / "copy").as_posix()
                  for p in (tmp_path / "copy").rglob("*.csv")) == ["sub/other.csv", "table.csv"]


def test_missing_objects_and_buckets_are_clear_errors(bucket, tmp_path):
    with pytest.raises(FoldwiseError, match=r"gs://.*/nope.csv does not exist"):
        storage.read_bytes(f"gs://{bucket.name}/nope.csv")
    with pytest.raises(FoldwiseError, match="does not exist"):
        storage.read_bytes("gs://no-such-bucket-here/x.csv")
    with pytest.raises(FoldwiseError, match="no objects under that prefix"):
        storage.download_folder(f"gs://{bucket.name}/empty", tmp_path / "x")
    with pytest.raises(FoldwiseError, match="names no bucket"):
        storage.read_bytes("gs:///x.csv")


def test_transient_errors_are_retried_with_backoff(monkeypatch):
    from google.api_core import exceptions

    monkeypatch.setattr(storage, "_outage_started", None)  # no outage in this process yet

    retry = storage._retry()
    assert retry._predicate(exceptions.TooManyRequests("429"))
    assert retry._predicate(exceptions.ServiceUnavailable("503"))
    assert not retry._predicate(exceptions.NotFound("404"))
    assert retry._timeout == 300.0 and retry._maximum == 16.0


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_publish_writes_every_file_then_the_manifest(where, tmp_path, request):
    destination = (str(tmp_path / "out") if where == "local"
                   else f"gs://{request.getfixturevalue('bucket').name}/exp")
    files = []
    for name in ("model/model.keras", "cv_results.csv"):
        path = tmp_path / name.replace("/", "_")
        path.write_text(f"content of {name}")
        files.append((name, path))
    manifest = storage.publish(files, destination, {"what": "test"})
    stored = json.loads(storage.read_bytes(storage.join(destination, "manifest.json")))
    assert stored == manifest and stored["what"] == "test"
    assert set(stored["files"]) == {"model/model.keras", "cv_results.csv"}
    assert stored["files"]["cv_results.csv"]["bytes"] == len("content of cv_results.csv")
    assert storage.read_bytes(storage.join(destination, "model/model.keras")) == \
        b"content of model/model.keras"
    with pytest.raises(FoldwiseError, match="already holds a finished export"):
        storage.publish(files, destination, {"what": "again"})


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_an_interrupted_export_leaves_no_manifest(where, tmp_path, request, monkeypatch):
    destination = (str(tmp_path / "out") if where == "local"
                   else f"gs://{request.getfixturevalue('bucket').name}/exp")
    files = []
    for index in range(4):
        path = tmp_path / f"f{index}"
        path.write_text("x" * 10)
        files.append((f"f{index}", path))
    real_upload, calls = storage.upload, []

    def failing_upload(source: Path, uri: str) -> None:
        calls.append(uri)
        if len(calls) == 3:
            raise ConnectionError("connection reset while uploading")
        real_upload(source, uri)

    monkeypatch.setattr(storage, "upload", failing_upload)
    with pytest.raises(ConnectionError):
        storage.publish(files, destination, {"what": "test"})
    assert storage.exists(storage.join(destination, "f1"))
    assert not storage.exists(storage.join(destination, "manifest.json"))
    monkeypatch.setattr(storage, "upload", real_upload)
    storage.publish(files, destination, {"what": "retried"})  # a retry completes the export
    assert storage.exists(storage.join(destination, "manifest.json"))


def test_local_upload_never_leaves_a_partial_file(tmp_path):
    source = tmp_path / "a.csv"
    source.write_text("1")
    storage.upload(source, str(tmp_path / "out" / "a.csv"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.csv"]


def test_an_outage_costs_the_retry_budget_once_not_once_per_call(monkeypatch):
    """An export's upload, then the claim's release: one budget from the first failure."""
    import socket
    import time

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "6")
    monkeypatch.setattr(storage, "_outage_started", None)
    started = time.monotonic()
    for name in ("a", "b", "c"):  # each alone would retry for about 3.5 s of backoff
        with pytest.raises(Exception):  # noqa: B017 - the library's transport error
            storage.exists(f"gs://gone/{name}")
    assert time.monotonic() - started < 7.5  # one budget of 6 s for the three of them
    assert storage.retry_budget() < 1.0
    started = time.monotonic()
    storage.release("gs://gone/out", "token")  # cleanup: never raises, never waits long
    assert time.monotonic() - started < 2.0


def test_a_call_that_ends_well_ends_the_outage(bucket, monkeypatch):
    """A long-lived process (a notebook) is not left with a spent budget after a hiccup."""
    import time

    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "300")
    monkeypatch.setattr(storage, "_outage_started", time.monotonic() - 250)
    assert storage.retry_budget() < 60
    assert not storage.exists(f"gs://{bucket.name}/nothing-here")
    assert storage._outage_started is None and storage.retry_budget() == 300
