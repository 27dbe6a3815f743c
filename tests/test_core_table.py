from pathlib import Path

import pandas as pd
import pytest

from foldwise.components.core.data.table import read_table
from foldwise.components.core.errors import FoldwiseError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_csv_and_parquet_alike(tmp_path, small_table):
    csv = tmp_path / "t.csv"
    small_table.to_csv(csv, index=False)
    parquet = tmp_path / "t.parquet"
    small_table.to_parquet(parquet, index=False)
    from_csv, from_parquet = read_table(csv), read_table(parquet)
    assert list(from_csv.columns) == list(from_parquet.columns) == ["size", "colour", "label"]
    assert from_csv["size"].equals(from_parquet["size"])


def test_non_ascii_column_names_work(tmp_path):
    path = write(tmp_path, "t.csv", "größe,Ёмкость,目标\n1,2,x\n3,4,y\n")
    assert list(read_table(path).columns) == ["größe", "Ёмкость", "目标"]


def test_tsv_is_read_with_tabs(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tb\n1\t2\n")
    assert read_table(path).shape == (1, 2)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("t.xlsx", "a,b\n1,2\n", r"unsupported table format.*\.csv.*\.parquet"),
        ("t.csv", "", r"is empty"),
        ("t.csv", "a,b,c\n", r"header but no data rows"),
        ("t.csv", "a,b\n1,2\n3,4,5\n", r"ragged: line 3 has 3 fields but the header has 2"),
        ("t.csv", "a,b\n1,2\n3\n", r"ragged: line 3 has 1 fields"),
        ("t.csv", 'a,b\n1,"2\n', r"not a well-formed CSV"),
        ("t.csv", "a,b,a\n1,2,3\n", r"duplicate column names \['a'\]"),
        ("t.csv", "a,,c\n1,2,3\n", r"column without a name \(position 2\)"),
        ("t.parquet", "this is not parquet", r"not a readable Parquet file"),
    ],
)
def test_bad_files_are_refused_clearly(tmp_path, name, text, match):
    with pytest.raises(FoldwiseError, match=match):
        read_table(write(tmp_path, name, text))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FoldwiseError, match=r"nope\.csv does not exist"):
        read_table(tmp_path / "nope.csv")


def test_non_utf8_csv_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("a,b\n\xe9,1\n".encode("latin-1"))
    with pytest.raises(FoldwiseError, match="not UTF-8"):
        read_table(path)


def test_parquet_with_duplicate_columns_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["x", "x"]), path)
    with pytest.raises(FoldwiseError, match="duplicate column names"):
        read_table(path)


def test_reading_does_not_change_values(tmp_path):
    frame = pd.DataFrame({"x": [1.5, None, 3.0], "c": ["p", None, "q"]})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    back = read_table(path)
    assert back["x"].isna().tolist() == [False, True, False]
    assert back["c"].isna().tolist() == [False, True, False]


def test_parquet_decimals_are_numbers_and_bytes_are_text(tmp_path):
    """As a CSV of the same values reads: a decimal column is numeric (not categories), a
    binary one is text, its bytes escaped where they are not UTF-8 (never a decode error)."""
    import decimal

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess

    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "price": pa.array([decimal.Decimal(f"{i}.25") for i in range(8)] + [None],
                          pa.decimal128(10, 2)),
        "code": pa.array([b"ab", b"cd"] * 4 + [None], pa.binary()),
        "raw": pa.array([b"\xff\x01", b"\xfe"] * 4 + [b"ok"], pa.binary()),
        "y": np.arange(9.0)}), path)
    table = read_table(path)
    assert table["price"].dtype == "float64" and table["price"].iloc[1] == 1.25
    assert np.isnan(table["price"].iloc[8])
    assert table["code"].tolist()[:2] == ["ab", "cd"] and table["code"].isna().iloc[8]
    assert table["raw"].tolist()[:2] == ["\\xff\x01", "\\xfe"] and table["raw"].iloc[8] == "ok"
    _, schema = preprocess(table, PreprocessOptions(target="y", folds=2))
    assert schema["numeric"] == ["price"] and schema["categorical"] == ["code", "raw"]


def test_parquet_durations_are_refused_by_name(tmp_path):
    from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess

    path = tmp_path / "durations.parquet"
    pd.DataFrame({"wait": pd.to_timedelta(range(9), unit="h"), "y": range(9)}).to_parquet(path)
    with pytest.raises(FoldwiseError, match=r"column 'wait' holds durations: turn them into "
                                            r"numbers \(e.g. seconds\)"):
        preprocess(read_table(path), PreprocessOptions(target="y", folds=2))
