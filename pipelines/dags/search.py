"""The search part every foldwise pipeline shares.

preprocess → scale (every fold) → one_hot_encode (every fold) → plan_trials →
per (config, fold) train (or packed: per config, or per group of configs) → aggregate.

Each fold's transforms are fitted on its own training rows, once, and reused by every
configuration; the two transform steps loop over the folds inside one task each (two process
starts, or pods, instead of two per fold). The shape is chosen so that kfp.local executes it
correctly and a cluster runs one pod per step: one flat loop over the trials, whose inputs are
loop-item fields, pipeline parameters and artifacts only (kfp.local replaces any other task's
parameter output inside a loop with the loop item). However large the search, what travels
as parameters stays small: the plan and the trials' results are artifacts, the train loop's
items are the tasks' numbers, and each train task hands the aggregate step only its results'
URI.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Model

from foldwise.components import (
    aggregate,
    export,
    next_round,
    next_rung,
    one_hot_encode_folds,
    plan_trials,
    preprocess,
    refit,
    report,
    scale_folds,
    train,
)
from foldwise.components.artifacts import UnmanagedContainerModel
from foldwise.components.core import options
from foldwise.pipelines.dags.cluster import ClusterSettings

GridSearchOutputs = NamedTuple(
    "GridSearchOutputs", cv_results=Dataset, summary=Artifact, folds=Dataset, model=Model,
    report=HTML, refit_predictions=Dataset, manifest=str,
    serving_model=UnmanagedContainerModel,
)


def run_values(namespace: dict) -> dict:
    """A pipeline's run options (:data:`options.RUN` and ``data``) out of its parameters.

    Each pipeline calls it with ``locals()`` as its first statement, so that the options reach
    the steps by name, never listed again.
    """
    return {name: namespace[name] for name in ("data", *options.RUN)}


def search_steps(settings: ClusterSettings, values: dict, param_grid, model_spec,
                 champion=None, *, distributions=None, n_iter=None, halving=None,
                 bayes=None, rungs: int = 0, refit="best", refit_epochs="fixed"):
    """Add the search steps to the pipeline being defined, each set up by ``settings``.

    Args:
        settings: How each step runs.
        values: The pipeline's run options (:func:`run_values`).
        param_grid: The grid (``[]`` for one configuration).
        model_spec: Model options fixed for every configuration the grid does not vary.
        champion: The champion step's output (retrain): the promoted configuration,
            cross-validated first beside the grid's.
        distributions: A random search's space (a pipeline parameter), sampled by the plan
            step; ``n_iter`` points of it.
        n_iter: How many points the plan step samples.
        halving: Successive-halving settings (a pipeline parameter): the search runs in
            ``rungs`` rungs, each a ``next_rung`` plan step and a loop of train tasks.
        bayes: A Bayesian search's settings (a pipeline parameter): the search runs in
            ``rungs`` stages, each a ``next_round`` plan step and a loop of train tasks
            (``core.search.rounds``).
        rungs: How many rungs or stages (fixed when the pipeline is built).
        refit: The refit rule (a pipeline parameter or ``"best"``).
        refit_epochs: The refit's epochs (a pipeline parameter or ``"fixed"``).

    Returns:
        ``(preprocess_task, aggregate_task)``.
    """
    step = settings.apply

    prepared, scaled, fold_data = transform_steps(settings, values)
    schema = prepared.outputs["schema"]
    trials = step(plan_trials(schema=schema, fold_ids=prepared.outputs["Output"],
                              param_grid=param_grid, model_spec=model_spec,
                              baseline=values["baseline"],
                              champion=[] if champion is None else champion,
                              packing=values["packing"],
                              **({} if distributions is None else {
                                  "param_distributions": distributions,
                                  "seed": values["seed"]}),
                              **({} if n_iter is None else {"n_iter": n_iter}),
                              **({} if halving is None else {"halving": halving,
                                                             "rungs": rungs}),
                              **({} if bayes is None else {"bayes": bayes, "rungs": rungs,
                                                           "objectives": values["objectives"]})),
                  "plan-trials")
    train_inputs = {"fold_data": fold_data.outputs["fold_data"], "schema": schema,
                    "seed": values["seed"], "model_spec": model_spec}
    # What serving costs are measured on: raw rows, each fold's own fitted preprocessing
    # (core.serving.costs), in one step after training (and after each Bayesian stage).
    measured_on = {"prepared": prepared.outputs["prepared"],
                   "scaler_state": scaled.outputs["scaler_state"],
                   "encoder_state": fold_data.outputs["encoder_state"]}
    staged = halving is not None or bayes is not None
    stage = "stage" if bayes is not None else "rung"

    def plan_stage(previous, collected, rung: int):
        if bayes is not None:
            return step(next_round(schema=schema, previous=previous.outputs["plan"],
                                   fold_results=collected, model_spec=model_spec,
                                   seed=values["seed"], scoring=values["scoring"],
                                   packing=values["packing"], **measured_on), f"{stage}-{rung}")
        return step(next_rung(schema=schema, previous=previous.outputs["plan"],
                              fold_results=collected, scoring=values["scoring"],
                              packing=values["packing"]), f"{stage}-{rung}")

    _, collected = train_stages(settings, trials, train_inputs, rungs if staged else 0,
                                plan_stage, f"trials-{stage}")
    results = step(aggregate(schema=schema, fold_results=collected, scoring=values["scoring"],
                             refit=refit, refit_epochs=refit_epochs,
                             objectives=values["objectives"], model_spec=model_spec,
                             importance=values["importance"],
                             fold_data=fold_data.outputs["fold_data"], **measured_on),
                   "aggregate")
    return prepared, results


def transform_steps(settings: ClusterSettings, values: dict, **preprocess_options):
    """Add preprocess → scale → one_hot_encode (every fold in each) to the pipeline.

    Args:
        settings: How each step runs.
        values: The pipeline's run options (:func:`run_values`).
        **preprocess_options: The preprocess step's inputs besides the run's options
            (nested cross-validation's ``outer_folds``).

    Returns:
        ``(preprocess_task, scale_task, one_hot_encode_task)``.
    """
    step = settings.apply
    prepared = step(preprocess(data=values["data"], **preprocess_options,
                               **{name: values[name] for name in options.PREPROCESS}),
                    "preprocess")
    schema = prepared.outputs["schema"]
    scaled = step(scale_folds(prepared=prepared.outputs["prepared"], schema=schema,
                              scaler=values["scaler"]), "scale")
    fold_data = step(one_hot_encode_folds(scaled=scaled.outputs["scaled"], schema=schema),
                     "one-hot-encode")
    return prepared, scaled, fold_data


def train_stages(settings: ClusterSettings, trials, train_inputs: dict, stages: int,
                 plan_stage, loop_name: str):
    """Add the loop of ``trials``' train tasks, then per stage its plan step and its loop.

    Args:
        settings: How each step runs.
        trials: The task whose plan the first loop trains (its ``Output``: the loop's items).
        train_inputs: The train steps' inputs besides the plan and the task's number.
        stages: How many stages follow the first loop (0: none).
        plan_stage: ``(previous plan task, collected results, stage) -> plan task``: adds a
            stage's plan step; the last stage's ``Output`` is every result's URI.
        loop_name: The stages' loops are named ``<loop_name>-<stage>``.

    Returns:
        ``(last plan task, results)``: the train results collected from the last loop, or
        after the last stage its plan step's output.
    """
    step = settings.apply
    with dsl.ParallelFor(items=trials.outputs["Output"], name="trials") as trial:
        trained = step(train(plan=trials.outputs["plan"], trial=trial, **train_inputs),
                       "train")
    collected = dsl.Collected(trained.outputs["Output"])
    for stage in range(1, stages + 1):
        # After each stage, the next one's tasks (after the last: every result's URI).
        trials = plan_stage(trials, collected, stage)
        if stage == stages:
            return trials, trials.outputs["Output"]
        with dsl.ParallelFor(items=trials.outputs["Output"],
                             name=f"{loop_name}-{stage}") as trial:
            trained = step(train(plan=trials.outputs["plan"], trial=trial, **train_inputs),
                           "train")
        collected = dsl.Collected(trained.outputs["Output"])
    return trials, collected


def publish_steps(settings: ClusterSettings, prepared, results, values: dict, destination,
                  model_spec=None, new_version: bool = False, serving_image=None):
    """Add (refit →) report → export after :func:`search_steps`.

    Args:
        settings: How each step runs.
        prepared: The preprocess task.
        results: The aggregate task.
        values: The pipeline's run options (:func:`run_values`).
        destination: Where the export goes (a pipeline parameter).
        model_spec: The run's fixed model options (a pipeline parameter): refit the best
            configuration on all rows and export it with the results (grid search,
            retrain); ``None``: cross-validation exports its results only.
        new_version: Export into a new version folder (retrain).
        serving_image: The refit's serving image (a pipeline parameter; with ``model_spec``).

    Returns:
        ``(refit_task or None, report_task, export_task)``.
    """
    step = settings.apply

    schema = prepared.outputs["schema"]
    final = None
    if model_spec is not None:
        final = step(refit(prepared=prepared.outputs["prepared"], schema=schema,
                           best_config=results.outputs["best_config"],
                           scaler=values["scaler"], seed=values["seed"],
                           model_spec=model_spec, serving_image=serving_image), "refit")
    page = step(report(schema=schema, cv_results=results.outputs["cv_results"],
                       summary=results.outputs["summary"],
                       oof_predictions=results.outputs["oof_predictions"],
                       best_histories=results.outputs["best_histories"],
                       prepared=prepared.outputs["prepared"]), "report")
    model = {"model": final.outputs["model"],
             "best_params": results.outputs["best_params"]} if final else {}
    published = step(export(cv_results=results.outputs["cv_results"],
                            summary=results.outputs["summary"], page=page.outputs["page"],
                            fold_assignment=prepared.outputs["fold_assignment"],
                            destination=destination, new_version=new_version, **model),
                     "export")
    return final, page, published


def search_outputs(settings: ClusterSettings, prepared, results, values: dict, destination,
                   model_spec, serving_image) -> GridSearchOutputs:
    """Refit → report → export after a search's steps, and the pipeline's outputs."""
    final, page, published = publish_steps(settings, prepared, results, values, destination,
                                           model_spec, serving_image=serving_image)
    return GridSearchOutputs(
        cv_results=results.outputs["cv_results"], summary=results.outputs["summary"],
        folds=prepared.outputs["fold_assignment"], model=final.outputs["model"],
        report=page.outputs["page"], refit_predictions=final.outputs["predictions"],
        manifest=published.output, serving_model=final.outputs["serving_model"],
    )
