"""Warm starts: what an earlier run scored, taken into a new search of the same table.

An earlier foldwise run's export (a folder or ``gs://`` prefix holding ``cv_results.csv``,
``summary.json`` and ``folds.csv``) seeds a search on the same table, target, folds and
seed:

- its configurations' scores are told to a Bayesian search's study before its first round
  (finished, raced out or failed, as they ended), and a configuration the new search plans
  again is taken over, never trained again, through the trial records the earlier run's
  train tasks left (``core.training.resume``), when the earlier run's folder holds them;
- anything else about the earlier run (another table, target, fold assignment or seed) is
  refused before the new run starts: its scores would not be this search's.
"""

from __future__ import annotations

import io
import json
import math

import pandas as pd

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.scoring.pareto import COSTS

FILES = ("cv_results.csv", "summary.json", "folds.csv")


def read(source: str, read_bytes, exists) -> dict:
    """The earlier run's export: ``{"cv_results", "summary", "folds"}``.

    Args:
        source: The earlier run's folder or ``gs://`` prefix.
        read_bytes: Reads the file a path or URI names.
        exists: Whether a path or URI names a file.

    Raises:
        FoldwiseError: A file missing or unreadable (named).
    """
    base = source.rstrip("/")
    found = {}
    for name in FILES:
        path = f"{base}/{name}"
        if not exists(path):
            raise FoldwiseError(f"--warm-start {source} has no {name}: give the folder (or "
                                "gs:// prefix) an earlier foldwise run exported its results to")
        try:
            data = read_bytes(path)
            if name.endswith(".json"):
                found[name] = json.loads(data)
            else:
                found[name] = pd.read_csv(io.BytesIO(data))
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
            raise FoldwiseError(f"--warm-start {source}: {name} cannot be read "
                                f"({type(err).__name__}): give an earlier run's export as it "
                                "was written") from None
    return {"cv_results": found["cv_results.csv"], "summary": found["summary.json"],
            "folds": found["folds.csv"]}


def check_same(source: str, earlier: dict, schema: dict, fold_rows: pd.DataFrame,
               table_sha256: str | None) -> None:
    """Refuse an earlier run of another table, target, seed or fold assignment.

    Args:
        source: The earlier run's folder or prefix (for the message).
        earlier: What :func:`read` returned.
        schema: This run's schema (target, task, folds, seed).
        fold_rows: This run's fold assignment (``folds.assignment_frame``).
        table_sha256: This run's table digest, if known.

    Raises:
        FoldwiseError: What differs, and what to do.
    """
    summary = earlier["summary"]
    differ = []
    for name in ("target", "task", "folds", "seed"):
        if summary.get(name) != schema.get(name):
            differ.append(f"{name} {summary.get(name)!r} (this run: {schema.get(name)!r})")
    digest = (summary.get("data") or {}).get("sha256")
    if not differ and digest and table_sha256 and digest != table_sha256:
        differ.append("the table's content")
    folds = earlier["folds"]
    if not differ and (list(folds.columns) != list(fold_rows.columns) or not folds.sort_values(
            "row").reset_index(drop=True).equals(fold_rows.sort_values("row").reset_index(
                drop=True).astype(folds.dtypes.to_dict()))):
        differ.append("the rows' folds")
    if differ:
        raise FoldwiseError(f"--warm-start {source} scored another search: {', '.join(differ)}; "
                            "a warm start takes over scores of the same table, target, folds "
                            "and seed only (give the same --folds and --seed, or start cold)")


def told(earlier: dict, scoring: str) -> list[dict]:
    """Each earlier configuration as a study is told it: params, score, how it ended.

    Returns:
        ``{"config_id", "params", "value", "state", "costs"}`` each (``costs``: what its
        ``cv_results`` row measured of ``core.scoring.pareto.COSTS``), the configuration's last row
        (a halving search has one per rung): ``finished`` when scored on every fold,
        ``pruned`` (its mean over the folds it had) when raced or halved out, ``failed``
        when a fold failed.
    """
    table = earlier["cv_results"]
    column = f"mean_test_{scoring}"
    if column not in table.columns:
        raise FoldwiseError(f"--warm-start: the earlier run's cv_results.csv has no {column}: "
                            "it was a search of another task")
    folds = int(earlier["summary"]["folds"])
    splits = [c for c in table.columns
              if c.startswith("split") and c.endswith(f"_test_{scoring}")]
    found = []
    for _, row in table.drop_duplicates("config_id", keep="last").iterrows():
        scored = int(pd.notna(row[splits]).sum())
        value = float(row[column])
        error = row.get("fit_error")
        if (isinstance(error, str) and error) or not math.isfinite(value):
            state, value = "failed", None
        else:
            state = "finished" if scored >= folds else "pruned"
        costs = {cost: float(row[column]) for cost, column in COSTS.items()
                 if column in table.columns and pd.notna(row[column])}
        found.append({"config_id": row["config_id"], "params": json.loads(row["params"]),
                      "value": value, "state": state, "costs": costs})
    return found
