"""The small JSON files steps hand each other (schema, fitted state, best params)."""

from __future__ import annotations

import json
import math
import os


def read_json(path: str | os.PathLike) -> dict:
    """Read a UTF-8 JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_json(path: str | os.PathLike, content: object) -> None:
    """Write ``content`` as indented UTF-8 JSON (non-ASCII kept as is; NaN and inf as null)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(finite_or_none(content), handle, indent=2, ensure_ascii=False,
                  allow_nan=False)


def dumps(content: object) -> str:
    """``content`` as compact, strict JSON: NaN and inf become ``null``.

    Python's ``json`` would write them as ``NaN`` and ``Infinity``, which are not JSON.
    """
    return json.dumps(finite_or_none(content), allow_nan=False)


def finite_or_none(content: object) -> object:
    """``content`` with every non-finite float (NaN, inf) inside it replaced by ``None``."""
    if isinstance(content, float):
        return content if math.isfinite(content) else None
    if isinstance(content, dict):
        return {key: finite_or_none(value) for key, value in content.items()}
    if isinstance(content, (list, tuple)):
        return [finite_or_none(value) for value in content]
    return content


def finite_float(value) -> float | None:
    """``value`` as a float, or ``None`` where it is NaN or infinite (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def class_count(schema: dict) -> int | None:
    """Number of classes of a classification schema; ``None`` for regression."""
    return len(schema["classes"]) if schema["classes"] else None
