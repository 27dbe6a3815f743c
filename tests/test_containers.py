"""The container runner's parts that need no engine: mounts, lent folders, the refusals.

The runs themselves, every step in foldwise's image, are in tests/test_image.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from foldwise.pipelines.containers import Steps, lent

ROOT = Path(__file__).resolve().parents[1]
FOLDWISE = Path(sys.executable).parent / "foldwise"


def test_each_folder_is_mounted_once_at_its_own_path(tmp_path):
    run, table, promoted = tmp_path / "run", tmp_path / "tables", tmp_path / "run" / "models"
    steps = Steps("foldwise:x", [run, promoted, run], [table, run / "data"])
    assert steps.volumes() == {str(table): {"bind": str(table), "mode": "ro"},
                               str(run): {"bind": str(run), "mode": "rw"}}
    # a writable folder inside a read-only one keeps its own, writable mount
    inner = Steps("foldwise:x", [table / "out"], [table]).volumes()
    assert inner[str(table / "out")]["mode"] == "rw" and inner[str(table)]["mode"] == "ro"


def test_a_step_gets_the_settings_it_reads_and_nothing_else(monkeypatch):
    monkeypatch.setenv("FOLDWISE_RESUME", "1")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9023")
    monkeypatch.setenv("FOLDWISE_JAX_CACHE", "/host/only/cache")  # a host path: not passed
    monkeypatch.setenv("SECRET_TOKEN", "x")
    environment = Steps("foldwise:x", [], []).environment({"TASK_SETTING": "y"})
    assert environment["FOLDWISE_RESUME"] == "1"
    assert environment["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:9023"
    assert environment["TASK_SETTING"] == "y"
    assert "FOLDWISE_JAX_CACHE" not in environment and "SECRET_TOKEN" not in environment


@pytest.mark.skipif(os.getuid() != 0, reason="lending folders to the image's user needs root")
def test_folders_are_lent_to_the_images_user_and_given_back(tmp_path):
    run = tmp_path / "run"
    (run / "pipeline").mkdir(parents=True)
    (run / "data.parquet").write_bytes(b"x")
    os.chown(run / "data.parquet", 4321, 4321)  # someone else's, before the run
    with lent([run, run / "pipeline", run], "1000"):
        owners = {entry.stat().st_uid for entry in [run, *run.rglob("*")]}
        assert owners == {1000}
        (run / "pipeline" / "made").write_text("by a step")
        os.chown(run / "pipeline" / "made", 1000, 1000)
    assert (run / "data.parquet").stat().st_uid == 4321  # its owner put back
    for entry in (run, run / "pipeline", run / "pipeline" / "made"):
        assert (entry.stat().st_uid, entry.stat().st_gid) == (0, 0), entry
    with lent([run], "0"):  # an image that runs as root borrows nothing
        assert run.stat().st_uid == 0


def test_no_engine_is_refused_in_one_line_before_anything_is_made(tmp_path):
    done = subprocess.run(
        [FOLDWISE, "run", "cross-validation", "--data", "examples/penguins.csv", "--target",
         "species", "--runner", "container", "--output", tmp_path / "run"],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --runner container needs a Docker-API engine, and none answers at "
        f"unix://{tmp_path}/no-engine.sock (nothing listens there): start Docker, or podman's "
        "Docker-API service (eval \"$(docker/podman-service.sh)\" in foldwise's clone), and "
        "set DOCKER_HOST to its socket"]
    assert not (tmp_path / "run").exists()


def test_an_unknown_runner_is_refused_by_the_command_line_and_python(tmp_path):
    done = subprocess.run(
        [FOLDWISE, "run", "cross-validation", "--data", "examples/penguins.csv", "--target",
         "species", "--runner", "kubernetes"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "invalid choice: 'kubernetes'" in done.stderr
    import foldwise
    from foldwise.components.core.errors import FoldwiseError

    with pytest.raises(FoldwiseError, match="runner 'pods' is not one of subprocess, container"):
        foldwise.cross_validate(ROOT / "examples" / "penguins.csv", "species", runner="pods",
                                output=str(tmp_path / "run"), verbose=False)
    assert not (tmp_path / "run").exists()
