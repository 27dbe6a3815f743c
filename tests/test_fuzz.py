"""Generated tables, grids and options through the command line's real validation.

Whatever Hypothesis generates (column types, missing and extreme values, odd names and text,
sizes, targets, fold counts, grids), planning a run either succeeds or raises foldwise's own
error: one line that names the problem, never another exception. And the command line, given
what planning refuses, exits 2 with that one line and leaves nothing behind.

CI runs a small seed set; ``FOLDWISE_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/test_fuzz.py``
runs a larger one (about 10 minutes).
"""

import decimal
import json
import os
import string

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foldwise.components.core.errors import FoldwiseError
from foldwise.pipelines import runs
from foldwise.pipelines.cli import build_parser, main, search_from_args

EXAMPLES = int(os.environ.get("FOLDWISE_FUZZ_EXAMPLES", "40"))
OUTCOMES: list[str] = []  # what each generated example came to (printed with -s)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

NAMES = st.one_of(st.text(string.ascii_letters + "_ -.,;é日\t", min_size=0, max_size=8),
                  st.sampled_from(["", " ", "__row__", "__fold__", "y", "1", "nan", "None"]))
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                    st.integers(-10**20, 10**20).map(float),
                    st.sampled_from([0.0, 1e300, -1e300, 1e-300, 3.4e38, np.nan]))
TEXT = st.one_of(st.text(max_size=6), st.sampled_from(["a", "b", "1,234.5", "2024-01-05",
                                                       "", " ", "NaN", "None", "true"]))


@st.composite
def columns(draw, rows: int):
    kind = draw(st.sampled_from(["float", "int", "text", "bool", "mixed", "constant",
                                 "empty", "category", "decimal", "bytes", "duration"]))
    if kind == "decimal":  # Parquet keeps them as decimals, a CSV as text
        return [None if draw(st.booleans()) and rows > 3 else
                decimal.Decimal(draw(st.integers(-10**6, 10**6))) / 100 for _ in range(rows)]
    if kind == "bytes":  # UTF-8 text or not
        return [draw(st.one_of(st.binary(max_size=4), st.just(b"ok"), st.none()))
                for _ in range(rows)]
    if kind == "duration":
        return [pd.Timedelta(seconds=draw(st.integers(0, 10**6))) for _ in range(rows)]
    if kind == "float":
        return [draw(NUMBERS) for _ in range(rows)]
    if kind == "int":
        return [draw(st.integers(-5, 5)) for _ in range(rows)]
    if kind == "text":
        return [draw(st.one_of(TEXT, st.none())) for _ in range(rows)]
    if kind == "bool":
        return [draw(st.booleans()) for _ in range(rows)]
    if kind == "mixed":
        return [draw(st.one_of(NUMBERS, TEXT, st.none())) for _ in range(rows)]
    if kind == "constant":
        return [draw(st.sampled_from([1, "x"]))] * rows
    if kind == "empty":
        return [None] * rows
    return [draw(st.sampled_from(["red", "green", "blue", None])) for _ in range(rows)]


@st.composite
def tables(draw):
    rows = draw(st.integers(0, 40))
    width = draw(st.integers(1, 5))
    names = draw(st.lists(NAMES, min_size=width, max_size=width))
    data = {}
    for position, name in enumerate(names):
        key = name if name not in data else f"{name}{position}"
        data[key] = draw(columns(rows))
    return pd.DataFrame(data) if data else pd.DataFrame()


GRIDS = st.one_of(
    st.just(None),
    st.dictionaries(st.sampled_from(["learning_rate", "hidden_units", "epochs", "dropout",
                                     "optimizer", "batch_size", "units", "l2", "activation"]),
                    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                       st.sampled_from([1e30, 1e300, 2**40, 10**12,
                                                        float("inf"), -float("inf")]),
                                       st.integers(-3, 300), st.text(max_size=4),
                                       st.lists(st.integers(-2, 64), max_size=3), st.none()),
                             max_size=3),
                    max_size=3),
)
OPTIONS = st.lists(st.sampled_from([
    ["--folds", "1"], ["--folds", "3"], ["--folds", "0"], ["--folds", "50"],
    ["--task", "classification"], ["--task", "regression"], ["--scaler", "robust"],
    ["--baseline", "mlp"], ["--group-column", "y"], ["--epochs", "0"], ["--l2", "inf"],
    ["--learning-rate", "-1"], ["--learning-rate", "nan"], ["--batch-size", "0"],
    ["--hidden-units", "8,8"], ["--hidden-units", "0"], ["--scoring", "r2"],
    ["--scoring", "accuracy"], ["--drop", "y"], ["--categorical", "nope"],
    ["--dropout", "1.5"], ["--early-stopping", "--patience", "0"], ["--loss", "mae"],
]), max_size=3)


def argv_for(tmp_path, table: pd.DataFrame, target: str, grid, options: list,
             fmt: str) -> list[str]:
    data = tmp_path / f"table.{fmt}"
    if fmt == "parquet":
        try:
            table.to_parquet(data, index=False)
        except Exception:  # a column Parquet cannot hold: write it as CSV instead
            data = tmp_path / "table.csv"
            table.to_csv(data, index=False)
    else:
        table.to_csv(data, index=False, sep="\t" if fmt == "tsv" else ",")
    argv = ["run", "grid-search" if grid is not None else "cross-validation",
            "--data", str(data), "--target", target, "--output", str(tmp_path / "out")]
    if grid is not None:
        # YAML, as a user writes it: .inf and .nan are YAML's, which JSON text would not be
        (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
        argv += ["--grid", str(tmp_path / "grid.yaml")]
    return argv + [word for option in options for word in option]


def plan_or_error(argv: list[str]) -> str | None:
    """Plan the run as the command line would; ``None`` if it is fine, else its error."""
    try:
        args = build_parser().parse_args(argv)
        runs.plan(search_from_args(args), local=True)
    except FoldwiseError as err:
        return str(err)
    except SystemExit as exit_:  # argparse: one "error:" line, exit 2
        assert exit_.code == 2
        return "argparse"
    return None


@FUZZ
@given(table=tables(), target_pick=st.integers(0, 10), grid=GRIDS, options=OPTIONS,
       fmt=st.sampled_from(["csv", "tsv", "parquet"]))
def test_planning_succeeds_or_says_what_is_wrong_in_one_line(tmp_path_factory, table,
                                                             target_pick, grid, options, fmt):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    names = [str(c) for c in table.columns] or ["y"]
    target = names[target_pick % len(names)]
    argv = argv_for(tmp_path, table, target, grid, options, fmt)
    error = plan_or_error(argv)  # any other exception fails the test, with its example
    OUTCOMES.append("ok" if error is None else "argparse" if error == "argparse" else
                    error.split(":")[0][:40])
    if error not in (None, "argparse"):
        assert "\n" not in error and 0 < len(error) < 1000, error
        assert "Traceback" not in error


def test_the_examples_reached_planning():
    """The generated examples are not all refused by argparse: some plan, most are errors."""
    from collections import Counter

    counts = Counter(OUTCOMES)
    print(dict(counts.most_common(12)))
    if OUTCOMES:
        assert counts["argparse"] < len(OUTCOMES) / 2 and len(counts) >= 4


@settings(max_examples=max(EXAMPLES // 4, 8), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(table=tables(), target_pick=st.integers(0, 10), grid=GRIDS, options=OPTIONS)
def test_the_command_line_refuses_in_one_line_and_writes_nothing(tmp_path_factory, capsys,
                                                                  table, target_pick, grid,
                                                                  options):
    tmp_path = tmp_path_factory.mktemp("fuzz-cli")
    names = [str(c) for c in table.columns] or ["y"]
    argv = argv_for(tmp_path, table, names[target_pick % len(names)], grid, options, "csv")
    if plan_or_error(argv) is None:
        return  # a valid run: the end-to-end tests run those
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["a,b\n1,2\n", "y\n1\n2\n", "\ufeffy,x\n1,2\n3,4\n"])
def test_tiny_tables_are_refused_in_one_line(tmp_path, capsys, text):
    data = tmp_path / "t.csv"
    data.write_text(text, encoding="utf-8")
    assert main(["run", "cross-validation", "--data", str(data), "--target", "y",
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "out").exists()


RECORD_PARTS = st.sampled_from(["pipeline", "table_sha256", "options", "model_spec", "grid",
                                "distributions", "choice"])


@FUZZ
@given(part=RECORD_PARTS, value=st.one_of(st.integers(), st.text(max_size=5), st.none(),
                                          st.floats(allow_nan=False)),
       option=st.sampled_from(["target", "folds", "seed", "scaler", "packing", "novel"]))
def test_a_resume_of_another_search_is_refused_and_touches_nothing(tmp_path_factory, part,
                                                                   value, option):
    """Any difference from the record a run folder holds refuses the resume, naming it."""
    folder = tmp_path_factory.mktemp("resume")
    record = {"pipeline": "grid-search", "table_sha256": "ab" * 32,
              "options": {"target": "y", "folds": 5, "seed": 0, "scaler": "standard",
                          "packing": "configs"},
              "model_spec": {"epochs": 5}, "grid": [{"learning_rate": [0.01]}],
              "distributions": [], "choice": {}}
    (folder / runs.SEARCH_RECORD).write_text(json.dumps(record))
    changed = json.loads(json.dumps(record))
    if part == "options":
        changed["options"][option] = value
    else:
        changed[part] = value
    changed = json.loads(json.dumps(changed))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    # an option a later version added, not given (None), is the same search
    unset = part == "options" and option == "novel" and value is None
    if changed == record or unset:
        runs.check_same_search(folder, changed)  # the same search: taken
    else:
        with pytest.raises(FoldwiseError, match=r"holds a run of another search \((.+)\): "
                                                r"resume with the same table and options"):
            runs.check_same_search(folder, changed)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before
    (folder / runs.SEARCH_RECORD).write_text("{not json")
    with pytest.raises(FoldwiseError, match="cannot be read: start a new run without"):
        runs.check_same_search(folder, record)
