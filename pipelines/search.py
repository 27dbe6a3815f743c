"""The search part every foldwise pipeline shares.

preprocess → per fold (scale → one_hot_encode) → collect_folds → plan_trials →
per (config, fold) train (or packed: per config, or per group of configs) → aggregate.

Per-fold transforms are computed once per fold and reused by every configuration. The shape
is chosen so that kfp.local executes it correctly and a cluster runs one pod per step: two
flat loops, one over the fold ids and one over the trials, whose inputs are loop-item fields,
pipeline parameters and artifacts only (kfp.local replaces any other task's parameter output
inside a loop with the loop item). Trial results fan in as parameters, not artifacts.
"""

from kfp import dsl

from foldwise.components import (
    aggregate,
    collect_folds,
    export,
    one_hot_encode,
    plan_trials,
    preprocess,
    refit,
    report,
    scale,
    train,
)
from foldwise.pipelines.cluster import ClusterSettings


def search_steps(settings: ClusterSettings, data, target, task, categorical, numeric, drop,
                 group_column, folds, seed, scaler, param_grid, model_spec, scoring, baseline,
                 packing, champion=None):
    """Add the search steps to the pipeline being defined, each set up by ``settings``.

    ``champion`` (retrain) is the champion step's output: the promoted configuration,
    cross-validated first beside the grid's.

    Returns:
        ``(preprocess_task, aggregate_task)``.
    """
    step = settings.apply

    prepared = step(preprocess(
        data=data, target=target, task=task, categorical=categorical, numeric=numeric,
        drop=drop, group_column=group_column, folds=folds, seed=seed), "preprocess")
    schema = prepared.outputs["schema"]
    with dsl.ParallelFor(items=prepared.outputs["Output"], name="folds") as fold:
        scaled = step(scale(prepared=prepared.outputs["prepared"], schema=schema, fold=fold,
                            scaler=scaler), "scale")
        encoded = step(one_hot_encode(scaled=scaled.outputs["scaled"], schema=schema,
                                      fold=fold), "one-hot-encode")
    fold_data = step(collect_folds(encoded=dsl.Collected(encoded.outputs["encoded"])),
                     "collect-folds")
    trials = step(plan_trials(schema=schema, fold_ids=prepared.outputs["Output"],
                              param_grid=param_grid, model_spec=model_spec, baseline=baseline,
                              champion=[] if champion is None else champion,
                              packing=packing),
                  "plan-trials")
    with dsl.ParallelFor(items=trials.output, name="trials") as trial:
        trained = step(train(fold_data=fold_data.outputs["fold_data"], schema=schema,
                             configs=trial.configs, folds=trial.folds,
                             seed=seed), "train")
    results = step(aggregate(schema=schema, fold_results=dsl.Collected(trained.outputs["Output"]),
                             scoring=scoring), "aggregate")
    return prepared, results


def publish_steps(settings: ClusterSettings, prepared, results, scaler, seed, destination,
                  new_version: bool = False):
    """Add refit → report → export after :func:`search_steps`.

    Returns:
        ``(refit_task, report_task, export_task)``.
    """
    step = settings.apply

    schema = prepared.outputs["schema"]
    final = step(refit(prepared=prepared.outputs["prepared"], schema=schema,
                       best_params=results.outputs["best_params"], scaler=scaler, seed=seed),
                 "refit")
    page = step(report(schema=schema, cv_results=results.outputs["cv_results"],
                       summary=results.outputs["summary"],
                       oof_predictions=results.outputs["oof_predictions"],
                       best_histories=results.outputs["best_histories"]), "report")
    published = step(export(model=final.outputs["model"],
                            cv_results=results.outputs["cv_results"],
                            summary=results.outputs["summary"],
                            best_params=results.outputs["best_params"],
                            page=page.outputs["page"],
                            fold_assignment=prepared.outputs["fold_assignment"],
                            destination=destination, new_version=new_version), "export")
    return final, page, published
