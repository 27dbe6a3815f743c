"""Bad input and a hostile environment: one error line, the right exit code, nothing half done.

Files that are not what their names say, grids that are not YAML, destinations that cannot
be written or that another run holds, values the model cannot answer, and errors foldwise
did not foresee: each ends in one ``error:`` line (exit 2 for a user's mistake, 1 for the
environment or a bug, the traceback in a log file), never a traceback on the terminal.
"""

import gzip
import json
import re
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from foldwise.components import storage
from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.data.table import read_table
from foldwise.components.core.errors import FoldwiseError
from foldwise.pipelines import cli, display
from foldwise.pipelines.cli import main


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ----- files that are not what their names say ------------------------------------------------
def test_a_compressed_tsv_is_read_with_tabs(tmp_path):
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress(b"a\tb,c\ty\n1\t2,5\t3\n4\t5\t6\n"))
    table = read_table(path)
    assert list(table.columns) == ["a", "b,c", "y"] and table["b,c"].tolist() == ["2,5", "5"]


@pytest.mark.parametrize("name", ["t.csv.gz", "t.csv.bz2", "t.csv.zip", "t.csv.xz",
                                  "t.tsv.zst"])
def test_a_file_named_compressed_that_is_not_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,y\n1,2\n")
    with pytest.raises(FoldwiseError, match=r"is named \.\w+ but is not \w+-compressed: "
                                            r"rename it to t\.[ct]sv"):
        read_table(path)


def test_a_truncated_compressed_file_is_refused(tmp_path):
    path = tmp_path / "t.csv.gz"
    rows = "".join(f"{i * 7919 % 10007},{i * 104729 % 1000003}\n" for i in range(20000))
    whole = gzip.compress(("a,y\n" + rows).encode())
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(FoldwiseError, match="cannot be decompressed"):
        read_table(path)


def test_a_parquet_file_with_nested_columns_is_refused(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"tags": [[1, 2], [3]], "point": [{"x": 1}, {"x": 2}],
                             "y": [1.0, 2.0]}), path)
    with pytest.raises(FoldwiseError, match=r"nested .*\['tags', 'point'\]"):
        read_table(path)


@pytest.mark.parametrize("content, message", [
    (b"units: [1, 2\n  bad: : :\n", r"not valid YAML \(line \d+, column \d+: "),
    (b"\xff\xfe\x00units", "not UTF-8 text"),
])
def test_a_broken_grid_file_is_one_line(tmp_path, capsys, content, message, penguins):
    grid = tmp_path / "grid.yaml"
    grid.write_bytes(content)
    data = tmp_path / "p.csv"
    penguins.to_csv(data, index=False)
    assert main(["run", "grid-search", "--data", str(data), "--target", "species",
                 "--grid", str(grid), "--output", str(tmp_path / "out")]) == 2
    assert re.search(message, one_error_line(capsys))
    assert not (tmp_path / "out").exists()


# ----- destinations ------------------------------------------------------------------------
def test_a_local_destination_another_run_holds_is_refused(tmp_path, capsys, penguins):
    data = tmp_path / "p.csv"
    penguins.to_csv(data, index=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / storage.CLAIM).write_text("another run")
    assert main(["run", "cross-validation", "--data", str(data), "--target", "species",
                 "--output", str(out)]) == 2
    assert "already exists and is not empty" in one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == [storage.CLAIM]


def test_claims_are_exclusive_and_released_by_their_owner_only(tmp_path):
    folder = str(tmp_path)
    token = storage.claim(folder)
    with pytest.raises(FoldwiseError, match="another run is writing to"):
        storage.claim(folder)
    storage.release(folder, "someone else's token")
    assert (tmp_path / storage.CLAIM).exists()
    storage.release(folder, token)
    assert not (tmp_path / storage.CLAIM).exists()


def test_an_unwritable_local_destination_is_refused_before_any_step(tmp_path, capsys,
                                                                     penguins):
    data = tmp_path / "p.csv"
    penguins.to_csv(data, index=False)
    assert main(["run", "cross-validation", "--data", str(data), "--target", "species",
                 "--output", "/proc/foldwise-out"]) == 2
    assert "cannot create output folder /proc/foldwise-out" in one_error_line(capsys)


def test_a_bucket_destination_another_run_holds_is_refused_before_any_step(
        bucket, tmp_path, capsys, penguins, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "p.csv"
    penguins.to_csv(data, index=False)
    destination = f"gs://{bucket.name}/runs/one"
    bucket.blob(f"runs/one/{storage.CLAIM}").upload_from_string("another run")
    assert main(["run", "cross-validation", "--data", str(data), "--target", "species",
                 "--output", destination]) == 2
    assert f"another run is writing to {destination}" in one_error_line(capsys)
    assert not list(tmp_path.glob("foldwise-runs/*"))  # no run folder left behind
    assert storage.read_bytes(f"{destination}/{storage.CLAIM}") == b"another run"


def test_a_missing_bucket_is_refused_before_any_step(bucket, tmp_path, capsys, penguins,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "p.csv"
    penguins.to_csv(data, index=False)
    assert main(["run", "cross-validation", "--data", str(data), "--target", "species",
                 "--output", f"gs://{bucket.name}-gone/runs"]) == 2
    assert "does not exist" in one_error_line(capsys)


# ----- failure classes ------------------------------------------------------------------------
def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("foldwise 0.")


@pytest.mark.parametrize("error, words", [
    (PermissionError(13, "Permission denied", "/data/x.csv"),
     "the system refused an operation (/data/x.csv): Permission denied"),
    (OSError(28, "No space left on device"), "No space left on device; check permissions"),
    (KeyError("surprise"), "foldwise failed unexpectedly (KeyError: 'surprise'); this is a bug"),
])
def test_unforeseen_errors_are_one_line_with_a_log(monkeypatch, capsys, tmp_path, error, words):
    def broken(args):
        raise error

    monkeypatch.setattr(cli, "compile_command", broken)
    monkeypatch.setattr(cli.tempfile, "gettempdir", lambda: str(tmp_path))
    assert main(["compile", "cross-validation", "--out", str(tmp_path / "p.yaml")]) == 1
    line = one_error_line(capsys)
    assert words in line
    (log,) = tmp_path.glob("foldwise-error-*.log")
    assert line.endswith(f"full log: {log}") and "Traceback" in log.read_text()


def test_the_local_engine_does_not_retry_a_failed_step(tmp_path):
    from kfp import compiler

    from foldwise.pipelines.dags.cluster import LOCAL, ClusterSettings
    from foldwise.pipelines.dags.cross_validation import build_cross_validation

    for settings, retried in ((LOCAL, False), (ClusterSettings(), True)):
        out = tmp_path / f"{retried}.yaml"
        compiler.Compiler().compile(build_cross_validation(settings), str(out))
        assert ("retryPolicy" in out.read_text()) is retried


# ----- no silent wrong answers ------------------------------------------------------------------
def test_formatted_numbers_and_dates_are_named_in_warnings(capsys):
    table = pd.DataFrame({"amount": ["1,234.50", "12", "3,000", "45", "7", "8"],
                          "day": ["2024-01-05", "2024-02-01", "2024-03-09", "2024-04-01",
                                  "2024-05-01", "2024-06-01"],
                          "kind": list("ababab"), "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.5]})
    _, schema = preprocess(table, PreprocessOptions(target="y", folds=2))
    assert len(schema["warnings"]) == 2
    assert "'amount' holds numbers written with thousands separators" in schema["warnings"][0]
    assert "'day' looks like dates" in schema["warnings"][1]
    plan = SimpleNamespace(schema=schema, configs=[{"params": {}}], data="t.csv",
                           search=SimpleNamespace(pipeline="cross-validation"))
    display.describe_plan(plan, "out", "out")
    err = capsys.readouterr().err
    assert err.count("\nwarning  column ") == 2


def test_no_warning_for_plain_categories():
    table = pd.DataFrame({"kind": list("abcabc"), "code": ["12", "7", "9", "1", "2", "3"],
                          "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    _, schema = preprocess(table, PreprocessOptions(target="y", folds=2,
                                                    categorical=("code",)))
    assert schema["warnings"] == []


def test_json_and_yaml_grids_still_load(tmp_path):
    from foldwise.components.core.search.grid import load_grid

    for name, text in (("g.yaml", yaml.safe_dump({"learning_rate": [0.1]})),
                       ("g.json", json.dumps({"learning_rate": [0.1]}))):
        (tmp_path / name).write_text(text)
        assert load_grid(tmp_path / name) == [{"learning_rate": [0.1]}]


# ----- interrupts -----------------------------------------------------------------------------
def processes_mentioning(text: str) -> list[int]:
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in entry.joinpath("cmdline").read_bytes().decode("utf-8", "replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def interrupt_when(command: list[str], output, pattern: str, settle: float = 0.0):
    """Start ``foldwise`` with ``command``; SIGINT its own process once ``pattern`` exists.

    Returns the process, interrupted (not yet waited for), and when the signal was sent.
    """
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    process = subprocess.Popen([str(Path(sys.executable).parent / "foldwise"), *command],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(output.glob(pattern)):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(settle)
    os.kill(process.pid, signal.SIGINT)  # the run's own process only, not its group
    return process, time.monotonic()


@pytest.mark.local
def test_ctrl_c_stops_every_step_at_once_and_publishes_nothing(tmp_path, penguins):
    import time

    data = tmp_path / "p.csv"
    penguins.to_csv(data, index=False)
    output = tmp_path / "interrupted-run"
    process, started = interrupt_when(
        ["run", "cross-validation", "--data", str(data), "--target", "species", "--epochs",
         "3000", "--output", str(output)], output, "pipeline/*/for-loop-*/train", settle=3)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and time.monotonic() - started < 20
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [f"error: interrupted; every step was stopped and nothing was published; "
                     f"the partial run is in {output}"]
    assert "Traceback" not in err
    assert not (output / "manifest.json").exists() and not (output / "summary.json").exists()
    assert not (output / storage.CLAIM).exists()
    assert processes_mentioning(str(output)) == []


# ----- high-cardinality columns ---------------------------------------------------------------
def test_an_identifier_column_is_named_in_a_warning():
    table = pd.DataFrame({"id": [f"row-{i}" for i in range(60)], "x": range(60),
                          "y": [float(i % 7) for i in range(60)]})
    _, schema = preprocess(table, PreprocessOptions(target="y", folds=2))
    (note,) = schema["warnings"]
    assert "'id' has a different value in every row (60 of 60)" in note and "--drop id" in note


def test_a_one_hot_encoding_too_large_to_hold_is_refused_with_the_columns(monkeypatch):
    from foldwise.components.core.data import preprocess as module

    monkeypatch.setattr(module, "MAX_ONE_HOT_CELLS", 60 * 50)
    table = pd.DataFrame({"city": [f"c{i % 55}" for i in range(60)], "kind": list("ab") * 30,
                          "y": [float(i % 7) for i in range(60)]})
    with pytest.raises(FoldwiseError, match=r"60 rows × 57 levels .* the largest: 'city' "
                                            r"\(55 levels\), 'kind' \(2 levels\): leave such "
                                            "columns out with --drop"):
        preprocess(table, PreprocessOptions(target="y", folds=2))


@pytest.mark.local
def test_an_interrupted_search_resumes_taking_over_its_finished_trials(tmp_path, penguins,
                                                                        monkeypatch):
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "p.csv"
    penguins.sample(150, random_state=4).to_csv(data, index=False)
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"learning_rate": [0.01, 0.003]}))
    output = tmp_path / "search"
    command = ["run", "grid-search", "--data", str(data), "--target", "species", "--grid",
               str(grid), "--folds", "2", "--epochs", "60", "--packing", "none", "--output",
               str(output)]
    process, _ = interrupt_when(command, output,  # once one train task has finished
                                "pipeline/*/*/train/model/reuse.json")
    process.communicate(timeout=60)
    assert process.returncode == 130 and not (output / "manifest.json").exists()
    finished = {}
    for record in output.glob("pipeline/*/*/train/model/reuse.json"):
        finished.update(json.loads(record.read_text()))
    assert 1 <= len(finished) < 4

    foldwise = str(Path(sys.executable).parent / "foldwise")

    def snapshot() -> dict:
        return {str(p.relative_to(output)): (p.stat().st_size, p.stat().st_mtime_ns)
                if p.is_file() else "folder" for p in output.rglob("*")}

    # Resuming with another search (a user error of the resumed command: another loss, other
    # epochs, another table) is refused before anything in the folder is touched.
    before = snapshot()
    other = tmp_path / "other.csv"
    penguins.sample(150, random_state=5).to_csv(other, index=False)
    for changed, named in [(["--loss", "kl_divergence"], "the model options"),
                           (["--epochs", "7"], "the model options"),
                           (["--data", str(other)], "the table")]:
        given = [*command[:-2], "--resume", str(output), *changed]
        refused = subprocess.run([foldwise, *given], capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert f"holds a run of another search ({named}" in refused.stderr, refused.stderr
        assert snapshot() == before

    # A user error that only a step finds, in a resumed run: what that run added is taken
    # away again, and the earlier run's folder (its finished trials) stays as it was.
    from foldwise.pipelines import cli as command_line
    from foldwise.pipelines import engine

    def failing_step(pipeline, arguments, root, log_path, *rest):
        (root / "foldwise-grid-search-resumed").mkdir()
        with open(log_path, "a") as log:
            log.write("FoldwiseError: a step's own complaint\n")
        raise engine.PipelineFailed("Task 'train' failed: a step's own complaint", log_path,
                                    True)

    monkeypatch.setattr(engine, "run_local", failing_step)
    assert command_line.main([*command[:-2], "--resume", str(output)]) == 2
    assert snapshot() == before
    monkeypatch.undo()

    done = subprocess.run([foldwise, *command[:-2], "--resume", str(output)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (output / "manifest.json").exists() and (output / "model" / "model.keras").exists()
    cv = pd.read_csv(output / "cv_results.csv").set_index("config_id")
    assert len(cv) == 2 and cv["mean_test_accuracy"].notna().all()
    runs = sorted({p.parts[-5] for p in output.glob("pipeline/*/*/train/model/reuse.json")})
    assert len(runs) == 2  # the interrupted run and the resumed one, in one pipeline folder
    resumed = {}
    for results in output.glob(f"pipeline/{runs[-1]}/*/train/results"):
        for entry in json.loads(results.read_text()):
            resumed[(entry["config_id"], entry["fold"])] = entry
    taken = [e for e in resumed.values() if e["devices"].get("resumed")]
    assert len(resumed) == 4 and len(taken) == len(finished)  # the rest trained anew
    for record in finished.values():
        entry = resumed[(record["config_id"], record["fold"])]
        assert entry["scores"] == record["scores"] and entry["devices"]["resumed"]
        assert cv.loc[record["config_id"], f"split{record['fold']}_test_accuracy"] == \
            pytest.approx(record["scores"]["accuracy"])


@pytest.mark.local
def test_a_pack_stopped_mid_training_resumes_from_its_last_finished_epoch(tmp_path, penguins):
    """The resumed run's train task starts from the checkpoint its twin left, not epoch 0."""
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from foldwise.components.core.training.vmapped import CHECKPOINT_FILE

    data = tmp_path / "p.csv"
    penguins.sample(120, random_state=1).to_csv(data, index=False)
    output = tmp_path / "run"
    command = ["run", "cross-validation", "--data", str(data), "--target", "species",
               "--folds", "3", "--epochs", "1200", "--seed", "4"]
    # the checkpoints themselves, not a temporary file an interrupted write leaves beside them
    checkpoints = f"pipeline/*/*/train/model/checkpoint/**/{CHECKPOINT_FILE}"
    process, _ = interrupt_when([*command, "--output", str(output)], output, checkpoints,
                                settle=2)
    process.communicate(timeout=60)
    assert process.returncode == 130
    saved = list(output.glob(checkpoints))
    assert saved  # one per group of the pack (members of like rows train together)
    stopped = []
    for path in saved:
        with np.load(path) as arrays:
            stopped.append(int(arrays["epochs"]))
    stopped_at = min(stopped)
    assert 0 < stopped_at and max(stopped) < 1200

    done = subprocess.run([str(Path(sys.executable).parent / "foldwise"), *command,
                           "--resume", str(output)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted({p.parts[-4] for p in output.glob("pipeline/*/*/train/results")})
    assert len(runs) == 1  # only the resumed run's train task finished
    (results,) = output.glob("pipeline/*/*/train/results")
    entries = json.loads(results.read_text())
    assert len(entries) == 3
    assert all(e["devices"].get("resumed_from_epoch", 0) >= stopped_at for e in entries)
    assert pd.read_csv(output / "cv_results.csv")["mean_test_accuracy"].notna().all()


def test_an_unreachable_bucket_is_an_environment_error_in_one_line(tmp_path, capsys,
                                                                    monkeypatch):
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "2")
    monkeypatch.setattr(cli.tempfile, "gettempdir", lambda: str(tmp_path))
    assert main(["predict", "--model", "gs://gone/model", "--data", "gs://gone/t.csv",
                 "--output", str(tmp_path / "p.csv")]) == 1
    line = one_error_line(capsys)
    assert line.startswith("error: the storage service could not be reached (")
    assert "check the bucket's name, credentials and network; full log: " in line
    assert not (tmp_path / "p.csv").exists()
