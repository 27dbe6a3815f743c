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
