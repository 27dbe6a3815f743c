"""The small JSON files steps hand each other (schema, fitted state, best params)."""

from __future__ import annotations

import json
import os


def read_json(path: str | os.PathLike) -> dict:
    """Read a UTF-8 JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_json(path: str | os.PathLike, content: object) -> None:
    """Write ``content`` as indented UTF-8 JSON (non-ASCII kept as is)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2, ensure_ascii=False)


def class_count(schema: dict) -> int | None:
    """Number of classes of a classification schema; ``None`` for regression."""
    return len(schema["classes"]) if schema["classes"] else None
