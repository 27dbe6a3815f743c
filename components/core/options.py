"""Every option a user can set, declared once: name, group, default, choices and help.

The command line's flags (``--batch-size``), the Python API's keywords (``batch_size``, or
scikit-learn's name where it has one: ``cv``, ``random_state``), the pipelines' arguments and
the preprocess step's options are all derived from :data:`OPTIONS`. The ``@dsl.pipeline`` and
component signatures must stay literal for KFP; tests hold each one against this table.

Model options default to ``None`` on the command line and in Python: "not given", so that a
grid may vary them; :data:`OPTIONS`' ``default`` is the value a model then gets
(``core.models.spec.MODEL_DEFAULTS`` is built from it).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from foldwise.components.core.errors import FoldwiseError

# Groups, in the order the command line's help lists them.
DATA, FOLDS, BUILDER, MODEL, SEARCH, CLUSTER, SERVICE = (
    "data", "folds", "builder", "model", "search", "cluster", "service")
# Options whose default differs between this machine and a cluster (the table holds the
# cluster's): not given, the run decides.
ENGINE_DEPENDENT = ("packing",)
LOCAL_DEFAULTS = {"packing": "configs"}
# Vertex AI's newest prebuilt TensorFlow serving image (TensorFlow 2.15; there is none of the
# pinned 2.21). SavedModels saved with TensorFlow 2.21 load and answer alike under 2.15.
SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


@dataclass(frozen=True)
class Option:
    """One option.

    Attributes:
        name: Pipeline parameter and model-spec key; ``--name-with-dashes`` on the command line.
        group: :data:`DATA`, :data:`FOLDS`, :data:`MODEL`, :data:`CLUSTER` or :data:`SERVICE`.
        help: One line for ``--help`` and docstrings.
        default: The value used when the option is not given.
        kind: ``text``, ``int``, ``float``, ``flag`` (true when given), ``names`` (a list of
            column names; comma-separated on the command line), ``units`` (a list of layer
            sizes, ``64,32``) or ``image`` (a container image reference: text with no spaces).
        choices: The accepted values, if only some are.
        keyword: The Python keyword where scikit-learn names the idea differently.
        metavar: How ``--help`` shows the value.
        on_command_line: Whether the command line has a flag for it.
        low, high: The bounds of a number (``None``: unbounded on that side).
        low_open, high_open: Whether the bound itself is excluded.
    """

    name: str
    group: str
    help: str
    default: Any = None
    kind: str = "text"
    choices: tuple[str, ...] | None = None
    keyword: str | None = None
    metavar: str | None = None
    on_command_line: bool = True
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def bounds(self) -> dict:
        """``low``, ``high``, ``low_open`` and ``high_open``, as the number checks take them."""
        return {"low": self.low, "high": self.high, "low_open": self.low_open,
                "high_open": self.high_open}

    @property
    def flag(self) -> str:
        """The command line's flag: ``--group-column``."""
        return "--" + self.name.replace("_", "-")

    @property
    def given_default(self) -> Any:
        """The default of the flag and the keyword.

        ``None`` ("not given") for model options and for options whose default depends on
        where the run goes.
        """
        if self.group in (MODEL, BUILDER) or self.name in ENGINE_DEPENDENT:
            return None
        return tuple(self.default) if isinstance(self.default, list) else self.default

    @property
    def python_name(self) -> str:
        """The Python keyword: ``cv`` for ``folds``, else the name."""
        return self.keyword or self.name


def _optimizer_hyperparameter(name: str, what: str, **bounds) -> Option:
    return Option(name, MODEL, f"{what} (default: Keras' own for the chosen optimizer)",
                  kind="float", **bounds)


OPTIONS: tuple[Option, ...] = (
    # The table's columns.
    Option("target", DATA, "column to predict", metavar="COL"),
    Option("task", DATA, "override the task inferred from the target", default="",
           choices=("classification", "regression")),
    Option("categorical", DATA, "columns to one-hot encode whatever their type", default=[],
           kind="names", metavar="COLS"),
    Option("numeric", DATA, "columns to treat as numbers", default=[], kind="names",
           metavar="COLS"),
    Option("drop", DATA, "columns to leave out", default=[], kind="names", metavar="COLS"),
    Option("group_column", DATA, "rows sharing this column's value always share a fold",
           default="", metavar="COL"),
    # Folds, preprocessing, scoring and the shape of the run.
    Option("folds", FOLDS, "number of folds", default=5, kind="int", keyword="cv"),
    Option("split", FOLDS, "kfold: shuffled (stratified, grouped) K-fold; time: time-ordered "
           "folds, each validating the next block of rows in time after training on the rows "
           "before it (scikit-learn's TimeSeriesSplit)", default="kfold",
           choices=("kfold", "time")),
    Option("order_column", FOLDS, "split time: the column of times (numbers or dates, one row "
           "per time) that orders the rows; left out of the features (default: the table's "
           "own row order)", default="", metavar="COL"),
    Option("gap", FOLDS, "split time: rows left out between each fold's training rows and its "
           "validation block", default=0, kind="int", low=0),
    Option("test_size", FOLDS, "split time: rows in each validation block (0: rows // "
           "(folds + 1))", default=0, kind="int", low=0),
    Option("repeats", FOLDS, "repeat K-fold this many times, reshuffled each time (scikit-"
           "learn's RepeatedKFold / RepeatedStratifiedKFold): folds x repeats scores per "
           "configuration", default=1, kind="int", low=1),
    Option("seed", FOLDS, "seed of folds, weights, shuffling", default=0, kind="int",
           keyword="random_state"),
    Option("scaler", FOLDS, "numeric scaling fitted per fold (after median imputation)",
           default="standard", choices=("standard", "minmax", "robust", "none")),
    Option("scoring", FOLDS, "metric to rank by (default: r2 or accuracy)", default=""),
    Option("baseline", FOLDS, "mlp: also score scikit-learn's MLP with matching hidden layers, "
           "learning rate, batch size and epochs on the same folds", default="none",
           choices=("none", "mlp")),
    Option("objectives", FOLDS, "the score and what the model costs to serve, weighed "
           "against each other: e.g. r2,latency (also n_parameters, model_bytes); latency is "
           "milliseconds per 1,000 raw rows of the exported model. cv_results marks the Pareto "
           "front", default="", metavar="SCORE,COST"),
    Option("importance", FOLDS, "on: the best configuration's permutation importance of "
           "each raw column, on each fold's validation rows with that fold's model (in "
           "summary.json and the report); off: skip it", default="on", choices=("on", "off")),
    Option("packing", FOLDS, "configs: train configurations that pack into one program "
           "(foldwise plan lists what keeps them apart) together, all folds, in 2 tasks; folds: "
           "one task per configuration, its folds packed; none: one task per (configuration, "
           "fold), a pod each on a cluster. Same models either way (default: configs on this "
           "machine, none on a cluster)",
           default="none", choices=("configs", "folds", "none")),
    # A model of the user's own (core.models.builder_code): its builder travels in each
    # configuration.
    Option("model", BUILDER, "your own Keras model: the function that builds it, as "
           "file.py:function or package.module:function (a callable in Python); default: "
           "foldwise's MLP (the model options below)", metavar="FILE.py:FUNCTION"),
    # The model: the JSON spec of core.models.spec (dashes for underscores on the command line).
    Option("estimator", MODEL, "keras, sklearn_mlp for scikit-learn's MLP, or keras_builder for "
           "a user's own Keras model", default="keras",
           choices=("keras", "sklearn_mlp", "keras_builder"), on_command_line=False),
    Option("hidden_units", MODEL, "hidden layer sizes, e.g. 64,32", default=[64, 32],
           kind="units", metavar="N,N"),
    Option("activation", MODEL, "hidden activation", default="relu"),
    Option("dropout", MODEL, "dropout after each hidden layer", default=0.0, kind="float",
           low=0.0, high=1.0, high_open=True),
    Option("l2", MODEL, "L2 penalty on hidden weights", default=0.0, kind="float", low=0.0),
    Option("optimizer", MODEL, "adam, adamw, sgd or rmsprop", default="adam"),
    _optimizer_hyperparameter("learning_rate", "step size", low=0.0, low_open=True),
    _optimizer_hyperparameter("beta_1", "Adam's first-moment decay", low=0.0, high=1.0,
                              high_open=True),
    _optimizer_hyperparameter("beta_2", "Adam's second-moment decay", low=0.0, high=1.0,
                              high_open=True),
    _optimizer_hyperparameter("epsilon", "numerical stability constant", low=0.0,
                              low_open=True),
    _optimizer_hyperparameter("momentum", "SGD / RMSprop momentum", low=0.0, high=1.0),
    _optimizer_hyperparameter("rho", "RMSprop's decay", low=0.0, high=1.0, high_open=True),
    _optimizer_hyperparameter("weight_decay", "AdamW's decoupled weight decay", low=0.0),
    Option("loss", MODEL, "Keras loss name or module:function (default: by task)"),
    Option("epochs", MODEL, "training epochs", default=50, kind="int"),
    Option("batch_size", MODEL, "minibatch size", default=32, kind="int"),
    Option("early_stopping", MODEL, "stop on a held-out part of each fold's training rows",
           default=False, kind="flag"),
    Option("patience", MODEL, "early-stopping patience", default=10, kind="int"),
    Option("validation_fraction", MODEL, "share of training rows held out for early stopping",
           default=0.1, kind="float", low=0.0, high=0.5, low_open=True),
    Option("target_scaling", MODEL, "standardize regression targets per fold",
           default="standard", choices=("standard", "none")),
    Option("mixed_precision", MODEL, "train in mixed float16/bfloat16 on accelerators",
           default=False, kind="flag"),
    # How a search chooses (core.search: sampling, rungs, halving): which a search kind
    # takes is its entry's (pipelines.kinds).
    Option("n_iter", SEARCH, "random search: how many configurations to sample", default=10,
           kind="int"),
    Option("outer_folds", SEARCH, "nested cross-validation: outer folds, each running the "
           "search on --folds inner folds of its own training rows", default=5, kind="int",
           low=2),
    Option("inner_search", SEARCH, "nested cross-validation: the search inside each outer "
           "fold: grid (the --grid file's grid, or --n-iter points sampled from its "
           "distributions), halving (successive halving or racing by folds: --factor, "
           "--elimination ...) or bayes (Bayesian search in rounds: --n-iter, --batch, "
           "--racing)", default="grid", choices=("grid", "halving", "bayes")),
    Option("n_candidates", SEARCH, "halving with sampled candidates: how many (0: "
           "max_resources // min_resources)", default=0, kind="int"),
    Option("factor", SEARCH, "each rung keeps 1/factor of the candidates and gives them factor "
           "times the folds", default=3.0, kind="float"),
    Option("resource", SEARCH, "what rungs give survivors more of", default="folds",
           choices=("folds", "epochs")),
    Option("min_resources", SEARCH, "folds of the first rung: a number, 'smallest' or "
           "'exhaust' (racing: 2 unless a number is given)", default="exhaust"),
    Option("max_resources", SEARCH, "the most folds a candidate gets (0: every fold)",
           default=0, kind="int"),
    Option("aggressive_elimination", SEARCH, "repeat the first rung's folds until few enough "
           "candidates are left to end with one", default=False, kind="flag"),
    Option("elimination", SEARCH, "halving: keep the best 1/factor after each rung; racing: "
           "drop only candidates a corrected paired t-test finds worse than the leader",
           default="halving", choices=("halving", "racing")),
    Option("confidence", SEARCH, "racing: confidence that a dropped candidate is worse",
           default=0.95, kind="float", low=0.5, high=1, high_open=True),
    Option("batch", SEARCH, "Bayesian search: configurations asked per round (0: a fifth of "
           "n_iter, at least 4)", default=0, kind="int", low=0, keyword="n_points"),
    Option("racing", SEARCH, "Bayesian search: a configuration a corrected paired t-test finds "
           "worse than the incumbent takes no more folds", default="on", choices=("on", "off")),
    Option("warm_start", SEARCH, "an earlier run's results folder or gs:// prefix (same "
           "table, target, folds and seed): its scores seed a Bayesian search, and trials its "
           "folder holds are taken over, not trained again"),
    Option("refit", SEARCH, "best: refit the top mean score; one_standard_error: the simplest "
           "configuration within one standard error of it; pareto:latency (or pareto:"
           "n_parameters, pareto:model_bytes): the cheapest within one standard error of it",
           default="best", choices=("best", "one_standard_error", "pareto:latency",
                                    "pareto:n_parameters", "pareto:model_bytes")),
    Option("refit_epochs", SEARCH, "fixed: refit with the configuration's epochs; cv: with the "
           "epoch whose mean validation-fold loss over the folds is lowest", default="fixed",
           choices=("fixed", "cv")),
    Option("serving_image", SEARCH, "image that serves the exported SavedModel: the "
           "serving_model output's containerSpec.imageUri (Vertex AI's newest prebuilt "
           "TensorFlow image by default)", default=SERVING_IMAGE, kind="image"),
    # How steps run on a cluster.
    Option("image", CLUSTER, "image of every step, e.g. REGISTRY/foldwise:0.1.0-gpu "
           "(default: the components' own)"),
    Option("accelerator", CLUSTER, "accelerator of the training steps: cpu, nvidia-t4:1, "
           "nvidia-l4:1, nvidia-a100:2, tpu-v5e:4, ...", default="cpu"),
    Option("tpu_topology", CLUSTER, "TPU slice topology, e.g. 2x2"),
    Option("platform", CLUSTER, "kfp: Kubeflow Pipelines on GKE; vertex: Vertex AI Pipelines",
           default="kfp", choices=("kfp", "vertex")),
    Option("train_cpu", CLUSTER, "CPU request of training steps", default="2"),
    Option("train_memory", CLUSTER, "memory of training steps", default="8G"),
    Option("step_cpu", CLUSTER, "CPU request of other steps", default="1"),
    Option("step_memory", CLUSTER, "memory of other steps", default="4G"),
    # Where a run is sent (submit, schedule).
    Option("host", SERVICE, "Kubeflow Pipelines endpoint, https://..."),
    Option("namespace", SERVICE, "Kubeflow namespace (multi-user clusters)"),
    Option("experiment", SERVICE, "experiment name", default="foldwise"),
    Option("vertex_project", SERVICE, "Google Cloud project for Vertex AI"),
    Option("vertex_region", SERVICE, "Vertex AI region, e.g. europe-west4"),
    Option("pipeline_root", SERVICE, "gs:// prefix for the run's artifacts"),
    Option("service_account", SERVICE, "service account the steps run as"),
    Option("name", SERVICE, "run or schedule name (default: pipeline and time)"),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def option(name: str) -> Option:
    """The option called ``name``."""
    return BY_NAME[name]


def group(*groups: str) -> list[Option]:
    """The options of ``groups``, in table order."""
    return [o for o in OPTIONS if o.group in groups]


def names(*groups: str) -> list[str]:
    """The names of the options of ``groups``, in table order."""
    return [o.name for o in group(*groups)]


def choices(name: str) -> tuple[str, ...]:
    """The accepted values of option ``name``."""
    found = option(name).choices
    assert found is not None, name
    return found


# The options the preprocess step takes (besides the data), in its signature's order.
PREPROCESS = ("target", "task", "categorical", "numeric", "drop", "group_column", "folds",
              "split", "order_column", "gap", "test_size", "repeats", "seed")
# Options of a run that every pipeline takes as parameters (besides its own).
RUN = (*PREPROCESS, "scaler", "scoring", "baseline", "objectives", "importance", "packing")


# The search options each pipeline takes (the others take none).
HALVING = ("factor", "resource", "min_resources", "max_resources", "aggressive_elimination",
           "elimination", "confidence")
BAYES = ("n_iter", "batch", "racing", "confidence")
def defaults(*groups: str) -> dict[str, Any]:
    """``{name: default}`` of the options of ``groups`` (lists copied)."""
    return {o.name: list(o.default) if isinstance(o.default, list) else o.default
            for o in group(*groups)}


def format_value(value: Any) -> str:
    """A value as the command line writes it: ``64,32`` for a list."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def parse_text(opt: Option, text: str) -> Any:
    """A command-line value of ``opt`` as its Python value.

    Raises:
        FoldwiseError: The text is not a value of that kind.
    """
    if opt.kind == "names":
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        if opt.kind == "units":
            return [int(part) for part in text.split(",") if part.strip()]
        if opt.kind == "int":
            return int(text)
        if opt.kind == "float":
            return float(text)
    except ValueError:
        what = {"units": "layer sizes such as 64,32", "int": "a whole number",
                "float": "a number"}[opt.kind]
        raise FoldwiseError(f"expected {what}, got {text!r}") from None
    return text


def check_bounded(name: str, value: Any) -> None:
    """``value`` checked against option ``name``'s bounds in the table (:func:`check_number`)."""
    check_number(name, value, **option(name).bounds)


def check_number(key: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """``value`` checked to be a number within the bounds (an option's :attr:`Option.bounds`).

    Raises:
        FoldwiseError: Not a number, or outside the bounds (the message names both).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise FoldwiseError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value):  # a grid's .inf, or a number YAML reads beyond float64
        raise FoldwiseError(f"{key} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open or high is None else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise FoldwiseError(f"{key} must be in {bounds}, got {value!r}")


def check_value(opt: Option, value: Any) -> Any:
    """``value`` checked against ``opt``'s kind and choices; ``None`` stays ``None``.

    The Python API's keywords pass through here, so that a wrong type fails before any
    step runs, with the option's command-line flag in the message as the CLI gives it.

    Raises:
        FoldwiseError: Naming the option, the value and what it takes.
    """
    if value is None:
        return None
    if opt.kind == "names":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise FoldwiseError(f"{opt.flag} takes column names, got {value!r}")
        return list(value)
    if opt.kind == "units":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise FoldwiseError(f"{opt.flag}: expected layer sizes such as [64, 32], "
                                f"got {value!r}")
        return list(value)
    if opt.kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise FoldwiseError(f"{opt.flag} must be a whole number, got {value!r}")
        return int(value)
    if opt.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FoldwiseError(f"{opt.flag} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise FoldwiseError(f"{opt.flag} must be a finite number, got {value!r}")
        return float(value)
    if opt.kind == "flag":
        if not isinstance(value, bool):
            raise FoldwiseError(f"{opt.flag} must be true or false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise FoldwiseError(f"{opt.flag} must be text, got {value!r}")
    if opt.kind == "image" and (not value.strip() or any(c.isspace() for c in value)):
        raise FoldwiseError(f"{opt.flag} {value!r} is not an image reference: give one such as "
                            "europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest")
    if opt.choices and value and value not in opt.choices:
        raise FoldwiseError(f"{opt.flag} must be one of {', '.join(opt.choices)}, "
                            f"got {value!r}")
    return value
