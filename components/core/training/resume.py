"""Trials an interrupted or failed run already finished, taken over by a resumed run.

Each train task records in ``reuse.json``, under its model folder, a key per (configuration,
fold) it trained: a digest of the configuration's complete parameters (a builder's source
included), the seed, the fold and the bytes of the fold's model-ready table. A run resumed in
the same run folder (``foldwise run --resume DIR``, which sets :data:`RESUME_ENV` for its
steps) finds those records in the earlier runs' train folders; a trial whose key matches is
taken over, its model files, history, predictions and scores, instead of being trained again:
the same inputs, the same trial. Anything else (another grid, seed, table or fold) trains.
A warm start (``--warm-start DIR``, which names the earlier run's pipeline folder in
:data:`WARM_ENV`) takes trials over from another run's folder the same way.

A train task that was stopped mid-training leaves its last finished epoch's checkpoint; the
same task of the resumed run starts from a copy of it (:func:`take_over_checkpoint`), so a
pack interrupted at 90% of its epochs trains only the rest. The checkpoint holds a
fingerprint of its members' settings and data; one of other members is ignored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foldwise.components.core.training.fit import FoldResult

RECORD = "reuse.json"
RESUME_ENV = "FOLDWISE_RESUME"
WARM_ENV = "FOLDWISE_WARM_START"  # pipeline folders of earlier runs, os.pathsep-separated


def resuming() -> bool:
    """Whether this step belongs to a resumed run."""
    return os.environ.get(RESUME_ENV) == "1"


def trial_key(params: dict, seed: int, fold: int, table_digest: str) -> str:
    """The identity of one trial's inputs (``table_digest``: its fold table's SHA-256)."""
    return hashlib.sha256(json.dumps([params, int(seed), int(fold), table_digest],
                                     sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Previous:
    """A trial an earlier run finished: where its files are and what it recorded."""

    train_dir: Path
    record: dict


def warm_roots() -> list[Path]:
    """The pipeline folders of the earlier runs a warm start takes trials over from."""
    value = os.environ.get(WARM_ENV, "")
    return [Path(part) for part in value.split(os.pathsep) if part]


def records(root: Path) -> list[Path]:
    """The trial records of every train task of every run under a pipeline folder.

    A run's train tasks are ``<run>/<loop>/train/model``; a staged search's later loops name
    theirs ``train-2``, ``train-3`` ... (a DAG's task names are unique).
    """
    return [path for path in root.glob(f"*/*/train*/model/{RECORD}")
            if re.fullmatch(r"train(-\d+)?", path.parents[1].name)]


def previous_trials(model_dir: str | os.PathLike) -> dict[str, Previous]:
    """The trials earlier runs finished, by key.

    ``model_dir`` is this task's model folder, ``<root>/<run>/<loop>/train/model``: the other
    runs under ``<root>`` are searched (a resumed run's earlier ones), and every run under the
    pipeline folders :data:`WARM_ENV` names (a warm start's).
    """
    model_dir = Path(model_dir).resolve()
    run = model_dir.parents[2]
    roots = [model_dir.parents[3], *warm_roots()]
    found: dict[str, Previous] = {}
    for record in sorted(r for root in roots for r in records(root)):
        train_dir = record.parents[1]
        if run in record.parents or not all(
                (train_dir / name).is_file() for name in ("history", "predictions")):
            continue  # this run's own, or a task stopped before its outputs were all written
        try:
            entries = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key, entry in entries.items():
            found[key] = Previous(train_dir, entry)
    return found


def take_over_checkpoint(model_dir: str | os.PathLike, folder: str) -> bool:
    """Start this task from the checkpoint its twin in an earlier run left, if any.

    ``model_dir`` is ``<root>/<run>/<task>/train/model``; the newest
    ``<root>/<other run>/<task>/train/model/<folder>`` is copied into this task's own
    ``folder`` (when it has none). Returns whether one was copied.
    """
    model_dir = Path(model_dir).resolve()
    run, root = model_dir.parents[2], model_dir.parents[3]
    here = model_dir / folder
    if here.exists():
        return False
    task = model_dir.relative_to(run)
    found = [path for path in root.glob(f"*/{task}/{folder}")
             if path.is_dir() and run not in path.parents]
    if not found:
        return False
    newest = max(found, key=lambda path: path.stat().st_mtime)
    partial = here.with_name(f".{folder}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(newest, partial)
    partial.replace(here)
    return True


def taken_over(previous: Previous, rows_validation: np.ndarray, classes: list | None):
    """The earlier trial as a :class:`~foldwise.components.core.training.fit.FoldResult`."""
    entry = previous.record
    histories = _histories(str(previous.train_dir))
    frame = _predictions(str(previous.train_dir))
    frame = frame[(frame["config_id"] == entry["config_id"]) & (frame["fold"] == entry["fold"])]
    frame = frame.set_index("row").loc[rows_validation]
    if classes is None:
        prediction = frame["prediction"].to_numpy(dtype="float64")
    else:
        prediction = frame[[f"proba_{label}" for label in classes]].to_numpy(dtype="float64")
    scores = {name: float("nan") if value is None else value
              for name, value in entry["scores"].items()}
    return FoldResult(None, histories.get(entry["config_id"], {}).get(str(entry["fold"]), {}),
                      prediction, scores, entry["fit_time"], entry["score_time"],
                      entry["epochs_run"], None, {**entry["devices"], "resumed": True},
                      entry["estimator"], entry["fit_error"])


@functools.lru_cache(maxsize=4)
def _histories(train_dir: str) -> dict:
    """An earlier train task's histories, read once for all the trials taken from it."""
    return json.loads((Path(train_dir) / "history").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=4)
def _predictions(train_dir: str) -> pd.DataFrame:
    """An earlier train task's predictions, read once for all the trials taken from it."""
    return pd.read_parquet(Path(train_dir) / "predictions")


def model_folder(previous: Previous) -> Path:
    """The earlier trial's saved model folder (``<config_id>/fold-<k>``)."""
    return previous.train_dir / "model" / previous.record["folder"]


def write_record(model_dir: str | os.PathLike, records: dict) -> None:
    """This task's trials, by key, for a later resumed run (temporary file, then rename)."""
    target = Path(model_dir) / RECORD
    partial = target.with_name(f".{RECORD}.partial")
    partial.write_text(json.dumps(records, default=str), encoding="utf-8")
    partial.replace(target)
