"""The CPU image builds from docker/Dockerfile and runs a compiled component, as KFP runs it.

No Docker engine and no registry here: buildah builds the Dockerfile (vfs storage, chroot
isolation) on a Debian bookworm base made with debootstrap (Python 3.11, as the default
``python:3.11-slim-bookworm``), passed in through ``BASE_IMAGE``. The component's command and
arguments are taken from its compiled YAML, with a hand-written executor input, and run inside
the image with the input and output folders mounted. About 4 minutes cold; the base root
filesystem is kept in ``~/.cache/foldwise`` for the next run.
"""

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from foldwise.pipelines.packaging import compile_components

pytestmark = pytest.mark.image
ROOT = Path(__file__).resolve().parents[1]
BASE_CACHE = Path.home() / ".cache" / "foldwise" / "debian-bookworm-python3.tar"
MIRROR_FILE = Path("/etc/apt/sources.list.d/debian.sources")


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command[:6]} failed:\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    return done


def debian_base(work: Path) -> Path:
    """A bookworm root filesystem with python3 and pip, as a tar (cached)."""
    if BASE_CACHE.exists():
        return BASE_CACHE
    mirror = "http://deb.debian.org/debian"
    if MIRROR_FILE.exists():
        mirror = next((line.split()[1] for line in MIRROR_FILE.read_text().splitlines()
                       if line.startswith("URIs:")), mirror)
    rootfs = work / "rootfs"
    run(["debootstrap", "--variant=minbase", "--include=python3,python3-pip,ca-certificates",
         "bookworm", rootfs, mirror])
    # Behave like the official python image: pip may install system-wide.
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    # Trust the same certificate authorities as this machine (its package index may need it).
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt",
                    rootfs / "etc/ssl/certs/ca-certificates.crt")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / cache, ignore_errors=True)
    BASE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    partial = BASE_CACHE.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        tar.add(rootfs, arcname=".")
    partial.replace(BASE_CACHE)
    shutil.rmtree(rootfs)
    return BASE_CACHE


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """Build localhost/foldwise:test; yield the buildah command prefix and a container."""
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    assert not missing, f"{', '.join(missing)} not installed: run 'make setup' (needs root)"
    work = tmp_path_factory.mktemp("image")
    buildah = ["buildah", "--root", work / "storage", "--runroot", work / "runroot",
               "--storage-driver", "vfs"]
    try:
        context = work / "base"
        context.mkdir()
        base = debian_base(work)
        try:
            os.link(base, context / "rootfs.tar")
        except OSError:  # another file system
            shutil.copyfile(base, context / "rootfs.tar")
        (context / "Containerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n')
        run([*buildah, "bud", "--isolation", "chroot", "-t", "localhost/foldwise-base:bookworm",
             "-f", context / "Containerfile", context])
        run([*buildah, "bud", "--isolation", "chroot",
             "--build-arg", "BASE_IMAGE=localhost/foldwise-base:bookworm",
             "--build-arg", "VARIANT=cpu", "-t", "localhost/foldwise:test",
             "-f", ROOT / "docker" / "Dockerfile", ROOT])
        run([*buildah, "from", "--name", "foldwise-test", "localhost/foldwise:test"])
        yield buildah, "foldwise-test"
    finally:
        subprocess.run([str(c) for c in [*buildah, "rm", "-a"]], capture_output=True)
        subprocess.run([str(c) for c in [*buildah, "rmi", "-a", "-f"]], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def test_the_image_holds_the_pinned_versions_and_runs_as_a_plain_user(image):
    buildah, container = image
    listed = run([*buildah, "run", "--isolation", "chroot", container, "--", "python3", "-m",
                  "pip", "list", "--format", "json"]).stdout
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed)}
    pins = dict(line.split("==") for line in
                (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    checked = {name for name in pins if name.lower() in installed}
    assert {"kfp", "tensorflow", "keras", "scikit-learn", "pandas", "google-cloud-storage"} \
        <= checked
    for name in checked:
        assert installed[name.lower()] == pins[name], name
    assert installed["foldwise"] == "0.1.0"
    user = run([*buildah, "run", "--isolation", "chroot", container, "--", "id", "-u"]).stdout
    assert user.strip() == "1000"


def test_a_compiled_component_runs_inside_the_image(image, tmp_path):
    """The preprocess component's own command, as KFP's launcher would start it."""
    buildah, container = image
    compiled = tmp_path / "components"
    compiled.mkdir()
    compile_components(compiled)
    spec = yaml.safe_load((compiled / "preprocess.yaml").read_text())
    (executor,) = [e["container"] for e in spec["deploymentSpec"]["executors"].values()]
    assert executor["image"] == "foldwise:0.1.0-cpu"
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    outputs.chmod(0o777)  # the image's user (uid 1000) writes here
    shutil.copyfile(ROOT / "examples" / "penguins.csv", inputs / "penguins.csv")

    def artifact(name, title):
        return {"artifacts": [{"name": name, "uri": f"/io/out/{name}", "metadata": {},
                               "type": {"schemaTitle": title, "schemaVersion": "0.0.1"}}]}

    executor_input = {
        "inputs": {"parameterValues": {"data": "/io/in/penguins.csv", "target": "species",
                                       "folds": 5, "seed": 0}},
        "outputs": {
            "artifacts": {"prepared": artifact("prepared", "system.Dataset"),
                          "fold_assignment": artifact("fold_assignment", "system.Dataset"),
                          "schema": artifact("schema", "system.Artifact")},
            "parameters": {"Output": {"outputFile": "/io/out/Output"}},
            "outputFile": "/io/out/executor_output.json",
        },
    }
    arguments = [a.replace("{{$}}", json.dumps(executor_input)) for a in executor["args"]]
    run([*buildah, "run", "--isolation", "chroot", "-v", f"{inputs}:/io/in:ro",
         "-v", f"{outputs}:/io/out", container, "--", *executor["command"], *arguments])

    result = json.loads((outputs / "executor_output.json").read_text())
    assert result["parameterValues"]["Output"] == [0, 1, 2, 3, 4]
    prepared = pd.read_parquet(outputs / "prepared")
    raw = pd.read_csv(ROOT / "examples" / "penguins.csv")
    assert len(prepared) == raw["species"].notna().sum()
    folds = pd.read_csv(outputs / "fold_assignment")["fold"].value_counts()
    assert sorted(folds.index) == [0, 1, 2, 3, 4] and folds.max() - folds.min() <= 1
    assert json.loads((outputs / "schema").read_text())["task"] == "classification"
