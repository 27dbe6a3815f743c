"""Nested cross-validation: an honest estimate of what a search's best configuration scores.

preprocess (outer folds, and inner folds of each outer fold's training rows) → scale →
one_hot_encode (every inner and outer fold in each) → plan_trials → per (config, inner fold)
train → nested_choose (per outer fold, the best on its own inner folds) → per outer fold the
chosen configuration's train → nested_aggregate → export.

Every inner search runs in the one flat loop of train tasks, its transforms fitted on its
outer fold's training rows only; the outer folds train in a second flat loop (two loops one
after the other, never one inside another: the shape kfp.local runs correctly).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset

from foldwise.components import (
    export,
    nested_aggregate,
    nested_choose,
    nested_stage,
    plan_trials,
    train,
)
from foldwise.pipelines.dags.cluster import LOCAL, ClusterSettings
from foldwise.pipelines.dags.search import run_values, train_stages, transform_steps

NestedOutputs = NamedTuple(
    "NestedOutputs", cv_results=Dataset, summary=Artifact, folds=Dataset, report=HTML,
    manifest=str,
)


def build_nested_cv(settings: ClusterSettings = LOCAL, rungs: int = 0):
    """The nested cross-validation pipeline with each step set up by ``settings``.

    ``rungs``: the stages of a halving or Bayesian inner search (0: a grid or random one).
    """

    @dsl.pipeline(
        name="foldwise-nested-cv",
        description="Nested cross-validation of a grid or random search of Keras models: the "
                    "outer folds' scores of the configuration each outer fold's own search "
                    "chose.",
    )
    def nested_cv(
        data: str,
        target: str,
        destination: str,
        param_grid: list = [],  # noqa: B006 - KFP reads defaults from the signature
        param_distributions: list = [],  # noqa: B006
        n_iter: int = 10,
        outer_folds: int = 5,
        n_candidates: int = 0,
        halving: dict = {},  # noqa: B006
        bayes: dict = {},  # noqa: B006
        model_spec: dict = {},  # noqa: B006
        task: str = "",
        categorical: list = [],  # noqa: B006
        numeric: list = [],  # noqa: B006
        drop: list = [],  # noqa: B006
        group_column: str = "",
        folds: int = 5,
        split: str = "kfold",
        order_column: str = "",
        gap: int = 0,
        test_size: int = 0,
        repeats: int = 1,
        seed: int = 0,
        scaler: str = "standard",
        scoring: str = "",
        baseline: str = "none",
        objectives: str = "",
        importance: str = "on",
        packing: str = "none",
        refit: str = "best",
    ) -> NestedOutputs:
        """Nested cross-validation of a grid (or random) search.

        Args:
            data: Path or ``gs://`` URI of the CSV or Parquet table.
            target: Column to predict.
            destination: Local folder or ``gs://`` prefix receiving ``cv_results.csv`` (each
                outer fold's inner search), ``summary.json`` (the outer scores, choices,
                wins and optimism), ``folds.csv``, ``report.html`` and, last,
                ``manifest.json``.
            param_grid: Mappings of parameter → values (a grid search inside each outer fold).
            param_distributions: A random search's space instead: ``n_iter`` points sampled
                once, with the run's seed, and searched inside each outer fold.
            n_iter: How many points a random search samples.
            outer_folds: Outer folds, each searching on ``folds`` inner folds of its
                training rows.
            n_candidates: Successive halving of sampled candidates: how many (0:
                ``max_resources // min_resources``).
            halving: Successive halving inside each outer fold (``halving-search``'s
                settings; a pipeline built with its rungs); empty for none.
            bayes: Bayesian search inside each outer fold (``bayes-search``'s settings; a
                pipeline built with its stages); empty for none.
            model_spec: Model options fixed for every configuration the grid does not vary.
            task: ``classification``, ``regression`` or empty to infer it.
            categorical: Columns to one-hot encode whatever their type.
            numeric: Columns to treat as numbers.
            drop: Columns to leave out.
            group_column: Rows sharing this column's value share a fold (outer and inner).
            folds: Inner folds per outer fold.
            split: ``kfold`` (nested cross-validation takes shuffled K-fold only).
            order_column: Not used by nested cross-validation (empty).
            gap: Not used by nested cross-validation (0).
            test_size: Not used by nested cross-validation (0).
            repeats: Not used by nested cross-validation (1).
            seed: Seed of folds, weights, shuffling and sampling.
            scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
            scoring: Metric each inner search ranks by; empty for ``r2`` / ``accuracy``.
            baseline: ``mlp`` to also score scikit-learn's MLP twins in the inner searches
                (never chosen).
            objectives: Not used by nested cross-validation (empty).
            importance: Not used by nested cross-validation.
            packing: ``none``: one train task per (configuration, inner fold); ``folds`` or
                ``configs``: packed, the same models either way.
            refit: How each inner search chooses: ``best`` or ``one_standard_error``.

        Returns:
            ``cv_results`` (CSV), ``summary`` (JSON), ``folds`` (CSV of row → fold roles),
            the ``report`` and the URI of the published manifest.
        """
        values = run_values(locals())
        step = settings.apply
        prepared, _, fold_data = transform_steps(settings, values, outer_folds=outer_folds)
        schema = prepared.outputs["schema"]
        staged = {"halving": halving, "bayes": bayes, "rungs": rungs} if rungs else {}
        trials = step(plan_trials(schema=schema, fold_ids=prepared.outputs["Output"],
                                  param_grid=param_grid, model_spec=model_spec,
                                  baseline=values["baseline"], packing=values["packing"],
                                  param_distributions=param_distributions,
                                  n_iter=n_candidates if rungs else n_iter,
                                  seed=values["seed"], **staged), "plan-trials")
        train_inputs = {"fold_data": fold_data.outputs["fold_data"], "schema": schema,
                        "seed": values["seed"], "model_spec": model_spec}
        # A halving or Bayesian inner search: after each stage, every outer fold's next one
        # at once, then a loop of their train tasks; after the last, every inner result's URI.
        def plan_stage(previous, collected, stage: int):
            return step(nested_stage(schema=schema, previous=previous.outputs["plan"],
                                     fold_results=collected, model_spec=model_spec,
                                     seed=values["seed"], scoring=values["scoring"],
                                     packing=values["packing"]), f"stage-{stage}")

        last, collected = train_stages(settings, trials, train_inputs, rungs, plan_stage,
                                       "trials-stage")
        chosen = step(nested_choose(schema=schema, inner_plan=last.outputs["plan"],
                                    fold_results=collected, scoring=values["scoring"],
                                    refit=refit), "choose")
        with dsl.ParallelFor(items=chosen.outputs["Output"], name="outer-trials") as trial:
            outer = step(train(plan=chosen.outputs["plan"], trial=trial, **train_inputs),
                         "train")
        answer = step(nested_aggregate(schema=schema, chosen=chosen.outputs["chosen"],
                                       fold_results=dsl.Collected(outer.outputs["Output"])),
                      "aggregate")
        published = step(export(cv_results=chosen.outputs["cv_results"],
                                summary=answer.outputs["summary"], page=answer.outputs["page"],
                                fold_assignment=prepared.outputs["fold_assignment"],
                                destination=destination), "export")
        return NestedOutputs(cv_results=chosen.outputs["cv_results"],
                             summary=answer.outputs["summary"],
                             folds=prepared.outputs["fold_assignment"],
                             report=answer.outputs["page"], manifest=published.output)

    return nested_cv


nested_cv = build_nested_cv()
