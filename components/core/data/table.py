"""Reading a user's table (CSV or Parquet) with errors that say what is wrong and where."""

from __future__ import annotations

import csv
import difflib
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from foldwise.components.core.errors import FoldwiseError

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


def table_format(path: str | os.PathLike) -> str:
    """Return ``"csv"`` or ``"parquet"`` from a file name, or raise for anything else."""
    name = str(path).lower()
    for suffix in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise FoldwiseError(
        f"unsupported table format for {path!s}: use a .csv (or .tsv) or .parquet file"
    )


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or Parquet table from a local path, rejecting malformed input early.

    Args:
        path: Local file path ending in .csv, .tsv, .txt or .parquet (optionally compressed).

    Returns:
        The table with its columns as written in the file.

    Raises:
        FoldwiseError: The file is missing, empty, header-only, ragged, malformed, of an
            unsupported format, or has duplicate column names.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise FoldwiseError(f"data file {path} does not exist: check the path given to --data")
    if path.is_dir():
        raise FoldwiseError(f"data path {path} is a directory: give a .csv or .parquet file")
    if path.stat().st_size == 0:
        raise FoldwiseError(f"data file {path} is empty: it needs a header row and data rows")
    table = _read_csv(path) if fmt == "csv" else _read_parquet(path)
    _check_columns(list(table.columns), path)
    if len(table) == 0:
        raise FoldwiseError(f"data file {path} has a header but no data rows")
    return table


COMPRESSIONS = {".gz": b"\x1f\x8b", ".bz2": b"BZh", ".zip": b"PK\x03\x04",
                ".xz": b"\xfd7zXZ\x00", ".zst": b"\x28\xb5\x2f\xfd"}


def _read_csv(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    compressed = suffix in COMPRESSIONS
    inner = Path(path.stem) if compressed else path  # t.tsv.gz is a TSV
    delimiter = "\t" if inner.suffix.lower() == ".tsv" else ","
    if compressed:
        with path.open("rb") as handle:
            magic = handle.read(len(COMPRESSIONS[suffix]))
        if magic != COMPRESSIONS[suffix]:
            raise FoldwiseError(
                f"data file {path} is named {suffix} but is not {suffix[1:]}-compressed: "
                f"rename it to {path.stem} if it is plain text, or compress it")
    else:
        _check_csv_shape(path, delimiter)
    try:
        table = pd.read_csv(path, sep=delimiter, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as err:
        raise FoldwiseError(f"data file {path} has no columns: is it really a CSV?") from err
    except pd.errors.ParserError as err:
        raise FoldwiseError(f"data file {path} is not a well-formed CSV: {err}") from err
    except UnicodeDecodeError as err:
        raise FoldwiseError(
            f"data file {path} is not UTF-8 text (byte {err.start}): save it as UTF-8 CSV"
        ) from err
    except (OSError, EOFError, ValueError) as err:  # a damaged compressed stream
        raise FoldwiseError(f"data file {path} cannot be decompressed ({err}): check that "
                            "the file is complete") from err
    return table


def _check_csv_shape(path: Path, delimiter: str) -> None:
    """Check the header for duplicates and every record for the header's field count."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            header = next(reader, None)
            if header is None or not any(field.strip() for field in header):
                raise FoldwiseError(f"data file {path} has no header row")
            _check_columns(header, path)
            width = len(header)
            for record in reader:
                if not record:
                    continue
                if len(record) != width:
                    raise FoldwiseError(
                        f"data file {path} is ragged: line {reader.line_num} has "
                        f"{len(record)} fields but the header has {width}; fix that line "
                        "(a missing value is an empty field between commas)"
                    )
    except csv.Error as err:
        raise FoldwiseError(f"data file {path} is not a well-formed CSV: {err}") from err
    except UnicodeDecodeError as err:
        raise FoldwiseError(
            f"data file {path} is not UTF-8 text (byte {err.start}): save it as UTF-8 CSV"
        ) from err


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        _check_columns(schema.names, path)
        nested = [field.name for field in schema if pa.types.is_nested(field.type)]
        if nested:
            raise FoldwiseError(
                f"data file {path} has nested (list, struct or map) columns {nested}: a table "
                "for foldwise has one value per cell; flatten them or leave them out")
        return _plain_columns(pq.read_table(path)).to_pandas()
    except FoldwiseError:
        raise
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise FoldwiseError(f"data file {path} is not a readable Parquet file: {err}") from err


def _plain_columns(table):
    """Parquet's typed columns as foldwise reads a CSV's: decimals as numbers, bytes as text.

    A decimal column would otherwise arrive as Python ``Decimal`` objects and be taken for
    categories; a binary column as ``bytes``, which is text where it is UTF-8 and otherwise
    its bytes escaped (a backslash and the byte in hex): the same category at training and
    at prediction, and a column ``--drop`` can leave out.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        kind = field.type
        if pa.types.is_decimal(kind):
            converted = pc.cast(table.column(index), pa.float64())
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or \
                pa.types.is_fixed_size_binary(kind):
            try:
                converted = pc.cast(table.column(index), pa.string())
            except pa.ArrowInvalid:  # not UTF-8: each value's bytes, escaped, as its category
                converted = pa.array(
                    [None if value is None else value.decode("utf-8", "backslashreplace")
                     for value in table.column(index).to_pylist()], pa.string())
        else:
            continue
        table = table.set_column(index, pa.field(field.name, converted.type), converted)
    return table


def _check_columns(columns: list, path: Path) -> None:
    names = [str(c) for c in columns]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise FoldwiseError(
            f"data file {path} has duplicate column names {duplicates}: rename them so each "
            "column has its own name"
        )
    blank = [i for i, name in enumerate(names) if not name.strip()]
    if blank:
        raise FoldwiseError(
            f"data file {path} has a column without a name (position {blank[0] + 1}): give "
            "every column a header"
        )


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes: the data's fingerprint in summaries and manifests."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def suggest(name: str, candidates: list[str]) -> str:
    """Return a ``did you mean`` hint for a misspelt column or option name, or ``""``."""
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"
