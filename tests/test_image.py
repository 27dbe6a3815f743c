"""foldwise's CPU image, built as ``make image`` builds it, and every pipeline run inside it.

No registry here: ``docker/build-image.sh`` builds docker/Dockerfile with podman on a Debian
bookworm base made with debootstrap (Python 3.11, as the default ``python:3.11-slim-bookworm``;
the root filesystem is kept in ``~/.cache/foldwise``), under the default tag that
``--runner container`` runs. ``docker/podman-service.sh`` serves the Docker Engine API that
kfp.local's DockerRunner speaks, on a socket of this session's own.

Each pipeline (cross-validation, grid search with refit and export, random search, halving
search, a notebook's builder, retrain into a local promotion folder, a bucket's table and
export) runs with every step in a container, and answers as the subprocess runner does.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.tables import regression_table

pytestmark = [pytest.mark.image, pytest.mark.local]
ROOT = Path(__file__).resolve().parents[1]
FOLDWISE = Path(sys.executable).parent / "foldwise"
VERSION = "0.1.0"
IMAGE = f"foldwise:{VERSION}-cpu"
# Columns that hold times, which differ run to run; every other column must be equal.
TIMED = ("fit_time", "score_time", "refit_time")


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command[:6]} failed:\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The image built by docker/build-image.sh, and podman's Docker-API service for it.

    Yields the environment a container run needs (``DOCKER_HOST`` set).
    """
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    assert not missing, f"{', '.join(missing)} not installed: run 'make system-packages'"
    run([ROOT / "docker" / "build-image.sh"], cwd=ROOT)
    runtime = tmp_path_factory.mktemp("runtime")
    environment = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    exported = run([ROOT / "docker" / "podman-service.sh"], env=environment).stdout.strip()
    assert exported.startswith("export DOCKER_HOST=unix://")
    socket = exported.split("unix://", 1)[1]
    environment["DOCKER_HOST"] = f"unix://{socket}"
    try:
        yield environment
    finally:
        subprocess.run(["pkill", "-f", f"podman system service --time=0 unix://{socket}"])


def podman(*command: str) -> str:
    environment = {**os.environ, "CONTAINERS_CONF": str(ROOT / "docker" / "containers.conf")}
    return run(["podman", *command], env=environment).stdout


def foldwise(engine: dict, *arguments, runner: str = "subprocess") -> None:
    run([FOLDWISE, "run", *arguments, "--runner", runner], env=engine, cwd=ROOT)


def both_runners(engine: dict, folder: Path, *arguments) -> dict[str, Path]:
    """The same run as subprocesses, then in containers: each runner's output folder."""
    outputs = {}
    for runner in ("subprocess", "container"):
        outputs[runner] = folder / runner
        foldwise(engine, *arguments, "--output", outputs[runner], runner=runner)
    return outputs


def assert_same_results(subprocess_run: Path, container_run: Path) -> pd.DataFrame:
    """The two runs' cv_results.csv, equal but for times; returns the container run's."""
    ours = pd.read_csv(container_run / "cv_results.csv")
    theirs = pd.read_csv(subprocess_run / "cv_results.csv")
    assert list(ours.columns) == list(theirs.columns)
    compared = [c for c in ours.columns if not any(t in c for t in TIMED)]
    assert len(compared) > 10
    pd.testing.assert_frame_equal(ours[compared], theirs[compared], rtol=1e-6, atol=1e-7)
    return ours


def assert_ran_in_containers(output: Path, at_least: int) -> None:
    """Every step's container is in the run's log; the folder is the host user's again."""
    log = (output / "pipeline.log").read_text(encoding="utf-8")
    started = [line for line in log.splitlines() if line.strip().startswith("step container ")]
    assert len(started) >= at_least, log[-2000:]
    assert all(f"of {IMAGE}" in line for line in started)
    # The image's user wrote every artifact; none is left owned by it.
    owners = {entry.stat().st_uid for entry in [output, *output.rglob("*")]}
    assert owners == {os.getuid()}


def test_the_image_holds_exactly_the_pins_and_runs_as_a_plain_user(engine):
    listed = podman("run", "--rm", IMAGE, "python3", "-m", "pip", "list", "--format", "json")
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed)}
    pins = dict(line.split("==") for line in
                (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    checked = {name for name in pins if name.lower() in installed}
    assert {"kfp", "tensorflow", "keras", "jax", "scikit-learn", "pandas",
            "google-cloud-storage"} <= checked
    for name in checked:
        assert installed[name.lower()] == pins[name], name
    assert installed["foldwise"] == VERSION
    assert "No broken requirements" in podman("run", "--rm", IMAGE, "python3", "-m", "pip",
                                              "check")
    assert podman("run", "--rm", IMAGE, "id", "-u").strip() == "1000"


def test_a_step_that_fails_in_its_container_fails_and_is_removed(engine, monkeypatch, tmp_path):
    """kfp.local's own call counts a container that vanished as a success; ours cannot."""
    import docker
    from foldwise.pipelines.containers import Steps

    monkeypatch.setenv("DOCKER_HOST", engine["DOCKER_HOST"])
    client = docker.from_env()
    steps = Steps(IMAGE, [tmp_path], [], "1000")
    with steps.installed():
        assert steps.run_container(client, IMAGE, ["sh", "-c", "exit 3"], {}) == 3
        assert steps.run_container(client, IMAGE, ["sh", "-c", "touch $0/made", str(tmp_path)],
                                   {}) == 0
        assert (tmp_path / "made").stat().st_uid == 1000  # lent to the image's user
        # Ctrl-C: a running step's container is stopped within seconds, and removed
        codes = []
        thread = threading.Thread(target=lambda: codes.append(steps.run_container(
            client, IMAGE, ["sleep", "120"], {})))
        started = time.monotonic()
        thread.start()
        while not steps._running and time.monotonic() - started < 30:
            time.sleep(0.1)
        steps.stop()
        thread.join(30)
        assert codes and codes[0] != 0 and time.monotonic() - started < 30
    assert (tmp_path / "made").stat().st_uid == os.getuid()  # given back
    assert not [c for c in client.containers.list(all=True) if c.image.tags == [
        f"localhost/{IMAGE}"]]
    client.close()


def test_a_missing_image_is_refused_before_anything_is_made(engine, tmp_path):
    done = subprocess.run(
        [FOLDWISE, "run", "cross-validation", "--data", "examples/penguins.csv", "--target",
         "species", "--runner", "container", "--image", "foldwise:not-built",
         "--output", tmp_path / "run"], capture_output=True, text=True, env=engine, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: the engine at {engine['DOCKER_HOST']} has no image foldwise:not-built: build "
        "it with 'make image' in foldwise's clone (or pass --image with a foldwise image the "
        "engine holds)"]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def cross_validation(engine, tmp_path_factory):
    return both_runners(engine, tmp_path_factory.mktemp("cv"), "cross-validation", "--data",
                        "examples/penguins.csv", "--target", "species", "--folds", "3",
                        "--epochs", "4", "--seed", "3")


def test_cross_validation_in_containers_answers_as_subprocesses(cross_validation):
    cv = assert_same_results(cross_validation["subprocess"], cross_validation["container"])
    assert len(cv) == 1
    assert_ran_in_containers(cross_validation["container"], 8)


GRID = "hidden_units: [[8], [16, 8]]\nlearning_rate: [0.001, 0.03]\n"


@pytest.fixture(scope="module")
def grid_search(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    # the table outside the run folder: the container sees its folder, read-only
    data, grid = tmp / "tables" / "table.parquet", tmp / "grid.yaml"
    data.parent.mkdir()
    regression_table().to_parquet(data, index=False)
    grid.write_text(GRID)
    return data, both_runners(engine, tmp, "grid-search", "--data", data, "--target", "y",
                              "--grid", grid, "--folds", "3", "--epochs", "5", "--batch-size",
                              "16", "--seed", "2")


def test_a_grid_search_in_containers_refits_and_exports_as_subprocesses(grid_search):
    from foldwise.pipelines.models import load_model

    data, outputs = grid_search
    cv = assert_same_results(outputs["subprocess"], outputs["container"])
    assert len(cv) == 4
    assert_ran_in_containers(outputs["container"], 10)
    for name in ("model/config.json", "best_params.json"):
        assert (outputs["container"] / name).read_text() == \
            (outputs["subprocess"] / name).read_text(), name
    rows = pd.read_parquet(data).drop(columns="y")
    ours = load_model(outputs["container"]).predict(rows)
    theirs = load_model(outputs["subprocess"]).predict(rows)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def halving_search(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("halving")
    space = tmp / "space.yaml"
    space.write_text(json.dumps({"hidden_units": [[4], [8], [16, 8]],
                                 "learning_rate": {"loguniform": [0.001, 0.05]}}))
    return both_runners(engine, tmp, "halving-search", "--data", "examples/penguins.csv",
                        "--target", "species", "--grid", space, "--n-candidates", "3",
                        "--factor", "2", "--folds", "2", "--epochs", "3", "--seed", "5")


def test_a_halving_search_in_containers_answers_as_subprocesses(halving_search):
    cv = assert_same_results(halving_search["subprocess"], halving_search["container"])
    assert sorted(cv["iter"].unique()) == [0, 1]
    assert_ran_in_containers(halving_search["container"], 10)
    summaries = [json.loads((halving_search[r] / "summary.json").read_text())
                 for r in ("subprocess", "container")]
    assert summaries[0]["halving"] == summaries[1]["halving"]
    assert summaries[0]["best_config_id"] == summaries[1]["best_config_id"]


NOTEBOOK = textwrap.dedent('''
    import sys

    import keras
    import pandas as pd
    from palmerpenguins import load_penguins

    import foldwise

    WIDTH = 12  # a notebook's global, which the builder uses


    def create_model(meta, hidden=WIDTH, dropout=0.0):
        model = keras.Sequential([keras.Input(shape=(meta["n_features_in_"],)),
                                  keras.layers.Dense(hidden, activation="relu"),
                                  keras.layers.Dropout(dropout),
                                  keras.layers.Dense(meta["n_classes_"], activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model


    runner, output = sys.argv[1], sys.argv[2]
    table = load_penguins().dropna(subset=["species"])
    search = foldwise.GridSearchCV({"model__hidden": [6, 12], "model__dropout": [0.0, 0.2]},
                                   model=create_model, cv=2, epochs=3, random_state=1,
                                   output=output, verbose=False, runner=runner)
    search.fit(table.drop(columns="species"), table["species"])
    print(search.best_params_)
''')


@pytest.fixture(scope="module")
def notebook_builder(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notebook")
    script = tmp / "notebook.py"
    script.write_text(NOTEBOOK)
    outputs = {}
    for runner in ("subprocess", "container"):
        outputs[runner] = tmp / runner
        run([sys.executable, script, runner, outputs[runner]], env=engine, cwd=tmp)
    return outputs


def test_a_notebooks_builder_travels_into_the_containers_and_trains_there(notebook_builder):
    cv = assert_same_results(notebook_builder["subprocess"], notebook_builder["container"])
    assert len(cv) == 4
    assert_ran_in_containers(notebook_builder["container"], 10)
    from palmerpenguins import load_penguins

    from foldwise.pipelines.models import load_model

    rows = load_penguins().dropna(subset=["species"]).drop(columns="species").head(40)
    ours = load_model(notebook_builder["container"]).predict_proba(rows)
    theirs = load_model(notebook_builder["subprocess"]).predict_proba(rows)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_containerized_grid_search_reads_and_exports_through_a_bucket(engine, bucket,
                                                                          grid_search):
    """The cluster's data path: the table from gs://, the export to gs://, from containers."""
    from foldwise.pipelines.models import load_model

    data, outputs = grid_search
    bucket.blob("tables/table.parquet").upload_from_filename(str(data))
    grid = data.parent.parent / "grid.yaml"
    environment = {**engine, "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]}
    destination = f"gs://{bucket.name}/runs/grid"
    foldwise(environment, "grid-search", "--data", f"gs://{bucket.name}/tables/table.parquet",
             "--target", "y", "--grid", grid, "--folds", "3", "--epochs", "5", "--batch-size",
             "16", "--seed", "2", "--output", destination, runner="container")
    names = {blob.name for blob in bucket.list_blobs(prefix="runs/grid/")}
    assert {"runs/grid/cv_results.csv", "runs/grid/manifest.json",
            "runs/grid/model/config.json"} <= names
    exported = load_model(destination)
    rows = pd.read_parquet(data).drop(columns="y")
    np.testing.assert_allclose(exported.predict(rows),
                               load_model(outputs["subprocess"]).predict(rows),
                               rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def random_search(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("random")
    space = tmp / "space.yaml"
    space.write_text(json.dumps({"hidden_units": [[4], [8], [16, 8]],
                                 "learning_rate": {"loguniform": [0.001, 0.05]}}))
    return both_runners(engine, tmp, "random-search", "--data", "examples/penguins.csv",
                        "--target", "species", "--grid", space, "--n-iter", "3", "--folds",
                        "2", "--epochs", "3", "--seed", "9")


def test_a_random_search_in_containers_answers_as_subprocesses(random_search):
    cv = assert_same_results(random_search["subprocess"], random_search["container"])
    assert len(cv) == 3
    assert_ran_in_containers(random_search["container"], 8)


def test_a_retrain_in_containers_promotes_into_its_local_folder(engine, tmp_path):
    """The promotion folder outside the run folder is mounted, written and given back.

    Everything sits in pytest's 0700 folder, and the table only root may read: the table
    file is mounted by itself and lent to the image's user for the run.
    """
    data = tmp_path / "table.parquet"
    regression_table().to_parquet(data, index=False)
    data.chmod(0o600)
    grids = {"first": "hidden_units: [[8]]\nlearning_rate: [0.01]\nepochs: [8]\n",
             "worse": "hidden_units: [[2]]\nlearning_rate: [0.000001]\nepochs: [1]\n"}
    for name, text in grids.items():
        (tmp_path / f"{name}.yaml").write_text(text)

    def retrain(runner: str, grid: str, promote_to: Path) -> dict:
        foldwise(engine, "retrain", "--data", data, "--target", "y", "--grid",
                 tmp_path / f"{grid}.yaml", "--folds", "2", "--batch-size", "16", "--seed",
                 "1", "--promote-to", promote_to, "--workspace",
                 tmp_path / f"{runner}-{grid}-{promote_to.name}", runner=runner)
        return json.loads((promote_to / "current.json").read_text())

    ours = retrain("container", "first", tmp_path / "promoted-here")
    theirs = retrain("subprocess", "first", tmp_path / "promoted-there")
    assert ours["config_id"] == theirs["config_id"]
    assert ours["reason"] == "nothing was promoted yet"
    kept = retrain("container", "worse", tmp_path / "promoted-here")
    assert kept == ours  # the champion stays served
    promoted = tmp_path / "promoted-here"
    assert {entry.stat().st_uid for entry in [promoted, *promoted.rglob("*")]} == {os.getuid()}
    assert len(list((promoted / "versions").iterdir())) == 2  # the challenger, not promoted
    assert data.stat().st_uid == os.getuid() and data.stat().st_mode & 0o777 == 0o600


def test_ctrl_c_stops_every_running_container_and_publishes_nothing(engine, tmp_path):
    import signal

    import docker

    output = tmp_path / "interrupted"
    client = docker.DockerClient(base_url=engine["DOCKER_HOST"])
    before = {c.id for c in client.containers.list(all=True)}
    process = subprocess.Popen(
        [str(FOLDWISE), "run", "cross-validation", "--data", "examples/penguins.csv",
         "--target", "species", "--epochs", "3000", "--runner", "container", "--output",
         str(output)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=engine,
        cwd=ROOT)
    deadline = time.monotonic() + 300
    while not list(output.glob("pipeline/*/*/train")):  # the train step's container runs
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(3)
    os.kill(process.pid, signal.SIGINT)
    started = time.monotonic()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and time.monotonic() - started < 30, err[-2000:]
    assert "Traceback" not in err
    assert not (output / "manifest.json").exists()
    try:  # every container the run started is stopped and removed
        assert {c.id for c in client.containers.list(all=True)} - before == set()
    finally:
        client.close()
    assert {entry.stat().st_uid for entry in [output, *output.rglob("*")]} == {os.getuid()}
