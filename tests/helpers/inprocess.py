"""The cross-validation computed in the test process, step by step, without KFP."""

import pandas as pd

from foldwise.components.core.columns import FOLD_COLUMN
from foldwise.components.core.data.encoding import (
    apply_one_hot,
    encoded_feature_names,
    fit_one_hot,
)
from foldwise.components.core.data.fold_data import split_fold
from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess
from foldwise.components.core.data.scaling import apply_scaler, fit_scaler
from foldwise.components.core.models.spec import normalize_spec
from foldwise.components.core.training.fit import train_fold


def in_process_scores(table: pd.DataFrame, target: str, spec: dict, seed: int, folds: int,
                      scaler: str = "standard") -> list[dict]:
    """Scores per fold of one configuration, computed the way the pipeline does, without KFP.

    In a plain process of its own with Keras on JAX, as the train steps run (``in_jax``).
    """
    from helpers import in_jax

    return in_jax.call("helpers.inprocess", "scores_here", table, target, spec, seed, folds,
                       scaler)


def uninterrupted(datas: list, specs: list[dict], seeds: list[int], task: str,
                  n_classes: int | None) -> list[tuple]:
    """``(weights, epochs_run)`` of each model trained at once by ``train_folds``."""
    from foldwise.components.core.training.fit import train_folds

    return [(result.model.get_weights(), result.epochs_run) for result in train_folds(
        datas, task=task, n_classes=n_classes, specs=specs, seeds=seeds)]


def scores_here(table: pd.DataFrame, target: str, spec: dict, seed: int, folds: int,
                scaler: str = "standard") -> list[dict]:
    """:func:`in_process_scores`, computed in this process."""
    prepared, schema = preprocess(table, PreprocessOptions(target=target, folds=folds,
                                                           seed=seed))
    n_classes = len(schema["classes"]) if schema["classes"] else None
    full = normalize_spec(spec, schema["task"], n_classes)
    scores = []
    for fold in range(folds):
        train_rows = prepared[FOLD_COLUMN] != fold
        scaled = apply_scaler(prepared, fit_scaler(prepared[train_rows], schema["numeric"],
                                                   scaler))
        encoder = fit_one_hot(scaled[train_rows], schema["categorical"])
        encoded = apply_one_hot(scaled, encoder)
        features = encoded_feature_names(schema["numeric"], encoder)
        data = split_fold(encoded, fold, target, features)
        result = train_fold(data, task=schema["task"], n_classes=n_classes, spec=full,
                            seed=seed)
        scores.append(result.scores)
    return scores
