"""Retrain: search, refit, then promote the result only if it beats the model served now.

champion → preprocess → scale → one_hot_encode (every fold in each) → plan_trials
(champion's configuration first, then the grid's) → per trial train → aggregate → refit →
report → export (into a new version folder) → promote (rewrite ``current.json`` if better).
"""

from typing import NamedTuple

from kfp import dsl

from foldwise.components import champion, promote
from foldwise.components.artifacts import UnmanagedContainerModel
from foldwise.pipelines.dags.cluster import LOCAL, ClusterSettings
from foldwise.pipelines.dags.search import publish_steps, run_values, search_steps

RetrainOutputs = NamedTuple("RetrainOutputs", decision=str, promoted=bool,
                            serving_model=UnmanagedContainerModel)


def build_retrain(settings: ClusterSettings = LOCAL):
    """The retrain pipeline with each step set up by ``settings``."""

    @dsl.pipeline(
        name="foldwise-retrain",
        description="Grid search (or one configuration) on fresh data; the winner is exported "
                    "as a new version and promoted only if it beats the promoted model's "
                    "configuration on the same folds.",
    )
    def retrain(
        data: str,
        target: str,
        promote_to: str,
        param_grid: list = [],  # noqa: B006 - KFP reads defaults from the signature
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
        serving_image: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
    ) -> RetrainOutputs:
        """Retrain on ``data`` and promote under ``promote_to`` only if better.

        Args:
            data: Path or ``gs://`` URI of the CSV or Parquet table.
            target: Column to predict.
            promote_to: Local folder or ``gs://`` prefix: ``versions/<id>/`` exports and the
                ``current.json`` pointer to the version being served.
            param_grid: Mappings of parameter → list of values; empty to train
                ``model_spec``.
            model_spec: Model options fixed for every configuration the grid does not vary
                (the one configuration, when ``param_grid`` is empty).
            task: ``classification``, ``regression`` or empty to infer it.
            categorical: Columns to one-hot encode whatever their type.
            numeric: Columns to treat as numbers.
            drop: Columns to leave out.
            group_column: Rows sharing this column's value share a fold.
            folds: Number of folds (per repetition).
            split: ``kfold`` or ``time``: time-ordered folds, each validating the next block
                of rows in time after training on the rows before it.
            order_column: ``time``: the column of times; empty for the table's row order.
            gap: ``time``: rows left out between a fold's training rows and its block.
            test_size: ``time``: rows per validation block; 0 for ``rows // (folds + 1)``.
            repeats: Repeat K-fold this many times, reshuffled each time.
            seed: Seed of folds, weights and shuffling.
            scaler: ``standard``, ``minmax``, ``robust`` or ``none``.
            scoring: Metric that decides; empty for ``r2`` / ``accuracy``.
            baseline: ``mlp`` to also score scikit-learn's MLP twins.
            objectives: The score and serving costs weighed against each other
                (``r2,latency``; also ``n_parameters``, ``model_bytes``): ``cv_results``
                marks the Pareto front.
            importance: ``on``: the best configuration's permutation importance of each raw
                column, over the folds (summary and report); ``off`` to skip it.
            packing: ``none``: one train task per (configuration, fold), a pod each on a
                cluster; ``folds``: one task per configuration trains its folds at once as
                one packed program; ``configs``: configurations that pack share tasks too.
                The same models either way.
            serving_image: The image that serves the exported SavedModel, given as the
                ``serving_model`` output's ``containerSpec.imageUri`` (Vertex AI's prebuilt
                TensorFlow image by default).

        Returns:
            ``decision``: JSON of the decision: ``promote``, ``version`` served afterwards,
            ``reason``; ``promoted``: whether the new version was promoted (deploy it only
            then); ``serving_model``: the new version's SavedModel, to deploy.
        """
        values = run_values(locals())
        current = settings.apply(champion(promote_to=promote_to), "champion")
        prepared, results = search_steps(settings, values, param_grid, model_spec,
                                          champion=current.output)
        final, _, published = publish_steps(settings, prepared, results, values, promote_to,
                                            model_spec, new_version=True,
                                            serving_image=serving_image)
        decision = settings.apply(promote(
            schema=prepared.outputs["schema"], best_config=results.outputs["best_config"],
            champion=current.output, manifest=published.output, promote_to=promote_to,
        ), "promote")
        return RetrainOutputs(decision=decision.outputs["decision"],
                              promoted=decision.outputs["promoted"],
                              serving_model=final.outputs["serving_model"])

    return retrain


retrain = build_retrain()
