import os
import sys
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
PENGUINS = ROOT / "examples" / "penguins.csv"

# The test process itself runs Keras on TensorFlow, whatever a test calls first; pipeline
# steps, each a process of its own, choose theirs (core.training.vmapped.select_backend), and
# tests/helpers/vmapped_checks.py runs the JAX engine in a process of its own.
import keras  # noqa: E402, F401


@pytest.fixture(scope="session")
def penguins() -> pd.DataFrame:
    return pd.read_csv(PENGUINS)


@pytest.fixture
def small_table() -> pd.DataFrame:
    """12 rows, two classes, a numeric column with a gap and a categorical one with a gap."""
    return pd.DataFrame({
        "size": [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0],
        "colour": ["red", "blue", "red", None, "green", "blue", "red", "blue", "green", "red",
                   "blue", "green"],
        "label": ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", "b"],
    })


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """A real GCS-compatible server (gcp-storage-emulator) on loopback, for this session."""
    import subprocess
    import time
    import urllib.request

    port = _free_port()
    host = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with open(log, "w") as handle:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start",
             "--host=127.0.0.1", f"--port={port}", "--in-memory"],
            stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{host}/storage/v1/b?project=test", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"GCS emulator did not start: {log.read_text()}") from None
                time.sleep(0.2)
        yield host
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def bucket(gcs_server, monkeypatch, request):
    """A fresh bucket on the loopback GCS server; STORAGE_EMULATOR_HOST points at it."""
    import re

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    import hashlib

    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    name = re.sub(r"[^a-z0-9-]", "-", f"t-{request.node.name.lower()}")[:50].strip("-")
    name = f"{name}-{digest}"
    return client.create_bucket(name)
