"""foldwise from Python, in scikit-learn's words: ``GridSearchCV`` and ``cross_validate``.

Each ``fit`` runs the same KFP pipeline as the command line, on the embedded engine, through
the same application layer (:mod:`foldwise.pipelines.runs`); a user's mistake raises
:class:`~foldwise.components.core.errors.FoldwiseError` with the command line's message.
Keywords are derived from the option table (:mod:`foldwise.components.core.options`):
scikit-learn's names where it has the idea (``cv``, ``random_state``, ``scoring``), the
command line's otherwise (``hidden_units``, ``learning_rate``, ``epochs`` ...).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError

# Keywords every run takes besides the options of the table.
OUTPUT_HELP = "results folder or gs:// prefix (default: a new folder under ./foldwise-runs/)"
RUN_KEYWORDS = [opt for opt in options.group(options.DATA, options.FOLDS, options.BUILDER,
                                             options.MODEL) if opt.name != "target"]


def _keyword(name: str, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)


def _signature(first: list[inspect.Parameter]) -> inspect.Signature:
    """``(self, *first, *, <every run option>, output=None, verbose=True)``."""
    return inspect.Signature([
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *first,
        *[_keyword(opt.python_name, opt.given_default) for opt in RUN_KEYWORDS],
        _keyword("output", None), _keyword("verbose", True)])


def _option_values(params: dict) -> dict:
    """Keyword values by option name (``cv`` → ``folds``, ``random_state`` → ``seed``)."""
    return {opt.name: params[opt.python_name] for opt in RUN_KEYWORDS}


def table_from_xy(X, y) -> tuple[object, str]:
    """One table of features and target from ``X`` and ``y``, and the target's name.

    Raises:
        FoldwiseError: ``X`` or ``y`` cannot make a table (the message says why).
    """
    import pandas as pd

    if y is None:
        raise FoldwiseError("fit needs y: the target values, or the target column's name when "
                            "X is a table file")
    table = feature_frame(X)
    if len(table) == 0:
        raise FoldwiseError("X has no rows: give at least one row per fold")
    values = np.asarray(y)
    if values.ndim != 1:
        raise FoldwiseError(f"y must be one column of targets, got shape {values.shape}")
    if len(values) != len(table):
        raise FoldwiseError(f"X has {len(table)} rows but y has {len(values)}: give one target "
                            "per row")
    if isinstance(y, pd.Series) and y.name is not None:
        target = str(y.name)
        if target in table.columns:
            raise FoldwiseError(f"y's name {target!r} is also a column of X: drop it from X or "
                                "rename y")
    else:  # an unnamed target gets a name no column has
        target = next(name for name in ("y", "target", *(f"y_{i}" for i in range(1, 1000)))
                      if name not in table.columns)
    table[target] = values
    return table, target


def feature_frame(X, names=None):
    """``X`` as a DataFrame with text column names, its rows numbered from 0.

    A 2-d array's columns are named ``names``, or ``x0``, ``x1``, … .

    Raises:
        FoldwiseError: Not two-dimensional, or two columns whose names read the same as text.
    """
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        frame = X.reset_index(drop=True).rename(columns=str)
    else:
        array = np.asarray(X)
        if array.ndim != 2:
            raise FoldwiseError(f"X must be a DataFrame or a 2-d array, got shape {array.shape}")
        names = list(names) if names is not None else [f"x{i}" for i in range(array.shape[1])]
        if len(names) != array.shape[1]:
            raise FoldwiseError(f"X has {array.shape[1]} columns; the model was fitted on "
                                f"{len(names)}")
        frame = pd.DataFrame(array, columns=names)
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise FoldwiseError(f"X has columns whose names read the same as text: {duplicated}; "
                            "rename them")
    return frame


class _PipelineEstimator(BaseEstimator):
    """What :class:`GridSearchCV` and :func:`cross_validate` share: options, data, a run."""

    _pipeline = "grid-search"

    def _search(self, X, y, params: dict, grid: list):
        """The :class:`runs.Search` for ``fit(X, y)``."""
        from foldwise.pipelines.runs import Search

        values = _option_values(params)
        if isinstance(X, (str, Path)):
            if not isinstance(y, str):
                raise FoldwiseError("with X a table file (path or gs:// URI), y is the target "
                                    "column's name")
            values["target"], self._labels = y, {}
            return Search.from_values(self._pipeline, str(X), values, grid=grid,
                                      output=params["output"])
        table, values["target"] = table_from_xy(X, y)
        # class labels as y gave them (the steps read them back as text or numbers)
        self._labels = {str(v): v for v in table[values["target"]].dropna().unique()}
        search = Search.from_values(self._pipeline, "", values, grid=grid,
                                    output=params["output"])
        search.table = table
        return search

    @staticmethod
    def _run(search, verbose: bool):
        import warnings

        from foldwise.pipelines.runs import run_local

        def warn(plan) -> None:  # what the command line prints as "warning" lines
            for note in plan.schema.get("warnings", []):
                warnings.warn(note, UserWarning, stacklevel=4)

        if not verbose:
            return run_local(search, on_plan=lambda plan, *_: warn(plan))
        from tqdm.auto import tqdm

        bar = tqdm(total=None, unit="step", desc=search.pipeline)

        def on_plan(plan, workspace, destination) -> None:
            warn(plan)
            bar.total = plan.tasks
            bar.refresh()

        def on_event(event) -> None:
            if event.status is not None:
                bar.set_postfix_str(event.name, refresh=False)
                bar.update(1)

        try:
            return run_local(search, on_event, on_plan)
        finally:
            bar.close()


class GridSearchCV(_PipelineEstimator):
    """Grid search of Keras models with leakage-free K-fold cross-validation, as a KFP pipeline.

    Like scikit-learn's ``GridSearchCV``: every configuration of ``param_grid`` (plus the
    fixed model keywords) is cross-validated on the same folds, with imputation, scaling and
    one-hot categories fitted on each fold's training rows only; the best is refitted on all
    rows and exported with its preprocessing, so ``best_estimator_`` predicts raw rows.

    Args:
        param_grid: Mapping of model parameter → list of values (or a list of such
            mappings), e.g. ``{"hidden_units": [[32], [64, 32]], "learning_rate": [1e-3]}``.
        cv: Number of folds (stratified for classification; by group with
            ``group_column``).
        scoring: Metric that picks the best configuration (default ``r2`` / ``accuracy``).
        random_state: Seed of folds, weights and shuffling.
        output: Results folder or ``gs://`` prefix (default: a new folder under
            ``./foldwise-runs/``).
        verbose: Show a progress bar (terminal or notebook).
        **model_and_data_options: Every other option of the command line, by its name with
            underscores: ``task``, ``categorical``, ``numeric``, ``drop``, ``group_column``,
            ``scaler``, ``baseline``, ``packing`` and the model options (``hidden_units``,
            ``epochs``, ``batch_size``, ``optimizer``, ``learning_rate`` ...), fixed for
            every configuration the grid does not vary.

    Attributes:
        cv_results_: scikit-learn's ``cv_results_``: a dict of arrays with the columns of
            ``cv_results.csv`` (``params`` holds each configuration's complete spec).
        best_params_: The searched parameters of the best configuration.
        best_index_, best_score_: Its row in ``cv_results_`` and its mean score.
        best_estimator_: The exported model (:class:`~foldwise.pipelines.models.ServingModel`),
            which predicts raw rows.
        n_splits_, refit_time_, scorer_, classes_, feature_names_in_, summary_: As named.
        output_, report_path_: Where the results and the HTML report were written.
    """

    _pipeline = "grid-search"

    def __init__(self, param_grid=None, **params) -> None:
        known = set(_PARAMETERS)
        unknown = sorted(set(params) - known)
        if unknown:
            raise TypeError(f"GridSearchCV got an unexpected keyword argument {unknown[0]!r}")
        self.param_grid = param_grid
        for name, value in _DEFAULTS.items():
            setattr(self, name, params.get(name, value))

    def fit(self, X, y=None) -> GridSearchCV:
        """Run the search on kfp.local and load its answer.

        Args:
            X: DataFrame of raw columns (numbers, text, missing values), a 2-d array, or the
                path / ``gs://`` URI of a CSV or Parquet table.
            y: The targets (Series or array), or the target column's name when ``X`` is a
                table file.

        Returns:
            ``self``.

        Raises:
            FoldwiseError: A problem with the data, grid or options (the command line's
                message).
            PipelineFailed: A step failed for another reason (the message names the log).
        """
        from foldwise.components.core.grid import check_grid

        params = self.get_params()
        grid = (check_grid(self.param_grid, "param_grid", self.model is not None)
                if self.param_grid else [])
        if not grid:
            raise FoldwiseError("param_grid is empty: give a mapping of parameter → list of "
                                "values, e.g. {'learning_rate': [0.001, 0.01]}")
        result = self._run(self._search(X, y, params, grid), self.verbose)
        self._load(result, X)
        return self

    def _load(self, result, X) -> None:
        import warnings

        import pandas as pd

        from foldwise.components import storage
        from foldwise.pipelines.models import load_model

        summary = result.summary
        self.summary_ = summary
        self.cv_results_ = cv_results_dict(pd.read_csv(result.cv_results))
        self.scorer_ = summary["scoring"]
        ids = list(self.cv_results_["config_id"])
        self.best_index_ = ids.index(summary["best_config_id"])
        self.best_score_ = float(self.cv_results_[f"mean_test_{self.scorer_}"][self.best_index_])
        self.output_ = result.destination
        self.report_path_ = storage.join(result.destination, "report.html")
        self.best_params_ = json.loads(storage.read_bytes(
            storage.join(result.destination, "best_params.json")))
        self.n_splits_ = int(summary["folds"])
        self.refit_time_ = result.step_seconds.get("refit")
        self.classes_ = (np.asarray([self._labels.get(str(c), c) for c in summary["classes"]])
                         if summary["classes"] else None)
        if not isinstance(X, (str, Path)):
            self.feature_names_in_ = np.asarray(feature_frame(X).columns, dtype=object)
            self.n_features_in_ = len(self.feature_names_in_)
        self.best_estimator_ = load_model(result.destination)
        if summary["rows_dropped"]:
            warnings.warn(f"{summary['rows_dropped']} of {summary['rows_in']} rows have no "
                          "target and were left out", UserWarning, stacklevel=3)

    def _rows(self, X):
        return feature_frame(X, getattr(self, "feature_names_in_", None))

    def predict(self, X) -> np.ndarray:
        """Values (regression) or class labels of raw rows, as ``X`` was given to ``fit``."""
        predicted = self.best_estimator_.predict(self._rows(X))
        if self.classes_ is None:
            return predicted
        return np.asarray([self._labels.get(str(c), c) for c in predicted])

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of raw rows, columns in ``classes_`` order."""
        return self.best_estimator_.predict_proba(self._rows(X))

    def score(self, X, y) -> float:
        """``scorer_`` (the metric that picked the best configuration) on these rows."""
        from foldwise.components.core.metrics import score

        truth = np.asarray(y)
        if self.classes_ is None:
            values = self.predict(X)
            return float(score("regression", truth.astype("float64"), values, None)[
                self.scorer_])
        position = {str(c): i for i, c in enumerate(self.classes_)}
        unknown = sorted({str(v) for v in truth} - set(position))
        if unknown:
            raise FoldwiseError(f"y holds labels the model does not know: {unknown[:5]}")
        index = np.asarray([position[str(v)] for v in truth])
        return float(score("classification", index, self.predict_proba(X),
                           len(self.classes_))[self.scorer_])

    def compile(self, path: str | Path, **cluster) -> Path:
        """Compile the grid-search pipeline to YAML for Kubeflow Pipelines or Vertex AI.

        Args:
            path: The ``.yaml`` file to write.
            **cluster: Cluster options: ``image``, ``accelerator`` (``nvidia-l4:1``,
                ``tpu-v5e:4`` ...), ``tpu_topology``, ``platform`` (``kfp`` or ``vertex``),
                ``train_cpu``, ``train_memory``, ``step_cpu``, ``step_memory``.
        """
        from foldwise.pipelines.runs import compile_pipeline

        return compile_pipeline(self._pipeline, path, _cluster_values(cluster))

    def submit(self, *, data: str, target: str, output: str, cron: str | None = None,
               **service_and_cluster):
        """Start this search on a cluster (or schedule it with ``cron``).

        Args:
            data: ``gs://`` URI of the table the cluster reads.
            target: The column to predict.
            output: ``gs://`` prefix for the export.
            cron: ``SEC MIN HOUR DAY MONTH WEEKDAY`` to schedule recurring runs instead.
            **service_and_cluster: ``host`` (Kubeflow Pipelines) or ``vertex_project`` and
                ``vertex_region`` (Vertex AI); ``pipeline_root`` (``gs://``), ``namespace``,
                ``experiment``, ``service_account``, ``name``; and the cluster options of
                :meth:`compile`.

        Returns:
            The service's answer: ``kind``, ``id`` and ``url``.
        """
        from foldwise.components.core.grid import check_grid
        from foldwise.pipelines.runs import Search, submit

        service = {k: service_and_cluster.pop(k) for k in options.names(options.SERVICE)
                   if k in service_and_cluster}
        values = {**_option_values(self.get_params()), "target": target}
        search = Search.from_values(self._pipeline, data, values,
                                    grid=check_grid(self.param_grid, "param_grid",
                                                    self.model is not None),
                                    output=output)
        return submit(search, service, _cluster_values(service_and_cluster), cron=cron)


def _cluster_values(given: dict) -> dict:
    known = options.names(options.CLUSTER)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise FoldwiseError(f"unknown cluster option {unknown[0]!r} (known: {', '.join(known)})")
    return given


def cv_results_dict(table) -> dict:
    """``cv_results.csv`` as scikit-learn's ``cv_results_``: a dict of NumPy arrays.

    ``params`` becomes a list of dicts and list-valued ``param_<name>`` cells become lists, as
    scikit-learn holds them; everything else keeps the column's values and type.
    """
    result = {}
    for column in table.columns:
        values = table[column]
        if column == "params":
            result[column] = [json.loads(text) for text in values]
            continue
        if column.startswith("param_") and any(
                isinstance(v, str) and v.startswith(("[", "{")) for v in values):
            cells = np.empty(len(values), dtype=object)  # lists stay lists, one per cell
            cells[:] = [json.loads(v) if isinstance(v, str) and v.startswith(("[", "{"))
                        else v for v in values]
            result[column] = cells
            continue
        result[column] = values.to_numpy()
    return result


_SIGNATURE = _signature([inspect.Parameter("param_grid", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           default=None)])
GridSearchCV.__init__.__signature__ = _SIGNATURE
_PARAMETERS = [p for p in _SIGNATURE.parameters if p not in ("self", "param_grid")]
_DEFAULTS = {name: _SIGNATURE.parameters[name].default for name in _PARAMETERS}


class _CrossValidation(_PipelineEstimator):
    _pipeline = "cross-validation"


def cross_validate(X, y=None, **params) -> dict:
    """Cross-validate one Keras model configuration, like scikit-learn's ``cross_validate``.

    Args:
        X: DataFrame of raw columns, a 2-d array, or a table file's path / ``gs://`` URI.
        y: The targets, or the target column's name when ``X`` is a table file.
        **params: The keywords of :class:`GridSearchCV` (``cv``, ``scoring``,
            ``random_state``, ``output``, ``verbose`` and every data, fold and model option),
            the model options describing the one configuration.

    Returns:
        scikit-learn's keys: ``fit_time``, ``score_time`` and ``test_<metric>`` for every
        metric foldwise reports (arrays, one value per fold), as scikit-learn gives them for
        a list of metrics; its ``output`` and ``summary`` attributes say where the results
        and report were written.
    """
    import pandas as pd

    unknown = sorted(set(params) - set(_PARAMETERS))
    if unknown:
        raise TypeError(f"cross_validate got an unexpected keyword argument {unknown[0]!r}")
    full = {**_DEFAULTS, **params}
    runner = _CrossValidation()
    result = runner._run(runner._search(X, y, full, []), full["verbose"])
    summary = result.summary
    row = pd.read_csv(result.cv_results).set_index("config_id").loc[summary["best_config_id"]]
    folds = range(int(summary["folds"]))
    times = summary["best_split_times"]
    scores = {"fit_time": np.asarray(times["fit_time"], dtype=float),
              "score_time": np.asarray(times["score_time"], dtype=float)}
    for metric in summary["metrics"]:
        scores[f"test_{metric}"] = np.asarray([row[f"split{k}_test_{metric}"] for k in folds],
                                              dtype=float)
    return CrossValidateResult(scores, output=result.destination, summary=summary)


class CrossValidateResult(dict):
    """:func:`cross_validate`'s answer: scikit-learn's keys, plus where it was written.

    Attributes:
        output: The results folder or ``gs://`` prefix (``cv_results.csv``, ``report.html``
            ...).
        summary: The run's ``summary.json``.
    """

    def __init__(self, scores: dict, output: str, summary: dict) -> None:
        super().__init__(scores)
        self.output, self.summary = output, summary
