"""The option table is the one place an option is declared: everything else agrees with it."""

import inspect
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import docstring_parser
import pytest

from foldwise.components.core import options
from foldwise.components.core.data.preprocess import PreprocessOptions, preprocess_options
from foldwise.components.core.models.keras_model import OPTIMIZER_PARAMS
from foldwise.components.core.models.spec import MODEL_DEFAULTS, SPEC_KEYS
from foldwise.pipelines import kinds
from foldwise.pipelines.dags.cross_validation import cross_validation
from foldwise.pipelines.dags.grid_search import grid_search
from foldwise.pipelines.dags.halving_search import halving_search
from foldwise.pipelines.dags.random_search import random_search
from foldwise.pipelines.dags.retrain import retrain

BIN = Path(sys.executable).parent
PIPELINES = {"cross_validation": cross_validation, "grid_search": grid_search,
             "random_search": random_search, "halving_search": halving_search,
             "retrain": retrain}


def described_args(func) -> dict:
    return {p.arg_name: p.description for p in docstring_parser.parse(func.__doc__).params}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipeline_signatures_hold_the_run_options_with_the_tables_defaults(name):
    func = PIPELINES[name].pipeline_func
    signature = inspect.signature(func).parameters
    documented = described_args(func)
    for option_name in ("data", *options.RUN, "model_spec"):
        assert option_name in signature, (name, option_name)
        assert documented.get(option_name), f"{name}: no docstring Args for {option_name}"
    for option_name in options.RUN:
        parameter, opt = signature[option_name], options.option(option_name)
        if opt.default is None:
            assert parameter.default is inspect.Parameter.empty, (name, option_name)
        else:
            assert parameter.default == opt.default, (name, option_name)
    assert set(signature) - {"data", *options.RUN} <= {
        "model_spec", "param_grid", "destination", "promote_to", "refit", "refit_epochs",
        "param_distributions", "n_iter", "n_candidates", "halving", "serving_image",
        "outer_folds", "bayes"}
    taken = kinds.get(name.replace("_", "-")).options
    for option_name in set(taken) & set(signature):  # halving's travel as one dict
        assert signature[option_name].default == options.option(option_name).default
        assert documented.get(option_name), (name, option_name)
    assert ("halving" in signature) == (name in ("halving_search", "nested_cv"))


def test_the_refit_steps_serving_image_default_is_the_tables():
    from foldwise.components import refit

    default = inspect.signature(refit.python_func).parameters["serving_image"].default
    assert default == options.option("serving_image").default == options.SERVING_IMAGE
    assert described_args(refit.python_func).get("serving_image")


def test_the_preprocess_component_and_options_take_exactly_the_preprocess_options():
    from foldwise.components import preprocess

    signature = inspect.signature(preprocess.python_func).parameters
    taken = [n for n in signature if n not in ("data", "prepared", "schema", "fold_assignment")]
    assert taken == [*options.PREPROCESS, "outer_folds"]  # nested-cv's, 0 for the others
    documented = described_args(preprocess.python_func)
    for name in options.PREPROCESS:
        opt = options.option(name)
        if opt.default is not None:
            assert signature[name].default == opt.default, name
        assert documented.get(name), name
    assert [f.name for f in fields(PreprocessOptions)] == [*options.PREPROCESS, "outer_folds"]
    built = preprocess_options({"target": "y"})
    assert built == PreprocessOptions(target="y")  # the dataclass' defaults are the table's
    assert preprocess_options({"target": "y", "task": "", "group_column": "", "drop": ["a"],
                               "folds": 3.0}) == PreprocessOptions(target="y", drop=("a",),
                                                                    folds=3)


def test_model_spec_keys_and_defaults_come_from_the_table():
    model = options.group(options.MODEL)
    assert sorted(o.name for o in model) == SPEC_KEYS
    assert sorted(o.name for o in model if o.default is None and o.name != "loss") == \
        OPTIMIZER_PARAMS
    assert MODEL_DEFAULTS == {o.name: o.default for o in model if o.name not in OPTIMIZER_PARAMS}


def test_choices_live_in_the_table_only():
    from foldwise.components.core.data import preprocess, scaling
    from foldwise.components.core.models import spec
    from foldwise.components.core.search import grid, packing
    from foldwise.pipelines.dags import cluster

    assert scaling.SCALERS is options.option("scaler").choices
    assert grid.BASELINES is options.option("baseline").choices
    assert packing.PACKINGS is options.option("packing").choices
    assert preprocess.TASKS is options.option("task").choices
    assert spec.TARGET_SCALINGS is options.option("target_scaling").choices
    assert spec.ESTIMATORS is options.option("estimator").choices
    assert cluster.PLATFORMS is options.option("platform").choices


@pytest.mark.parametrize("command, groups", [
    (["run", "grid-search"], (options.DATA, options.FOLDS, options.BUILDER, options.MODEL)),
    (["run", "cross-validation"], (options.DATA, options.FOLDS, options.BUILDER,
                                   options.MODEL)),
    (["compile"], (options.CLUSTER,)),
    (["submit"], (options.SERVICE, options.DATA, options.FOLDS, options.BUILDER,
                  options.MODEL, options.CLUSTER)),
])
def test_every_command_line_flag_comes_from_the_table(command, groups):
    from foldwise.pipelines.cli import build_parser

    parser = build_parser()
    for word in command:
        parser = next(a for a in parser._actions if a.dest in ("command", "pipeline")
                      ).choices[word]
    flags = {s for a in parser._actions for s in a.option_strings}
    for opt in options.group(*groups):
        assert (opt.flag in flags) == opt.on_command_line, opt.flag
        action = next((a for a in parser._actions if opt.flag in a.option_strings), None)
        if action is not None and opt.choices:
            assert tuple(action.choices) == opt.choices


def test_help_shows_the_model_defaults_of_the_table():
    result = subprocess.run([str(BIN / "foldwise"), "run", "grid-search", "--help"],
                            capture_output=True, text=True, env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert "hidden layer sizes, e.g. 64,32 (default 64,32)" in result.stdout
    assert "training epochs (default 50)" in result.stdout


def test_python_keywords_are_the_table_in_scikit_learns_words():
    import foldwise

    parameters = inspect.signature(foldwise.GridSearchCV).parameters
    table = [o.python_name for o in options.group(
        options.DATA, options.FOLDS, options.BUILDER, options.MODEL) if o.name != "target"]
    expected = ["param_grid", "warm_start", "refit", "refit_epochs", "serving_image", *table,
                "output", "verbose", "runner", "image"]
    assert list(parameters) == expected
    assert parameters["runner"].default == "subprocess" and parameters["image"].default is None
    assert parameters["cv"].default == 5 and parameters["random_state"].default == 0
    assert all(parameters[o.name].default is None for o in options.group(options.MODEL))


@pytest.mark.parametrize("name, text, value", [
    ("hidden_units", "64, 32", [64, 32]), ("categorical", "a,b,", ["a", "b"]),
    ("folds", "3", 3), ("learning_rate", "1e-3", 0.001), ("scaler", "robust", "robust")])
def test_command_line_text_parses_by_kind(name, text, value):
    assert options.parse_text(options.option(name), text) == value


@pytest.mark.parametrize("name, value, match", [
    ("folds", 2.5, "--folds must be a whole number"),
    ("learning_rate", float("nan"), "--learning-rate must be a finite number"),
    ("learning_rate", "fast", "--learning-rate must be a number"),
    ("early_stopping", "yes", "--early-stopping must be true or false"),
    ("scaler", "zscore", "--scaler must be one of standard, minmax, robust, none"),
    ("categorical", [1, 2], "--categorical takes column names"),
])
def test_python_values_are_checked_with_the_command_lines_words(name, value, match):
    with pytest.raises(options.FoldwiseError, match=match):
        options.check_value(options.option(name), value)


def _outside(opt):
    """A value just outside ``opt``'s bounds."""
    if opt.low is not None:
        return opt.low - (0 if opt.low_open else 0.01)
    return opt.high + (0 if opt.high_open else 0.01)


@pytest.mark.parametrize("opt", [o for o in options.group(options.MODEL)
                                 if o.low is not None or o.high is not None],
                         ids=lambda o: o.name)
def test_a_model_options_bounds_are_the_tables_and_the_check_reads_them(opt):
    from foldwise.components.core.errors import FoldwiseError
    from foldwise.components.core.models.keras_model import OPTIMIZERS
    from foldwise.components.core.models.spec import normalize_spec

    optimizer = next(name for name, taken in OPTIMIZERS.items()
                     if opt.name in taken or opt.name not in OPTIMIZER_PARAMS)
    spec = {"optimizer": optimizer, opt.name: _outside(opt)}
    with pytest.raises(FoldwiseError, match=rf"^{opt.name} must be in [\[(]"):
        normalize_spec(spec, "regression")
    inside = opt.low if opt.low is not None and not opt.low_open else (
        opt.high if opt.high is not None and not opt.high_open else None)
    if inside is not None:
        normalize_spec({"optimizer": optimizer, opt.name: inside}, "regression")
