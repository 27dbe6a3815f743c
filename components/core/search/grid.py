"""Hyperparameter grids written like scikit-learn's ``param_grid``, validated before any run.

A grid is a mapping of parameter → list of values, or a list of such mappings; it expands like
``sklearn.model_selection.ParameterGrid``. Every parameter of :mod:`core.models.spec` may appear.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foldwise.components.core import options
from foldwise.components.core.data.table import suggest
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.models.builder_code import lean
from foldwise.components.core.models.estimators import keras_names, named, role_of
from foldwise.components.core.models.spec import SPEC_KEYS, baseline_for, config_id, normalize_spec
from foldwise.components.core.search.sampling import check_space, mappings, points_as_grid, sample


def parameter_grid(part: dict) -> list[dict]:
    """``sklearn.model_selection.ParameterGrid(part)`` in its order (sorted keys, product).

    Written out so that planning a run does not import scikit-learn (a second per process).
    """
    from itertools import product

    keys = sorted(part)
    return [dict(zip(keys, values, strict=True)) for values in product(*(part[k] for k in keys))]


def load_grid(path: str | Path, builder: bool = False) -> list[dict]:
    """Read a grid from a YAML or JSON file (JSON is YAML too) and check its shape.

    ``builder``: the grid is for a model of the user's own (any key may appear).
    """
    return check_grid(read_yaml(path), str(path), builder)


def load_space(path: str | Path) -> list[dict]:
    """Read a random search's space (lists and distributions: ``search.sampling``) from YAML."""
    return check_space(read_yaml(path), f"grid file {path}")


def read_yaml(path: str | Path):
    """A grid file's content.

    Raises:
        FoldwiseError: Missing, not UTF-8, or not YAML (the message says where).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FoldwiseError(f"grid file {path} does not exist: check the path given to --grid")
    try:
        grid = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader())  # noqa: S506
    except UnicodeDecodeError as err:
        raise FoldwiseError(f"grid file {path} is not UTF-8 text (byte {err.start}): give a "
                            "YAML or JSON file") from err
    except yaml.YAMLError as err:
        raise FoldwiseError(f"grid file {path} is not valid YAML ({_yaml_problem(err)})") from err
    return grid


def _loader():
    """PyYAML's safe loader, reading numbers as YAML 1.2 (and JSON) do.

    YAML 1.1, which PyYAML follows, reads ``1e-05`` and ``1e3`` (no dot) as text; JSON and
    YAML 1.2 read them as numbers, and so does a grid file here (Python's ``json.dumps``
    writes ``1e-05``).
    """
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def _yaml_problem(err) -> str:
    """A YAML error in one line: where (line, column) and what."""
    mark = getattr(err, "problem_mark", None)
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def check_grid(grid: Any, where: str = "the grid", builder: bool = False) -> list[dict]:
    """Return the grid as a list of mappings of parameter → non-empty list of values.

    With ``builder`` (a model of the user's own) any key may appear: the builder's arguments
    are checked against its signature when the configurations are normalized.
    """
    grid = mappings(grid, where, "list of values (or a list of such mappings)",
                    "{learning_rate: [0.001, 0.01]}")
    for part in grid:
        open_keys = builder or any(name in named("user")
                                   for name in part.get("estimator") or [])
        for key, values in part.items():
            if key not in SPEC_KEYS and not open_keys:
                raise FoldwiseError(
                    f"{where}: unknown grid parameter {key!r}{suggest(str(key), SPEC_KEYS)} "
                    f"(known: {', '.join(SPEC_KEYS)})")
            if not isinstance(values, list):
                example = "[[64], [128, 64]]" if key == "hidden_units" else f"[{values!r}]"
                raise FoldwiseError(
                    f"{where}: {key} must be a list of values to try, e.g. {key}: {example}")
            if not values:
                raise FoldwiseError(f"{where}: {key} has an empty list: give at least one value")
            if key == "hidden_units" and not open_keys and not all(
                    isinstance(v, list) for v in values):
                raise FoldwiseError(
                    f"{where}: hidden_units values are lists of layer sizes, e.g. "
                    f"hidden_units: [[64], [128, 64]]; got {values!r}")
    return grid


def expand_grid(grid: list[dict], task: str, n_classes: int | None) -> list[dict]:
    """Every configuration of the grid, validated and completed with defaults.

    Returns:
        Distinct configurations in ``ParameterGrid`` order, each ``{"config_id", "params"}``.

    Raises:
        FoldwiseError: A configuration is invalid (the message names it).
    """
    configs, seen = [], set()
    for _, config in _configurations(check_grid(grid), task, n_classes):
        if config["config_id"] not in seen:
            seen.add(config["config_id"])
            configs.append(config)
    _check_keras(configs)
    return configs


def _check_keras(configs: list[dict]) -> None:
    if not any(c["params"]["estimator"] in keras_names() for c in configs):
        raise FoldwiseError("the grid needs at least one Keras configuration (estimator: keras):"
                            " the best Keras configuration is the one refitted and exported")


def _configurations(grid: list[dict], task: str, n_classes: int | None):
    """``(values as written, {"config_id", "params"})`` for each point of the grid."""
    for part in grid:
        for values in parameter_grid(part) if part else [{}]:
            try:
                params = normalize_spec(values, task, n_classes)
            except FoldwiseError as err:
                shown = {k: v for k, v in values.items()  # a builder is named by the error
                         if k != "builder" and not (k == "estimator" and v in named("user"))}
                raise FoldwiseError(f"grid configuration {json.dumps(shown, sort_keys=True)}: "
                                    f"{err}" if shown else str(err)) from None
            yield values, {"config_id": config_id(params), "params": params}


BASELINES = options.choices("baseline")


def with_baseline(configs: list[dict], baseline: str, task: str,
                  n_classes: int | None) -> list[dict]:
    """The configurations, plus (``baseline="mlp"``) each Keras one's scikit-learn MLP twin.

    Raises:
        FoldwiseError: An unknown baseline, or a configuration without a scikit-learn twin.
    """
    if baseline not in BASELINES:
        raise FoldwiseError(f"--baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    if baseline == "none":
        return configs
    if not any(role_of(c["params"]) == "mlp" for c in configs):
        raise FoldwiseError("--baseline mlp twins foldwise's own MLP; a model of your own has "
                            "no scikit-learn twin: leave --baseline out")
    twins, seen = [], {c["config_id"] for c in configs}
    for config in configs:
        if role_of(config["params"]) != "mlp":
            continue
        try:
            params = normalize_spec(baseline_for(config["params"]), task, n_classes)
        except FoldwiseError as err:
            raise FoldwiseError(f"--baseline mlp for {config['config_id']}: {err}") from None
        cid = config_id(params)
        if cid not in seen:
            seen.add(cid)
            twins.append({"config_id": cid, "params": params,
                          "searched": config.get("searched", {})})
    return configs + twins


def single_config_grid(model_spec: dict) -> list[dict]:
    """The grid holding exactly one configuration: ``model_spec``."""
    return [{key: [value] for key, value in model_spec.items()}]


def candidates(grid: list[dict], model_spec: dict, task: str, n_classes: int | None, *,
               champion: list[dict] = (), baseline: str = "none",
               distributions: list[dict] = (), n_iter: int = 10, seed: int = 0,
               ) -> list[dict]:
    """Every configuration a run cross-validates, in the order that breaks ties.

    The one function that turns a search into configurations, for the command line, the
    Python API and the plan step alike. Ties go to the configuration listed first
    (:func:`~foldwise.components.core.results.aggregate.best_config_id`): the promoted champion
    (retrain), then the grid's in ``ParameterGrid`` order, then the baseline twins.

    Args:
        grid: The user's ``param_grid`` (mappings of parameter → list of values), or ``[]``
            for the one configuration ``model_spec`` describes.
        model_spec: Model options set for every configuration that the grid does not vary.
        task: ``classification`` or ``regression``.
        n_classes: Number of classes (classification).
        champion: ``[{"config_id", "params", ...}]`` of the promoted model, or ``[]``.
        baseline: ``mlp`` to add each Keras configuration's scikit-learn MLP twin.
        distributions: A random search's space (``core.search.sampling``): ``n_iter`` points of
            it, sampled with ``seed`` as scikit-learn's ``ParameterSampler`` does, take the
            grid's place.
        n_iter: How many points a random search samples.
        seed: The sampler's seed.

    Returns:
        ``{"config_id", "params", "searched"}`` each: ``params`` the complete normalized
        spec, ``searched`` the grid's own parameters with the values the grid gave them
        (what scikit-learn's ``best_params_`` holds; ``{}`` without a grid).

    Raises:
        FoldwiseError: A bad grid, configuration, champion or baseline (the message names it).
    """
    if distributions:
        grid = points_as_grid(sample(list(distributions), n_iter, seed))
    grid = check_grid(grid, builder=role_of(model_spec) == "user") if grid else []
    searched = sorted({key for part in grid for key in part})
    fixed_grid = [{key: [value] for key, value in model_spec.items()}]
    configs = [{**config, "searched": {k: entry["params"][k] for k in searched
                                       if k in entry["params"]}}
               for entry in champion
               for config in expand_grid(single_config_grid(entry["params"]), task, n_classes)]
    for part in grid or [{}]:
        merged = [{**fixed_grid[0], **part}]
        for values, config in _configurations(merged, task, n_classes):
            configs.append({**config, "searched": {k: values[k] for k in part}})
    unique, seen = [], set()
    for config in configs:
        if config["config_id"] not in seen:
            seen.add(config["config_id"])
            unique.append(config)
    _check_keras(unique)

    return [{**c, "params": lean(c["params"])}
            for c in with_baseline(unique, baseline, task, n_classes)]

