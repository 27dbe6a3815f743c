"""foldwise: leakage-free K-fold cross-validation and grid search of Keras models on tables.

The Python API reads like scikit-learn's::

    import foldwise
    search = foldwise.GridSearchCV(param_grid={"hidden_units": [[32], [64, 32]]}, cv=5)
    search.fit(X, y)
    search.best_params_, search.cv_results_, search.best_estimator_.predict(X_new)

Every run is a Kubeflow Pipelines (KFP v2) pipeline on the embedded engine (``kfp.local``);
the same pipelines compile for a cluster. The names below load on first use: a pipeline step
imports ``foldwise.components.core`` without paying for (or having) the authoring API.
"""

from pkgutil import extend_path

# foldwise.components and foldwise.pipelines live in their own source folders: let them be
# found beside this package wherever it is imported from.
__path__ = extend_path(__path__, __name__)

_API = {
    "GridSearchCV": "foldwise.pipelines.api",
    "RandomizedSearchCV": "foldwise.pipelines.api",
    "HalvingGridSearchCV": "foldwise.pipelines.api",
    "HalvingRandomSearchCV": "foldwise.pipelines.api",
    "BayesSearchCV": "foldwise.pipelines.api",
    "cross_validate": "foldwise.pipelines.api",
    "load_model": "foldwise.pipelines.models",
    "ServingModel": "foldwise.pipelines.models",
    "PipelineFailed": "foldwise.pipelines.engine",
    "FoldwiseError": "foldwise.components.core.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'foldwise' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
