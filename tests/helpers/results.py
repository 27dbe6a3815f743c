"""A finished train task's results, read as the aggregate step reads them."""

import json
from pathlib import Path


def train_task_results(folder: Path) -> list[dict]:
    """The per-(configuration, fold) entries of the train task whose folder is ``folder``.

    The task returns the URI of its ``results`` artifact (a short parameter); the entries are
    in that file.
    """
    executed = json.loads((Path(folder) / "executor_output.json").read_text())
    uri = executed["parameterValues"]["Output"]
    assert Path(uri) == Path(folder) / "results"
    return json.loads(Path(uri).read_text())


def train_entries(output: Path) -> list[dict]:
    """Every (configuration, fold) entry of every train task of a run in ``output``."""
    entries = []
    for path in sorted((Path(output) / "pipeline").rglob("results")):
        loaded = json.loads(path.read_text())
        if isinstance(loaded, list) and loaded and "n_train" in loaded[0]:
            entries += loaded
    return entries
