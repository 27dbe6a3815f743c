"""Reading and writing local paths and ``gs://`` URIs alike, through google-cloud-storage.

``STORAGE_EMULATOR_HOST`` (e.g. ``http://127.0.0.1:9023``) points the client at a
GCS-compatible server with anonymous credentials; otherwise application default credentials
are used. Transient errors (429, 5xx, connection resets) are retried with exponential backoff.
URIs are only ever taken as given, never built from a bucket name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from foldwise.components.core.errors import FoldwiseError

GCS_PREFIX = "gs://"


def is_gcs(uri: str | os.PathLike) -> bool:
    """Whether ``uri`` names an object in a bucket."""
    return str(uri).startswith(GCS_PREFIX)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for a local folder or a ``gs://`` prefix."""
    if is_gcs(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


def _split(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len(GCS_PREFIX):].partition("/")
    if not bucket:
        raise FoldwiseError(f"{uri} names no bucket: write gs://BUCKET/PATH")
    return bucket, name


def _client():
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "foldwise"),
                              credentials=AnonymousCredentials())
    try:
        return storage.Client()
    except Exception as err:  # google.auth raises DefaultCredentialsError and others
        raise FoldwiseError(
            f"cannot reach Google Cloud Storage ({err}): run 'gcloud auth application-default "
            "login' or set GOOGLE_APPLICATION_CREDENTIALS") from err


RETRY_SECONDS_ENV = "FOLDWISE_STORAGE_RETRY_SECONDS"


# When this process first saw the storage service fail (time.monotonic()), or None: every
# later call's retries share what is left of one budget, so an outage costs the budget once,
# not once per call (an export's upload, then the claim's release, ...); a call that ends well
# ends the outage.
_outage_started: float | None = None
# A claim's release is cleanup after the run: it tries briefly, never a second full budget.
RELEASE_SECONDS = 15.0


def retry_budget() -> float:
    """Seconds of retrying a storage call may still take in this process."""
    seconds = float(os.environ.get(RETRY_SECONDS_ENV) or 300.0)
    if _outage_started is None:
        return seconds
    return max(0.0, seconds - (time.monotonic() - _outage_started))


def _retry(most: float | None = None):
    """The library's retry on 429, 5xx and connection errors, with backoff up to 5 minutes.

    Passed to every call, uploads included (the library retries those only when asked).
    ``FOLDWISE_STORAGE_RETRY_SECONDS`` sets how long to keep trying (default 300), counted
    once per process from the first failure (:func:`retry_budget`); ``most`` caps it.
    """
    from google.cloud.storage.retry import DEFAULT_RETRY

    library_predicate = DEFAULT_RETRY._predicate  # which errors the library retries

    def retried(error: Exception) -> bool:
        global _outage_started
        if not library_predicate(error):
            return False
        if _outage_started is None:  # the outage's clock starts at its first failure
            _outage_started = time.monotonic()
        return True

    seconds = retry_budget() if most is None else min(most, retry_budget())
    return DEFAULT_RETRY.with_predicate(retried).with_delay(
        initial=0.5, maximum=16.0, multiplier=2.0).with_timeout(seconds)


def _blob(uri: str):
    bucket, name = _split(uri)
    return _client().bucket(bucket).blob(name)


@contextlib.contextmanager
def _gcs_errors(uri: str) -> Iterator[None]:
    """Within: the service's answers a user can act on are :class:`FoldwiseError`.

    A call that ends well also ends an outage: the next failure starts a new budget.
    """
    global _outage_started
    from google.api_core import exceptions

    try:
        yield
        _outage_started = None
    except exceptions.NotFound as err:
        raise FoldwiseError(f"{uri} does not exist (bucket or object not found)") from err
    except exceptions.Forbidden as err:
        raise FoldwiseError(
            f"no permission for {uri}: check the credentials' access to the bucket") from err


def exists(uri: str) -> bool:
    """Whether a local file or a bucket object exists."""
    if not is_gcs(uri):
        return Path(uri).exists()
    with _gcs_errors(uri):
        return _blob(uri).exists(retry=_retry())


def read_bytes(uri: str) -> bytes:
    """The content of a local file or a bucket object."""
    if not is_gcs(uri):
        return Path(uri).read_bytes()
    with _gcs_errors(uri):
        return _blob(uri).download_as_bytes(retry=_retry())


def download(uri: str, destination: Path) -> None:
    """Copy a local file or bucket object to a local file."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not is_gcs(uri):
        shutil.copyfile(uri, destination)
        return
    with _gcs_errors(uri):
        _blob(uri).download_to_filename(str(destination), retry=_retry())


def download_folder(uri: str, destination: Path) -> None:
    """Copy every object under a ``gs://`` prefix (or a local folder) into ``destination``."""
    if not is_gcs(uri):
        shutil.copytree(uri, destination, dirs_exist_ok=True)
        return
    bucket, prefix = _split(uri.rstrip("/") + "/")
    with _gcs_errors(uri):
        blobs = list(_client().list_blobs(bucket, prefix=prefix, retry=_retry()))
        if not blobs:
            raise FoldwiseError(f"{uri} does not exist (no objects under that prefix)")
        for blob in blobs:
            target = destination / blob.name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target), retry=_retry())


def upload(source: Path, uri: str) -> None:
    """Copy a local file to a local path or a bucket object.

    A local target is written under a temporary name and renamed; a bucket object appears
    whole or not at all (one object write).
    """
    if not is_gcs(uri):
        target = Path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.partial")
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)  # nothing half-written left behind
        return
    with _gcs_errors(uri):
        _blob(uri).upload_from_filename(str(source), retry=_retry())


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path with the content of ``uri``.

    The path itself, or a temporary download that keeps the object's file name (its suffix
    tells the table format).
    """
    if not is_gcs(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="foldwise-") as folder:
        target = Path(folder) / (_split(uri)[1].rsplit("/", 1)[-1] or "object")
        download(uri, target)
        yield target


MANIFEST = "manifest.json"
CLAIM = ".foldwise-claim"


def claim(destination: str) -> str:
    """Claim ``destination`` for one run before any step: writable, and no one else's.

    Writes ``.foldwise-claim`` there (a local folder: created exclusively; a bucket: only if
    no such object exists, ``if_generation_match=0``, then read back), so a destination that
    cannot be written, a bucket that does not exist, or a second run writing to the same
    place is refused before any work is done. Returns the claim's token for :func:`release`.

    Raises:
        FoldwiseError: The destination cannot be written or another run holds it.
    """
    import uuid

    token = f"{uuid.uuid4()} pid {os.getpid()}"
    uri = join(destination, CLAIM)
    busy = (f"another run is writing to {destination} (it holds {uri}): choose another "
            "--output, or delete that file if no run is writing there")
    if not is_gcs(destination):
        try:
            with open(uri, "x", encoding="utf-8") as handle:
                handle.write(token)
        except FileExistsError:
            raise FoldwiseError(busy) from None
        except OSError as err:
            raise FoldwiseError(f"cannot write to {destination} ({err.strerror}): choose "
                                "another --output") from None
        return token
    from google.api_core import exceptions

    if exists(uri):
        raise FoldwiseError(busy)
    with _gcs_errors(uri):
        try:
            _blob(uri).upload_from_string(token, if_generation_match=0, retry=_retry())
        except exceptions.PreconditionFailed:
            raise FoldwiseError(busy) from None
    if read_bytes(uri).decode("utf-8", "replace") != token:  # where preconditions are ignored
        raise FoldwiseError(busy)
    return token


def release(destination: str, token: str) -> None:
    """Remove this run's claim on ``destination`` (left alone if another run's)."""
    uri = join(destination, CLAIM)
    try:
        if read_bytes(uri).decode("utf-8", "replace") != token:
            return
        if is_gcs(uri):
            _blob(uri).delete(retry=_retry(most=RELEASE_SECONDS))
        else:
            Path(uri).unlink()
    except Exception:  # gone already, or unreachable: nothing more to do here
        return


def publish(files: list[tuple[str, Path]], destination: str, about: dict) -> dict:
    """Copy files under ``destination``, then write ``manifest.json`` listing them, LAST.

    A destination without ``manifest.json`` is therefore never a finished export, whatever
    else it holds; a destination that has one is refused rather than written over.

    Args:
        files: ``(name relative to destination, local path)`` pairs.
        destination: Local folder or ``gs://`` prefix.
        about: What the export is (pipeline, versions, data fingerprint, ...).

    Returns:
        The manifest written.
    """
    import hashlib
    import json
    from datetime import datetime, timezone

    manifest_uri = join(destination, MANIFEST)
    if exists(manifest_uri):
        raise FoldwiseError(
            f"{destination} already holds a finished export ({manifest_uri}): choose another "
            "destination; exports are never written over")
    listed = {}
    for name, path in files:
        content = Path(path).read_bytes()
        listed[name] = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        upload(Path(path), join(destination, name))
    manifest = {**about, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "files": listed}
    with tempfile.TemporaryDirectory(prefix="foldwise-") as folder:
        local = Path(folder) / MANIFEST
        local.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        upload(local, manifest_uri)
    return manifest


def folder_files(folder: str | Path, prefix: str) -> list[tuple[str, Path]]:
    """``(prefix/relative path, path)`` for every file below a local folder, sorted."""
    root = Path(folder)
    return [(f"{prefix}/{p.relative_to(root).as_posix()}", p)
            for p in sorted(root.rglob("*")) if p.is_file()]
