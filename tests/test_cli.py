"""The command line's contract for bad input: exit 2, one 'error:' line, nothing written."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from foldwise.pipelines.cli import main

BIN = Path(sys.executable).parent


def table_file(tmp_path: Path, frame: pd.DataFrame, name: str = "t.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def text_file(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


REGRESSION = pd.DataFrame({"x": np.arange(20.0), "c": list("ab") * 10,
                           "y": np.linspace(0, 1, 20)})
CASES = {
    "missing file": (lambda t: t / "absent.csv", ["--target", "y"], r"does not exist"),
    "unsupported format": (lambda t: text_file(t, "x", "t.xlsx"), ["--target", "y"],
                           r"unsupported table format"),
    "empty file": (lambda t: text_file(t, ""), ["--target", "y"], r"is empty"),
    "header only": (lambda t: text_file(t, "x,y\n"), ["--target", "y"], r"no data rows"),
    "ragged csv": (lambda t: text_file(t, "x,y\n1,2\n3,4,5\n"), ["--target", "y"],
                   r"ragged: line 3"),
    "malformed csv": (lambda t: text_file(t, 'x,y\n1,"2\n'), ["--target", "y"],
                      r"not a well-formed CSV"),
    "duplicate columns": (lambda t: text_file(t, "x,x,y\n1,2,3\n"), ["--target", "y"],
                          r"duplicate column names \['x'\]"),
    "target absent": (lambda t: table_file(t, REGRESSION), ["--target", "Y"],
                      r"--target column 'Y' is not in the table; did you mean 'y'\?"),
    "all-missing target": (lambda t: table_file(t, REGRESSION.assign(y=np.nan)),
                           ["--target", "y"], r"target column 'y' has no values"),
    "single class": (lambda t: table_file(t, REGRESSION.assign(y="only")), ["--target", "y"],
                     r"single class \('only'\)"),
    "rare class": (lambda t: table_file(t, REGRESSION.assign(y=["a"] * 17 + ["b"] * 3)),
                   ["--target", "y"], r"'b' \(3 rows\).*--folds 5.*use --folds 3 or fewer"),
    "constant target": (lambda t: table_file(t, REGRESSION.assign(y=4.25)), ["--target", "y"],
                        r"constant \(4\.25\)"),
    "fewer rows than folds": (lambda t: table_file(t, REGRESSION.head(4)), ["--target", "y"],
                              r"4 rows, fewer than --folds 5"),
    "infinite values": (lambda t: table_file(t, REGRESSION.assign(x=[np.inf] + [1.0] * 19)),
                        ["--target", "y"], r"column 'x' has 1 infinite values"),
    "unknown optimizer": (lambda t: table_file(t, REGRESSION),
                          ["--target", "y", "--optimizer", "adagradd"],
                          r"unknown optimizer 'adagradd'"),
    "unknown loss": (lambda t: table_file(t, REGRESSION), ["--target", "y", "--loss", "msee"],
                     r"unknown loss 'msee'; did you mean 'mse'"),
    "unknown activation": (lambda t: table_file(t, REGRESSION),
                           ["--target", "y", "--activation", "sigmoidd"],
                           r"unknown activation 'sigmoidd'; did you mean 'sigmoid'"),
    "zero units": (lambda t: table_file(t, REGRESSION), ["--target", "y", "--hidden-units",
                                                         "8,0"], r"hidden_units must be a "
                                                                 r"positive whole number, got 0"),
    "bad units": (lambda t: table_file(t, REGRESSION), ["--target", "y", "--hidden-units",
                                                        "8,x"], r"expected layer sizes"),
    "zero epochs": (lambda t: table_file(t, REGRESSION), ["--target", "y", "--epochs", "0"],
                    r"epochs must be a positive whole number, got 0"),
    "negative batch": (lambda t: table_file(t, REGRESSION), ["--target", "y", "--batch-size",
                                                             "-8"], r"batch_size must be a "
                                                                    r"positive whole number"),
    "one fold": (lambda t: table_file(t, REGRESSION), ["--target", "y", "--folds", "1"],
                 r"--folds must be at least 2, got 1"),
    "hyperparameter of another optimizer": (
        lambda t: table_file(t, REGRESSION), ["--target", "y", "--momentum", "0.9"],
        r"momentum does not apply to optimizer 'adam'"),
    "scoring of another task": (lambda t: table_file(t, REGRESSION),
                                ["--target", "y", "--scoring", "accuracy"],
                                r"--scoring 'accuracy' is not reported for regression"),
    "missing --target": (lambda t: table_file(t, REGRESSION), [],
                         r"the following arguments are required: --target"),
    # Time-ordered and repeated folds.
    "order column with duplicates": (
        lambda t: table_file(t, REGRESSION.assign(day=[1, 1] + list(range(2, 20)))),
        ["--target", "y", "--split", "time", "--order-column", "day"],
        r"order column 'day' has 2 rows sharing a time"),
    "order column with gaps": (
        lambda t: table_file(t, REGRESSION.assign(day=[np.nan] + list(range(1, 20)))),
        ["--target", "y", "--split", "time", "--order-column", "day"],
        r"order column 'day' is missing on 1 rows"),
    "order column of words": (
        lambda t: table_file(t, REGRESSION), ["--target", "y", "--split", "time",
                                              "--order-column", "c"],
        r"order column 'c' holds values that are neither numbers nor dates"),
    "gap larger than the table": (
        lambda t: table_file(t, REGRESSION), ["--target", "y", "--split", "time", "--gap", "30"],
        r"5 validation blocks of 3 rows after a --gap of 30 rows leave no training rows.*"
        r"use a --gap below 5"),
    "validation blocks larger than the table": (
        lambda t: table_file(t, REGRESSION), ["--target", "y", "--split", "time",
                                              "--test-size", "4"],
        r"leave no training rows before the first block.*--test-size \(at most 3\)"),
    "gap without time-ordered folds": (
        lambda t: table_file(t, REGRESSION), ["--target", "y", "--gap", "2"],
        r"--gap applies only to time-ordered folds: add --split time"),
    "repeats with a group column": (
        lambda t: table_file(t, REGRESSION), ["--target", "y", "--repeats", "3",
                                              "--group-column", "c"],
        r"--repeats cannot be combined with --group-column"),
    "repeats of time-ordered folds": (
        lambda t: table_file(t, REGRESSION), ["--target", "y", "--repeats", "2", "--split",
                                              "time"],
        r"time-ordered folds are the same every time"),
    "zero repeats": (lambda t: table_file(t, REGRESSION), ["--target", "y", "--repeats", "0"],
                     r"--repeats must be at least 1, got 0"),
    "unknown split": (lambda t: table_file(t, REGRESSION), ["--target", "y", "--split", "tme"],
                      r"invalid choice: 'tme'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_error_line_and_writes_nothing(case, tmp_path, capsys):
    make, extra, match = CASES[case]
    output = tmp_path / "out"
    code = main(["run", "cross-validation", "--data", str(make(tmp_path)), *extra,
                 "--output", str(output)])
    assert_one_error_line(code, capsys.readouterr().err, match, output)


def assert_one_error_line(code: int, err: str, match: str, output: Path) -> None:
    """Exit 2, one ``error:`` line matching ``match``, and no output folder."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(match, lines[0]), lines[0]
    assert not output.exists()


def test_existing_non_empty_output_is_never_overwritten(tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("precious")
    code = main(["run", "cross-validation", "--data", str(table_file(tmp_path, REGRESSION)),
                 "--target", "y", "--output", str(output)])
    assert code == 2 and "already exists and is not empty" in capsys.readouterr().err
    assert (output / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in output.iterdir()) == ["keep.txt"]


def test_console_script_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [str(BIN / "foldwise"), "run", "cross-validation", "--data",
         str(tmp_path / "missing.csv"), "--target", "y"],
        capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "foldwise-runs").exists()


def test_help_lists_the_model_options():
    result = subprocess.run([str(BIN / "foldwise"), "run", "cross-validation", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    for flag in ("--hidden-units", "--beta-1", "--target-scaling", "--group-column", "--scaler"):
        assert flag in result.stdout


def test_progress_counts_every_step_against_the_true_total(tmp_path, capsys):
    """The [n/total] display must end at total: the totals are computed, not guessed."""
    from foldwise.pipelines.display import Progress as _Progress
    from foldwise.pipelines.engine import TaskEvent

    progress = _Progress(3)
    for name in ("preprocess", "train", "aggregate"):
        progress(TaskEvent(name, (), None))  # starts are not counted
        progress(TaskEvent(name, (1,) if name == "train" else (), "SUCCESS", 0.5))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("]")[0] for line in lines] == ["[1/3", "[2/3", "[3/3"]
    assert "train fold 1" in lines[1]
    open_ended = _Progress(None)
    open_ended(TaskEvent("train", (0, 1, 2), "SUCCESS", 0.1))
    assert "train folds 0-2" in capsys.readouterr().err
    open_ended(TaskEvent("promote", (), "SUCCESS", 0.1))
    assert capsys.readouterr().err.startswith("[ 2] promote")


def test_ranking_shows_a_failed_configuration_with_its_error(tmp_path):
    from foldwise.pipelines.display import format_grid_results

    table = pd.DataFrame({
        "config_id": ["cfg-good", "cfg-bad"],
        "params": ['{"learning_rate": 0.01}', '{"learning_rate": 1000000.0}'],
        "mean_test_r2": [0.91, np.nan], "std_test_r2": [0.02, np.nan],
        "rank_test_r2": [1, 2], "fit_error": ["", "diverged: non-finite loss at epoch 1"]})
    path = tmp_path / "cv_results.csv"
    table.to_csv(path, index=False)
    lines = format_grid_results(path, {"scoring": "r2"}).splitlines()
    assert "0.9100 ± 0.0200" in lines[2] and lines[3].split()[:3] == ["2", "cfg-bad", "failed"]
    assert lines[-1] == "failed   cfg-bad: diverged: non-finite loss at epoch 1"
    assert "nan" not in "\n".join(lines)


SEARCH_CASES = {
    "space not YAML": ("random-search", "learning_rate: {loguniform: [1e-4, 1e-1\n", [],
                       r"is not valid YAML \(line"),
    "distribution without bounds": ("random-search", "learning_rate: {loguniform: [0.1]}\n",
                                    [], r"loguniform takes two numbers \[low, high\]"),
    "unknown distribution": ("random-search", "dropout: {beta: [1, 2]}\n", [],
                             r"loguniform \| uniform \| randint \| choice"),
    "unknown sampled parameter": ("random-search", "learning_rat: {uniform: [0.1, 0.2]}\n",
                                  [], r"unknown grid parameter 'learning_rat'"),
    "no iterations": ("random-search", "dropout: [0.0, 0.1]\n", ["--n-iter", "0"],
                      r"n_iter must be at least 1"),
    "factor of one": ("halving-search", "dropout: [0.0, 0.1]\n", ["--factor", "1"],
                      r"factor must be a number above 1"),
    "more folds than the run has": ("halving-search", "dropout: [0.0, 0.1]\n",
                                    ["--max-resources", "9"], r"at most 5, or more folds"),
    "bad min resources": ("halving-search", "dropout: [0.0, 0.1]\n",
                          ["--min-resources", "some"], r"min_resources must be a whole"),
    "confidence out of range": ("halving-search", "dropout: [0.0, 0.1]\n",
                                ["--elimination", "racing", "--confidence", "1.5"],
                                r"confidence must be in \[0.5, 1\)"),
    "epochs in an epochs grid": ("halving-search", "epochs: [2, 4]\n",
                                 ["--resource", "epochs"], r"leave epochs out of the grid"),
    "epochs with early stopping": ("halving-search", "dropout: [0.0, 0.1]\n",
                                   ["--resource", "epochs", "--early-stopping"],
                                   r"leave --early-stopping out"),
    "halving with a baseline": ("halving-search", "dropout: [0.0, 0.1]\n",
                                ["--baseline", "mlp"], r"leave --baseline out"),
    "unknown refit rule": ("grid-search", "dropout: [0.0, 0.1]\n", ["--refit", "simplest"],
                           r"argument --refit: invalid choice"),
    "empty serving image": ("grid-search", "dropout: [0.0, 0.1]\n", ["--serving-image", " "],
                            r"--serving-image ' ' is not an image reference"),
    "serving image with spaces": ("random-search", "dropout: {uniform: [0.0, 0.3]}\n",
                                  ["--serving-image", "tf serving"],
                                  r"--serving-image 'tf serving' is not an image reference"),
    "nested with a pareto refit": ("nested-cv", "dropout: [0.0, 0.1]\n",
                                   ["--refit", "pareto:latency", "--folds", "2"],
                                   r"nested-cv's inner searches choose by --refit best or "
                                   r"one_standard_error, not 'pareto:latency'"),
    "nested with objectives": ("nested-cv", "dropout: [0.0, 0.1]\n",
                               ["--objectives", "r2,latency", "--folds", "2"],
                               r"leave --objectives out"),
    "nested of time-ordered folds": ("nested-cv", "dropout: [0.0, 0.1]\n",
                                     ["--split", "time"], r"leave --split time and --repeats"),
    "nested on a table too small": ("nested-cv", "dropout: [0.0, 0.1]\n",
                                    ["--outer-folds", "5", "--folds", "5"],
                                    r"20 rows, too few for nested cross-validation of 5 outer "
                                    r"folds of 5 inner folds \(at least 25 rows\)"),
    "nested bayes without a space": ("nested-cv", "dropout: [0.0, 0.1]\n",
                                     ["--inner-search", "bayes", "--folds", "2"],
                                     r"--inner-search bayes needs a space"),
    "nested halving with a factor of one": ("nested-cv", "dropout: [0.0, 0.1]\n",
                                            ["--inner-search", "halving", "--factor", "1",
                                             "--folds", "2"],
                                            r"factor must be a number above 1"),
    "one outer fold": ("nested-cv", "dropout: [0.0, 0.1]\n", ["--outer-folds", "1"],
                       r"outer_folds must be at least 2|--outer-folds must be at least 2"),
}


@pytest.mark.parametrize("case", list(SEARCH_CASES))
def test_bad_searches_exit_2_with_one_error_line_and_write_nothing(case, tmp_path, capsys):
    pipeline, grid, extra, match = SEARCH_CASES[case]
    output = tmp_path / "out"
    code = main(["run", pipeline, "--data", str(table_file(tmp_path, REGRESSION)), "--target",
                 "y", "--grid", str(text_file(tmp_path, grid, "grid.yaml")), *extra,
                 "--output", str(output)])
    assert_one_error_line(code, capsys.readouterr().err, match, output)


PLAN_CASES = {
    "no nodes": (["--nodes", "0"], r"--nodes must be at least 1, got 0"),
    "unmeasured accelerator": (["--accelerator", "nvidia-l4:1"],
                               r"no measured training speed for --accelerator 'nvidia-l4:1'"),
    "negative pod start": (["--pod-start", "-5"], r"--pod-start must be seconds"),
    "zero speed-up": (["--node-speedup", "0"], r"--node-speedup must be a positive factor"),
    "unknown option": (["--nodez", "3"], r"unrecognized arguments: --nodez"),
    "unknown objective": (["--objectives", "r2,speed"], r"unknown objective 'speed'"),
    "another task's score": (["--objectives", "accuracy,latency"],
                             r"unknown objective 'accuracy'; use one of this task's metrics"),
    "two scorings": (["--scoring", "r2", "--objectives", "neg_mean_squared_error,latency"],
                     r"pass --scoring neg_mean_squared_error"),
    "unknown pareto rule": (["--refit", "pareto:speed"], r"invalid choice: 'pareto:speed'"),
}


@pytest.mark.parametrize("case", list(PLAN_CASES))
def test_plan_refuses_bad_input_with_one_error_line(case, tmp_path, capsys):
    extra, match = PLAN_CASES[case]
    code = main(["plan", "grid-search", "--data", str(table_file(tmp_path, REGRESSION)),
                 "--target", "y", "--grid", str(text_file(tmp_path, "dropout: [0.0, 0.1]\n",
                                                          "grid.yaml")), *extra])
    assert_one_error_line(code, capsys.readouterr().err, match, tmp_path / "never")


def test_plan_prints_every_packing_and_trains_nothing(tmp_path, capsys):
    code = main(["plan", "grid-search", "--data", str(table_file(tmp_path, REGRESSION)),
                 "--target", "y", "--folds", "3", "--epochs", "2", "--nodes", "2",
                 "--grid", str(text_file(tmp_path, "hidden_units: [[8], [64]]\n"
                                         "learning_rate: [0.01, 0.1]\n", "grid.yaml"))])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out[2:5]}
    assert [rows[p][1] for p in ("configs*", "folds", "none")] == ["2", "4", "12"]
    assert "2 nodes × cpu" in out[1]
    main(["plan", "grid-search", "--data", str(table_file(tmp_path, REGRESSION)), "--target",
          "y", "--packing", "folds", "--grid", str(text_file(tmp_path, "dropout: [0.0, 0.1]\n",
                                                             "grid.yaml"))])
    starred = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:5]]
    assert starred == ["configs", "folds*", "none"]  # the packing this run would use
    assert not [path for path in tmp_path.iterdir() if path.is_dir()]  # no run folder


def test_predict_refuses_an_output_it_would_write_wrongly_before_loading_anything(tmp_path,
                                                                                   capsys):
    """Checked before the model is read: no model is needed to be refused."""
    existing = tmp_path / "predictions.csv"
    existing.write_text("kept")
    folder = tmp_path / "out"
    folder.mkdir()
    cases = [
        (str(existing), f"--output {existing} exists: choose another name, or pass "
                        "--overwrite to replace it"),
        (str(folder), f"--output {folder} is a folder: give the file to write, such as "
                      f"{folder}/predictions.csv"),
        (str(tmp_path / "p.json"), f"--output {tmp_path}/p.json names no format foldwise "
                                   "writes: end it in .csv (or .csv.gz) or .parquet"),
    ]
    for output, message in cases:
        assert main(["predict", "--model", str(tmp_path / "no-model"), "--data",
                     str(tmp_path / "no.csv"), "--output", output]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert existing.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "predictions.csv"]
    assert list(folder.iterdir()) == []


def test_no_help_text_shows_source_markup():
    """Every --help is for a terminal: no reStructuredText roles or literals from docstrings."""
    import re

    from foldwise.pipelines.cli import build_parser

    texts, pending = [], [build_parser()]
    while pending:
        parser = pending.pop()
        texts.append(parser.format_help())
        for action in parser._actions:
            if isinstance(getattr(action, "choices", None), dict):
                pending.extend(action.choices.values())
    assert len(texts) > 10  # the top, run and each pipeline under it, and every other verb
    for text in texts:
        assert not re.search(r"``|:(mod|func|class|data|attr|meth):`", text), text[:400]
