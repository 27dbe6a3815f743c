"""One model trained in the one engine, in a process of its own (the refit's training).

The refit step exports its model with TensorFlow (the serving model's string lookups and
SavedModel need Keras' TensorFlow backend), while every model trains under Keras' JAX
backend, and one process has one backend. So the refit trains its model like any other
member, in a child process on JAX (:func:`start`: the child reads and preprocesses the
table itself), while it imports TensorFlow and preprocesses the same rows for the export,
and then loads the trained model (``model.keras``, ``safe_mode``). A user's builder
that runs TensorFlow operations (``core.models.tensorflow_standin``) is trained by the caller
itself, through Keras' ``fit``.

    python -m foldwise.components.core.training.engine_process FOLDER
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from foldwise.components.core.data.whole_table import all_rows
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.estimators import load_trained
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.models.tensorflow_standin import operation_needed
from foldwise.components.core.training.fit import FoldResult, save_model, train_fold
from foldwise.components.core.training.vmapped import select_backend

REQUEST = "request.json"
ANSWER = "answer.json"
NEEDS_TENSORFLOW = 3  # the child's exit status for a builder that runs TensorFlow operations


@dataclass
class Job:
    """A model training in a child process; :meth:`result` waits for it."""

    process: subprocess.Popen
    folder: str
    task: str
    n_classes: int | None
    spec: dict
    seed: int

    def result(self, data):
        """The trained model's ``core.training.fit.FoldResult``, its model loaded here.

        ``data`` is what the child trained on (a ``FoldData``): a builder that runs
        TensorFlow operations is trained on it here, through TensorFlow's ``fit``.

        Raises:
            FoldwiseError: Training failed for a reason the user can fix (as the engine says).
            RuntimeError: The child failed otherwise (its output is in the message).
        """
        output, _ = self.process.communicate()
        if self.process.returncode == NEEDS_TENSORFLOW:  # TensorFlow's fit, here
            return train_fold(data, task=self.task, n_classes=self.n_classes,
                              spec=self.spec, seed=self.seed)
        answer_path = os.path.join(self.folder, ANSWER)
        if not os.path.exists(answer_path):
            raise RuntimeError(f"training in the engine's process failed: {output[-4000:]}")
        with open(answer_path, encoding="utf-8") as handle:
            answer = json.load(handle)
        if answer.get("error"):
            if answer.get("user_error"):
                raise FoldwiseError(answer["error"])
            raise RuntimeError(f"training in the engine's process failed: {answer['error']}")
        return FoldResult(load_trained(os.path.join(self.folder, "model.keras"), self.spec),
                          answer["history"], np.load(os.path.join(self.folder,
                                                                  "prediction.npy")),
                          answer["scores"], answer["fit_time"], answer["score_time"],
                          answer["epochs_run"], answer["target_scaling"], answer["devices"],
                          answer["estimator"], answer["fit_error"])


def start(rows: dict, *, task: str, n_classes: int | None, spec: dict, seed: int,
          folder: str) -> Job:
    """Start training ``spec`` (a configuration; the child checks it) in a JAX process.

    ``rows`` says what it trains on: ``{"prepared", "schema", "scaler"}``, every row of the
    preprocessed table at that path, preprocessed there as the served model will
    (``core.data.whole_table.all_rows``): the caller does the same meanwhile, with TensorFlow.
    """
    os.makedirs(folder, exist_ok=True)
    described = {"task": task, "n_classes": n_classes, "spec": spec, "seed": seed,
                 "rows": rows}
    with open(os.path.join(folder, REQUEST), "w", encoding="utf-8") as handle:
        json.dump(described, handle)
    environment = {**os.environ, "KERAS_BACKEND": "jax"}
    process = subprocess.Popen(
        [sys.executable, "-m", "foldwise.components.core.training.engine_process", folder],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    return Job(process, folder, task, n_classes, spec, seed)


def main(folder: str) -> int:
    """The child: train the request in ``folder``, save the model and the answer there."""
    select_backend()
    import pandas as pd


    with open(os.path.join(folder, REQUEST), encoding="utf-8") as handle:
        described = json.load(handle)
    rows = described["rows"]
    data, _ = all_rows(pd.read_parquet(rows["prepared"]), rows["schema"], rows["scaler"])
    answer: dict
    try:
        spec = normalize_spec(described["spec"], described["task"], described["n_classes"])
        result = train_fold(data, task=described["task"], n_classes=described["n_classes"],
                            spec=spec, seed=described["seed"])
        save_model(result, folder)
        np.save(os.path.join(folder, "prediction.npy"), result.prediction)
        answer = {"history": result.history, "scores": result.scores,
                  "fit_time": result.fit_time, "score_time": result.score_time,
                  "epochs_run": result.epochs_run, "target_scaling": result.target_scaling,
                  "devices": result.devices, "estimator": result.estimator,
                  "fit_error": result.fit_error}
    except Exception as err:
        if operation_needed(err) is not None:
            return NEEDS_TENSORFLOW
        answer = {"error": str(err) if isinstance(err, FoldwiseError)
                  else f"{type(err).__name__}: {err}",
                  "user_error": isinstance(err, FoldwiseError)}
    partial = os.path.join(folder, ANSWER + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(answer, handle, default=float)
    os.replace(partial, os.path.join(folder, ANSWER))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
