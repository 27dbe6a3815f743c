"""foldwise from Python, in scikit-learn's words: searches ``*SearchCV`` and ``cross_validate``.

``GridSearchCV``, ``RandomizedSearchCV``, ``HalvingGridSearchCV`` and
``HalvingRandomSearchCV`` take scikit-learn's keywords for the search itself;
``BayesSearchCV`` scikit-optimize's.

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
from foldwise.pipelines import kinds

# Keywords every run takes besides the options of the table.
OUTPUT_HELP = "results folder or gs:// prefix (default: a new folder under ./foldwise-runs/)"
RUN_KEYWORDS = [opt for opt in options.group(options.DATA, options.FOLDS, options.BUILDER,
                                             options.MODEL) if opt.name != "target"]


def _keyword(name: str, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)


def _signature(first: list[inspect.Parameter], search: tuple[str, ...] = (),
               defaults: dict | None = None) -> inspect.Signature:
    """``(self, *first, *, <search options>, <every run option>, <engine keywords>)``.

    The engine keywords: ``output=None, verbose=True, runner="subprocess", image=None``.
    """
    return inspect.Signature([
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *first,
        *[_keyword(options.option(name).python_name,
                   {**_SEARCH_DEFAULTS, **(defaults or {})}.get(
                       name, options.option(name).default)) for name in search],
        *[_keyword(opt.python_name, opt.given_default) for opt in RUN_KEYWORDS],
        _keyword("output", None), _keyword("verbose", True), _keyword("runner", "subprocess"),
        _keyword("image", None)])


# scikit-learn's defaults where it spells them differently from the command line's.
_SEARCH_DEFAULTS = {"n_candidates": "exhaust", "max_resources": "auto", "factor": 3}


def _option_values(params: dict) -> dict:
    """Keyword values by option name (``cv`` → ``folds``, ``random_state`` → ``seed``).

    ``cv`` may also be one of scikit-learn's splitters (:func:`splitter_options`).
    """
    values = {opt.name: params[opt.python_name] for opt in RUN_KEYWORDS}
    return {**values, **splitter_options(values["folds"], values["group_column"])}


def splitter_options(cv, group_column: str | None = None) -> dict:
    """The fold options a scikit-learn splitter passed as ``cv`` stands for.

    A number of folds stands for itself. ``KFold`` and ``StratifiedKFold`` give their number
    of folds (foldwise shuffles and stratifies by the task either way), ``RepeatedKFold`` and
    ``RepeatedStratifiedKFold`` their folds and repeats, ``TimeSeriesSplit`` time-ordered
    folds in the rows' order (its ``gap`` and ``test_size``), ``GroupKFold`` and
    ``StratifiedGroupKFold`` their folds by ``group_column``; an integer ``random_state``
    becomes the seed.

    Raises:
        FoldwiseError: Another splitter, or one foldwise cannot run as it says.
    """
    import numbers

    from sklearn import model_selection as ms

    if cv is None or isinstance(cv, numbers.Integral):
        return {}
    seed = getattr(cv, "random_state", None)
    seeded = {"seed": int(seed)} if isinstance(seed, numbers.Integral) else {}
    if isinstance(cv, ms.TimeSeriesSplit):
        if cv.max_train_size is not None:
            raise FoldwiseError("cv=TimeSeriesSplit(max_train_size=...) is not available: "
                                "each time-ordered fold trains on every earlier row; leave "
                                "max_train_size out")
        return {"folds": int(cv.n_splits), "split": "time", "gap": int(cv.gap),
                "test_size": int(cv.test_size or 0)}
    if isinstance(cv, ms.RepeatedKFold | ms.RepeatedStratifiedKFold):
        return {"folds": int(cv.cvargs["n_splits"]), "repeats": int(cv.n_repeats), **seeded}
    if type(cv) in (ms.KFold, ms.StratifiedKFold):
        return {"folds": int(cv.n_splits), **seeded}
    if isinstance(cv, ms.GroupKFold | ms.StratifiedGroupKFold):
        if not group_column:
            raise FoldwiseError(f"cv={type(cv).__name__}(...) needs group_column=\"<column>\": "
                                "the column of X whose values keep rows together")
        return {"folds": int(cv.n_splits), **seeded}
    raise FoldwiseError(
        f"cv={type(cv).__name__}(...) is not a splitter foldwise runs: give a number of folds, "
        "KFold, StratifiedKFold, RepeatedKFold, RepeatedStratifiedKFold, TimeSeriesSplit or "
        "GroupKFold (with group_column=...)")


def target_column(y) -> np.ndarray:
    """``y`` as one column of targets.

    A column vector (``(n, 1)``) is that column. A one-hot ``y`` (``(n, k)`` of 0 and 1, one 1
    per row, as Keras' ``to_categorical`` makes) is each row's class: its column's name for a
    DataFrame, else its position ``0 .. k-1``, as scikeras takes it.

    Raises:
        FoldwiseError: Anything else two-dimensional, multi-label rows (several 1s) named.
    """
    import pandas as pd

    values = np.asarray(y)
    if values.ndim == 2 and values.shape[1] == 1:
        return values[:, 0]
    if values.ndim == 2 and values.shape[1] > 1:
        indicator = np.isin(values, (0, 1)).all() if values.dtype != object else False
        if not indicator:
            raise FoldwiseError(f"y must be one column of targets (or one-hot rows of 0 and "
                                f"1), got shape {values.shape}")
        ones = values.sum(axis=1)
        if (ones != 1).any():
            row = int(np.flatnonzero(ones != 1)[0])
            kind = ("several classes (multi-label targets, which foldwise does not fit: one "
                    "class per row)" if ones[row] > 1 else "no class")
            raise FoldwiseError(f"y is one-hot but row {row} has {int(ones[row])} ones, "
                                f"{kind}: give each row exactly one class")
        labels = (np.asarray([str(c) for c in y.columns]) if isinstance(y, pd.DataFrame)
                  else np.arange(values.shape[1]))
        return labels[values.argmax(axis=1)]
    if values.ndim != 1:
        raise FoldwiseError(f"y must be one column of targets, got shape {values.shape}")
    return values


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
    values = target_column(y)
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

    def _search(self, X, y, params: dict, grid: list, space: list = ()):
        """The :class:`runs.Search` for ``fit(X, y)``."""
        from foldwise.pipelines.runs import Search

        values = {**_option_values(params), **_search_values(params, self._pipeline)}
        if isinstance(X, (str, Path)):
            if not isinstance(y, str):
                raise FoldwiseError("with X a table file (path or gs:// URI), y is the target "
                                    "column's name")
            values["target"], self._labels = y, {}
            return Search.from_values(self._pipeline, str(X), values, grid=grid,
                                      distributions=list(space), output=params["output"],
                                      runner=params["runner"], image=params["image"])
        table, values["target"] = table_from_xy(X, y)
        # class labels as y gave them (the steps read them back as text or numbers)
        self._labels = {str(v): v for v in table[values["target"]].dropna().unique()}
        search = Search.from_values(self._pipeline, "", values, grid=grid,
                                    distributions=list(space), output=params["output"],
                                    runner=params["runner"], image=params["image"])
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
            result = run_local(search, on_event, on_plan)
            bar.total = bar.n  # the plan counts the most tasks a staged run can have
            bar.refresh()
            return result
        finally:
            bar.close()


def _search_values(params: dict, pipeline: str) -> dict:
    """The search keywords as the option table takes them (scikit-learn's words undone)."""
    values = {name: params[options.option(name).python_name]
              for name in kinds.get(pipeline).options
              if options.option(name).python_name in params}
    if values.get("n_candidates") == "exhaust":
        values["n_candidates"] = 0
    if values.get("max_resources") == "auto":
        values["max_resources"] = 0
    if isinstance(values.get("factor"), int) and not isinstance(values["factor"], bool):
        values["factor"] = float(values["factor"])
    return values


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
            ``group_column``), or one of scikit-learn's splitters: ``KFold``,
            ``StratifiedKFold``, ``RepeatedKFold``, ``RepeatedStratifiedKFold``,
            ``TimeSeriesSplit``, ``GroupKFold`` (:func:`splitter_options`).
        scoring: Metric that picks the best configuration (default ``r2`` / ``accuracy``).
        random_state: Seed of folds, weights and shuffling.
        output: Results folder or ``gs://`` prefix (default: a new folder under
            ``./foldwise-runs/``).
        verbose: Show a progress bar (terminal or notebook).
        runner: ``"subprocess"`` (each step a process of this Python) or ``"container"``
            (each step in a container of foldwise's image, as a cluster runs it, through a
            Docker-API engine that ``DOCKER_HOST`` names).
        image: The container runner's image (default ``foldwise:<version>-cpu``, what
            ``make image`` builds).
        **model_and_data_options: Every other option of the command line, by its name with
            underscores: ``task``, ``categorical``, ``numeric``, ``drop``, ``group_column``,
            ``scaler``, ``baseline``, ``packing``, ``objectives`` (``"r2,latency"``: the score
            against what the model costs to serve; ``cv_results_`` then holds each
            configuration's ``latency_ms``, ``model_bytes`` and ``pareto_front``, and
            ``refit="pareto:latency"`` refits the fastest within one standard error of the
            best) and the model options (``hidden_units``,
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
    _first = "param_grid"

    def __init__(self, param_grid=None, **params) -> None:
        self._set(param_grid, params)

    def _set(self, first, params: dict) -> None:
        parameters = [p for p in inspect.signature(type(self).__init__).parameters
                      if p not in ("self", self._first)]
        unknown = sorted(set(params) - set(parameters))
        if unknown:
            raise TypeError(f"{type(self).__name__} got an unexpected keyword argument "
                            f"{unknown[0]!r}")
        setattr(self, self._first, first)
        defaults = inspect.signature(type(self).__init__).parameters
        for name in parameters:
            setattr(self, name, params.get(name, defaults[name].default))

    def _candidates(self) -> tuple[list, list]:
        """``(grid, space)``: the search's candidates, checked."""
        from foldwise.components.core.search.grid import check_grid

        grid = (check_grid(self.param_grid, "param_grid", self.model is not None)
                if self.param_grid else [])
        if not grid:
            raise FoldwiseError("param_grid is empty: give a mapping of parameter → list of "
                                "values, e.g. {'learning_rate': [0.001, 0.01]}")
        return grid, []

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
        params = self.get_params()
        grid, space = self._candidates()
        result = self._run(self._search(X, y, params, grid, space), self.verbose)
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
        # its last row: a halving search has one per rung, the last rung's is the one chosen
        self.best_index_ = len(ids) - 1 - ids[::-1].index(summary["best_config_id"])
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
        self._load_search(result)
        if summary["rows_dropped"]:
            warnings.warn(f"{summary['rows_dropped']} of {summary['rows_in']} rows have no "
                          "target and were left out", UserWarning, stacklevel=3)

    def _load_search(self, result) -> None:
        """Attributes of this kind of search (none for a grid)."""

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
        from foldwise.components.core.scoring.metrics import score

        truth = target_column(y)
        if self.classes_ is None:
            values = self.predict(X)
            return float(score("regression", truth.astype("float64"), values, None)[
                self.scorer_])
        position = {str(c): i for i, c in enumerate(self.classes_)}
        unknown = sorted({str(v) for v in truth} - set(position))
        if unknown:
            raise FoldwiseError(f"y holds labels the model does not know: {unknown[:5]}")
        index = np.asarray([position[str(v)] for v in truth])
        proba = np.asarray(self.predict_proba(X), dtype="float64")
        proba = proba / proba.sum(axis=1, keepdims=True)  # float32 sums: exactly 1 again
        return float(score("classification", index, proba, len(self.classes_))[self.scorer_])

    def plan(self, X, y=None, *, nodes: int = 1, accelerator: str = "cpu",
             node_speedup: float | None = None, pod_start: float | None = None):
        """What ``fit(X, y)`` would run under each packing, and how long it would take.

        Nothing is trained: the data, grid and options are checked as ``fit`` checks them,
        then the train tasks of every packing are laid out and timed from the per-step
        costs measured with the benchmarks (``foldwise plan`` prints the same).

        Args:
            X: As for :meth:`fit`.
            y: As for :meth:`fit`.
            nodes: Cluster nodes, each running one train pod at a time.
            accelerator: The nodes' accelerator, for its measured training speed.
            node_speedup: How many times faster a node trains than the reference machine
                (instead of ``accelerator``'s measurement).
            pod_start: Seconds a pod takes to start on the cluster (default 30).

        Returns:
            A DataFrame, one row per packing: ``packing``, ``tasks``, ``models_per_task``
            (list), ``local_seconds`` (kfp.local on the reference machine),
            ``cluster_seconds`` and ``node_hours``.
        """
        import pandas as pd

        from foldwise.pipelines.runs import estimates

        params = self.get_params()
        grid, space = self._candidates()
        found = estimates(self._search(X, y, params, grid, space), nodes, accelerator,
                          pod_start, node_speedup)
        return pd.DataFrame([{"packing": e.packing, "tasks": e.tasks,
                              "models_per_task": e.models, "local_seconds": e.local_seconds,
                              "cluster_seconds": e.cluster_seconds,
                              "node_hours": e.node_hours} for e in found])

    def compile(self, path: str | Path, **cluster) -> Path:
        """Compile this search's pipeline to YAML for Kubeflow Pipelines or Vertex AI.

        Args:
            path: The ``.yaml`` file to write.
            rungs: (Halving searches) the rungs of the DAG; a run says how many its search
                needs.
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
        from foldwise.pipelines.runs import Search, submit

        service = {k: service_and_cluster.pop(k) for k in options.names(options.SERVICE)
                   if k in service_and_cluster}
        params = self.get_params()
        values = {**_option_values(params), **_search_values(params, self._pipeline),
                  "target": target}
        grid, space = self._candidates()
        search = Search.from_values(self._pipeline, data, values, grid=grid,
                                    distributions=space, output=output)
        return submit(search, service, _cluster_values(service_and_cluster), cron=cron)


def _cluster_values(given: dict) -> dict:
    known = [*options.names(options.CLUSTER), "rungs"]
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


class RandomizedSearchCV(GridSearchCV):
    """Random search of Keras models with leakage-free K-fold cross-validation.

    Like scikit-learn's ``RandomizedSearchCV``: ``n_iter`` configurations are sampled from
    ``param_distributions`` by ``ParameterSampler`` with ``random_state`` (the same
    configurations scikit-learn samples; without replacement when every value is a list),
    in the pipeline's plan step, so a compiled pipeline samples where it runs. Every other
    keyword, attribute and method is :class:`GridSearchCV`'s.

    Args:
        param_distributions: Mapping of parameter → list of values or scipy.stats
            distribution (``loguniform(a, b)``, ``uniform(loc, scale)``,
            ``randint(low, high)``), or a list of such mappings.
        n_iter: How many configurations to sample.
        refit: ``best``, ``one_standard_error`` or ``pareto:<cost>`` (see :class:`GridSearchCV`).
    """

    _pipeline = "random-search"
    _first = "param_distributions"

    def __init__(self, param_distributions=None, **params) -> None:
        self._set(param_distributions, params)

    def _candidates(self) -> tuple[list, list]:
        from foldwise.components.core.search.sampling import check_space, from_python

        if not self.param_distributions:
            raise FoldwiseError("param_distributions is empty: give a mapping of parameter → "
                                "list of values or distribution, e.g. {'learning_rate': "
                                "loguniform(1e-4, 1e-1)}")
        space = check_space(from_python(self.param_distributions), "param_distributions")
        return [], space


class HalvingGridSearchCV(GridSearchCV):
    """Successive halving (or racing) of a grid's configurations, with folds as the resource.

    Like scikit-learn's ``HalvingGridSearchCV`` with ``resource`` the folds: the first rung
    scores every candidate on ``min_resources`` folds, each next rung keeps the best
    ``ceil(n / factor)`` and scores them on ``factor`` times as many folds, keeping the
    folds already scored. ``elimination="racing"`` instead drops a candidate only when the
    corrected paired t-test over the folds scored so far finds it worse than the leader at
    ``confidence``, and ends with every fold. ``cv_results_`` has a row per (candidate,
    rung) with ``iter`` and ``n_resources``, as scikit-learn's.

    Args:
        param_grid: As :class:`GridSearchCV`'s.
        factor: Elimination and growth factor.
        resource: ``folds`` (``epochs`` is not available yet).
        min_resources: Folds of the first rung, ``"exhaust"`` (default) or ``"smallest"``
            (racing: 2).
        max_resources: The most folds a candidate gets (``"auto"``: every fold).
        aggressive_elimination: Repeat the first rung's folds until few enough candidates
            are left to end with one.
        elimination: ``halving`` or ``racing``.
        confidence: Racing's confidence that a dropped candidate is worse.
        refit: ``best``, ``one_standard_error`` or ``pareto:<cost>``.

    Attributes:
        n_resources_, n_candidates_, n_iterations_, n_possible_iterations_,
        n_required_iterations_, min_resources_, max_resources_, n_remaining_candidates_:
            As scikit-learn's (resources are folds).
    """

    _pipeline = "halving-search"
    _first = "param_grid"

    def __init__(self, param_grid=None, **params) -> None:
        self._set(param_grid, params)

    def _load_search(self, result) -> None:
        import math

        from foldwise.components.core.search.rungs import plan_schedule

        settings, planned = plan_schedule(result.plan.arguments["halving"],
                                          self.summary_["folds"], result.plan.configs)
        done = self.summary_["halving"]
        self.n_resources_, self.n_candidates_ = done["n_resources"], done["n_candidates"]
        self.n_iterations_ = done["n_iterations"]
        self.n_possible_iterations_ = planned.n_possible_iterations
        self.n_required_iterations_ = planned.n_required_iterations
        self.min_resources_, self.max_resources_ = planned.min_resources, planned.max_resources
        self.n_remaining_candidates_ = (
            self.n_candidates_[-1] if settings["elimination"] == "racing"
            else math.ceil(self.n_candidates_[-1] / settings["factor"]))


class HalvingRandomSearchCV(HalvingGridSearchCV):
    """Successive halving (or racing) of sampled configurations, folds as the resource.

    :class:`HalvingGridSearchCV` over ``n_candidates`` configurations sampled from
    ``param_distributions`` as :class:`RandomizedSearchCV` samples them
    (``"exhaust"``: ``max_resources // min_resources``, scikit-learn's rule).
    """

    _pipeline = "halving-search"
    _first = "param_distributions"

    def __init__(self, param_distributions=None, **params) -> None:
        self._set(param_distributions, params)

    _candidates = RandomizedSearchCV._candidates


class BayesSearchCV(GridSearchCV):
    """Bayesian search of Keras models in rounds, racing inside each round, as a KFP pipeline.

    Like scikit-optimize's ``BayesSearchCV``: ``n_iter`` configurations of ``search_spaces``,
    asked ``n_points`` at a time of a model-based optimizer (Optuna's TPE) that learns from
    every round before. Inside each round, a configuration that the corrected paired t-test
    over the folds scored so far finds worse than the incumbent at ``confidence`` takes no
    more folds (``racing="off"``: every fold); the optimizer is told it was pruned, never a
    score it did not earn. ``cv_results_`` has a row per configuration with the ``round``
    that asked it and ``n_resources``, the folds it was scored on. Every other keyword,
    attribute and method is :class:`GridSearchCV`'s.

    Args:
        search_spaces: Mapping of parameter → scikit-optimize's ``Real``/``Integer``/
            ``Categorical`` or tuple ``(low, high[, "log-uniform"])``, a list of values, a
            scipy.stats distribution as :class:`RandomizedSearchCV` takes it, or the data
            form, which may make a parameter conditional: ``{"uniform": [0.0, 0.5],
            "when": {"hidden_units": [[64, 32]]}}``.
        n_iter: How many configurations in all.
        n_points: How many configurations each round asks (``0``: a fifth of ``n_iter``,
            at least 4).
        racing: ``"on"`` or ``"off"``.
        confidence: Racing's confidence that a dropped configuration is worse.
        refit: ``best``, ``one_standard_error`` or ``pareto:<cost>`` (see :class:`GridSearchCV`).

    Attributes:
        n_rounds_: How many rounds ran.
        n_pruned_: How many configurations were raced out before their last folds.
    """

    _pipeline = "bayes-search"
    _first = "search_spaces"
    _defaults = {"n_iter": 50}

    def __init__(self, search_spaces=None, **params) -> None:
        self._set(search_spaces, params)

    def _candidates(self) -> tuple[list, list]:
        from foldwise.components.core.search.bayes import checked_space, from_python

        if not self.search_spaces:
            raise FoldwiseError("search_spaces is empty: give a mapping of parameter → values "
                                "or range, e.g. {'learning_rate': (1e-4, 1e-1, 'log-uniform')}")
        return [], checked_space(from_python(self.search_spaces), "search_spaces")

    def _load_search(self, result) -> None:
        rounds = self.cv_results_["round"]
        self.n_rounds_ = int(max(rounds)) + 1 if len(rounds) else 0
        self.n_pruned_ = int(np.sum(self.cv_results_["n_resources"] < self.n_splits_))


def _init_signature(cls) -> inspect.Signature:
    taken = kinds.get(cls._pipeline).options
    if cls._first == "param_grid":  # a grid's candidates are all of it
        taken = tuple(name for name in taken if name != "n_candidates")
    return _signature([inspect.Parameter(cls._first, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                         default=None)], taken, getattr(cls, "_defaults", {}))


for _class in (GridSearchCV, RandomizedSearchCV, HalvingGridSearchCV, HalvingRandomSearchCV,
               BayesSearchCV):
    _class.__init__.__signature__ = _init_signature(_class)
_SIGNATURE = _signature([])
_PARAMETERS = [p for p in _SIGNATURE.parameters if p != "self"]
_DEFAULTS = {name: _SIGNATURE.parameters[name].default for name in _PARAMETERS}


class _CrossValidation(_PipelineEstimator):
    _pipeline = "cross-validation"


class _NestedCV(_PipelineEstimator):
    _pipeline = "nested-cv"


def cross_validate(X, y=None, *rest, **params) -> dict:
    """Cross-validate one Keras model configuration, like scikit-learn's ``cross_validate``.

    ``cross_validate(GridSearchCV(...), X, y, cv=5)`` cross-validates the search itself
    (nested cross-validation, :func:`nested_cross_validate`).

    Args:
        X: DataFrame of raw columns, a 2-d array, or a table file's path / ``gs://`` URI.
        y: The targets, or the target column's name when ``X`` is a table file.
        *rest: With a search first: ``y`` (the search, ``X`` and ``y``).
        **params: The keywords of :class:`GridSearchCV` (``cv``, ``scoring``,
            ``random_state``, ``output``, ``verbose``, ``runner``, ``image`` and every data,
            fold and model option),
            the model options describing the one configuration.

    Returns:
        scikit-learn's keys: ``fit_time``, ``score_time`` and ``test_<metric>`` for every
        metric foldwise reports (arrays, one value per fold), as scikit-learn gives them for
        a list of metrics; its ``output`` and ``summary`` attributes say where the results
        and report were written.
    """
    import pandas as pd

    if isinstance(X, _PipelineEstimator):
        return nested_cross_validate(X, y, *rest, **params)
    if rest:
        raise TypeError(f"cross_validate takes X and y, got {2 + len(rest)} positional "
                        "arguments")
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


def nested_cross_validate(search, X, y=None, *, cv=5, output=None, verbose=True,
                          runner="subprocess", image=None) -> dict:
    """Nested cross-validation of a search, as scikit-learn's ``cross_validate(search, X, y)``.

    Each of ``cv`` outer folds runs ``search`` (its grid or sampled points, its ``cv`` inner
    folds, its options) on its own training rows, every transform fitted on those rows only;
    the configuration it chooses is trained on them and scored on the outer fold. One KFP
    run: the inner searches' trials in one loop, the outer folds' in a second.

    Args:
        search: A :class:`GridSearchCV`, :class:`RandomizedSearchCV`,
            :class:`HalvingGridSearchCV`, :class:`HalvingRandomSearchCV` or
            :class:`BayesSearchCV` (not fitted): what each outer fold runs.
        X: DataFrame of raw columns, a 2-d array, or a table file's path / ``gs://`` URI.
        y: The targets, or the target column's name when ``X`` is a table file.
        cv: Outer folds: a number, or scikit-learn's ``KFold`` / ``StratifiedKFold`` (the
            outer and inner folds share the search's ``random_state``).
        output: Results folder or ``gs://`` prefix (default: a new folder under
            ``./foldwise-runs/``).
        verbose: Show a progress bar.
        runner: ``"subprocess"`` or ``"container"``, as for :class:`GridSearchCV`.
        image: The container runner's image.

    Returns:
        scikit-learn's keys over the outer folds: ``fit_time``, ``score_time`` and
        ``test_<metric>`` for every metric; ``summary["nested"]`` holds each outer fold's
        choice and inner best score, how often each configuration won and the optimism.

    Raises:
        FoldwiseError: Another kind of search, or an outer ``cv`` it cannot run.
    """
    inner = {GridSearchCV: "grid", RandomizedSearchCV: "grid", HalvingGridSearchCV: "halving",
             HalvingRandomSearchCV: "halving", BayesSearchCV: "bayes"}.get(type(search))
    if inner is None:
        raise FoldwiseError(
            f"nested cross-validation runs one of foldwise's searches inside (GridSearchCV, "
            f"RandomizedSearchCV, HalvingGridSearchCV, HalvingRandomSearchCV, BayesSearchCV), "
            f"not {type(search).__name__}")
    params = {**search.get_params(), "inner_search": inner}
    outer = splitter_options(cv, params.get("group_column"))
    if set(outer) - {"folds", "seed"}:
        raise FoldwiseError("nested cross-validation takes shuffled K-fold outer folds: give "
                            "cv as a number, KFold or StratifiedKFold")
    if "seed" in outer and outer["seed"] != params["random_state"]:
        raise FoldwiseError(f"the outer cv's random_state ({outer['seed']}) differs from the "
                            f"search's ({params['random_state']}): foldwise splits outer and "
                            "inner folds with one seed; set random_state on the search")
    params.update(outer_folds=outer.get("folds", cv), output=output, verbose=verbose,
                  runner=runner, image=image)
    grid, space = search._candidates()
    runner_ = _NestedCV()
    result = runner_._run(runner_._search(X, y, params, grid, space), verbose)
    summary = result.summary
    rows = summary["nested"]["folds"]
    scores = {"fit_time": np.asarray([_number(r["fit_time"]) for r in rows]),
              "score_time": np.asarray([_number(r.get("score_time")) for r in rows])}
    for metric in summary["metrics"]:
        scores[f"test_{metric}"] = np.asarray([_number(r["test"][metric]) for r in rows])
    return CrossValidateResult(scores, output=result.destination, summary=summary)


def _number(value) -> float:
    return float("nan") if value is None else float(value)


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
