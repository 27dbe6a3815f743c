"""The ``foldwise`` command line.

Exit status: 0 on success, 2 for an error the user caused (one ``error:`` line on stderr, no
traceback), 1 when a pipeline step failed for another reason (its error and the log's path are
printed); anything else is a bug.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from foldwise.components.core.errors import FoldwiseError

EXIT_USER_ERROR = 2
EXIT_STEP_FAILED = 1
RUNS_FOLDER = Path("foldwise-runs")

# Command-line options that go into the model spec (same names, dashes for underscores).
MODEL_FLAGS = (
    "hidden_units", "activation", "dropout", "l2", "optimizer", "learning_rate", "beta_1",
    "beta_2", "epsilon", "momentum", "rho", "weight_decay", "loss", "epochs", "batch_size",
    "early_stopping", "patience", "validation_fraction", "target_scaling",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``error:`` line and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse's hook
        raise FoldwiseError(f"{message} (see '{self.prog} --help')")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _units(text: str) -> list[int]:
    try:
        return [int(part) for part in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected layer sizes such as 64,32, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = _Parser(prog="foldwise", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="run a pipeline on this machine (kfp.local)")
    pipelines = run.add_subparsers(dest="pipeline", required=True, parser_class=_Parser)
    cv = pipelines.add_parser(
        "cross-validation", help="K-fold cross-validation of one Keras model",
        description="Leakage-free K-fold cross-validation of a Keras model, run as a KFP "
        "pipeline on the embedded engine.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = cv.add_argument_group("data")
    data.add_argument("--data", required=True, help="CSV or Parquet table")
    data.add_argument("--target", required=True, help="column to predict")
    data.add_argument("--task", choices=["classification", "regression"],
                      help="override the task inferred from the target")
    data.add_argument("--categorical", type=_names, default=[], metavar="COLS",
                      help="comma-separated columns to one-hot encode whatever their type")
    data.add_argument("--numeric", type=_names, default=[], metavar="COLS",
                      help="comma-separated columns to treat as numbers")
    data.add_argument("--drop", type=_names, default=[], metavar="COLS",
                      help="comma-separated columns to leave out")
    data.add_argument("--group-column", default="", metavar="COL",
                      help="rows sharing this column's value always share a fold")
    folds = cv.add_argument_group("folds and preprocessing")
    folds.add_argument("--folds", type=int, default=5, help="number of folds")
    folds.add_argument("--seed", type=int, default=0, help="seed of folds, weights, shuffling")
    folds.add_argument("--scaler", default="standard",
                       choices=["standard", "minmax", "robust", "none"],
                       help="numeric scaling fitted per fold (after median imputation)")
    folds.add_argument("--scoring", default="",
                       help="metric to rank by (default: r2 or accuracy)")
    model = cv.add_argument_group("model (defaults: see foldwise.components.core.model)")
    model.add_argument("--hidden-units", type=_units, metavar="N,N",
                       help="hidden layer sizes, e.g. 64,32 (default 64,32)")
    model.add_argument("--activation", help="hidden activation (default relu)")
    model.add_argument("--dropout", type=float, help="dropout after each hidden layer")
    model.add_argument("--l2", type=float, help="L2 penalty on hidden weights")
    model.add_argument("--optimizer", help="adam, adamw, sgd or rmsprop (default adam)")
    for flag in ("learning-rate", "beta-1", "beta-2", "epsilon", "momentum", "rho",
                 "weight-decay"):
        model.add_argument(f"--{flag}", type=float, help="optimizer hyperparameter")
    model.add_argument("--loss", help="Keras loss name or module:function (default by task)")
    model.add_argument("--epochs", type=int, help="training epochs (default 50)")
    model.add_argument("--batch-size", type=int, help="minibatch size (default 32)")
    model.add_argument("--early-stopping", action="store_true", default=None,
                       help="stop on a held-out part of each fold's training rows")
    model.add_argument("--patience", type=int, help="early-stopping patience (default 10)")
    model.add_argument("--validation-fraction", type=float,
                       help="share of training rows held out for early stopping (default 0.1)")
    model.add_argument("--target-scaling", choices=["standard", "none"],
                       help="standardize regression targets per fold (default standard)")
    cv.add_argument("--output", type=Path,
                    help="folder for results (default: a new folder under ./foldwise-runs/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``foldwise`` console script."""
    try:
        args = build_parser().parse_args(argv)
        return run_cross_validation(args)
    except FoldwiseError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def model_spec_from_args(args: argparse.Namespace) -> dict:
    """The model parameters the user gave on the command line (defaults are filled later)."""
    return {key: getattr(args, key) for key in MODEL_FLAGS if getattr(args, key) is not None}


def run_cross_validation(args: argparse.Namespace) -> int:
    """Validate everything, run the pipeline on kfp.local, publish and print the results."""
    from foldwise.components.core import metrics
    from foldwise.components.core.model import normalize_spec
    from foldwise.components.core.preprocess import PreprocessOptions, preprocess
    from foldwise.components.core.table import read_table
    from foldwise.pipelines.cross_validation import cross_validation
    from foldwise.pipelines.engine import PipelineFailed, run_local

    started = time.perf_counter()
    data_path = Path(args.data).expanduser().resolve()
    options = PreprocessOptions(
        target=args.target, task=args.task, categorical=tuple(args.categorical),
        numeric=tuple(args.numeric), drop=tuple(args.drop),
        group_column=args.group_column or None, folds=args.folds, seed=args.seed,
    )
    # Everything a user can get wrong is checked here, before any step runs.
    _, schema = preprocess(read_table(data_path), options)
    n_classes = len(schema["classes"]) if schema["classes"] else None
    spec = model_spec_from_args(args)
    full_spec = normalize_spec(spec, schema["task"], n_classes)
    names = metrics.metric_names(schema["task"], n_classes)
    if args.scoring and args.scoring not in names:
        raise FoldwiseError(
            f"--scoring {args.scoring!r} is not reported for {schema['task']}; use one of "
            f"{', '.join(names)}")
    output = _prepare_output(args.output)

    _describe_plan(data_path, schema, full_spec, output)
    arguments = {
        "data": str(data_path), "target": args.target, "task": args.task or "",
        "categorical": list(args.categorical), "numeric": list(args.numeric),
        "drop": list(args.drop), "group_column": args.group_column, "folds": args.folds,
        "seed": args.seed, "scaler": args.scaler, "model_spec": spec, "scoring": args.scoring,
    }
    total = 4 + 3 * args.folds
    progress = _Progress(total)
    try:
        outputs = run_local(cross_validation, arguments, output / "pipeline",
                            output / "pipeline.log", progress)
    except PipelineFailed as err:
        if err.user_error:
            raise FoldwiseError(str(err)) from None
        print(f"error: {err}; full log: {err.log_path}", file=sys.stderr)
        return EXIT_STEP_FAILED

    _publish(outputs["cv_results"].path, output / "cv_results.csv")
    _publish(outputs["folds"].path, output / "folds.csv")
    _publish(outputs["summary"].path, output / "summary.json")
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    print(format_results(output / "cv_results.csv", summary))
    print(f"\nwrote {output}/: cv_results.csv, folds.csv, summary.json, pipeline/ (every "
          f"step's artifacts), pipeline.log  [{time.perf_counter() - started:.1f} s]")
    return 0


def _prepare_output(output: Path | None) -> Path:
    if output is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        output = RUNS_FOLDER / f"cross-validation-{stamp}"
        suffix = 1
        while output.exists():
            suffix += 1
            output = RUNS_FOLDER / f"cross-validation-{stamp}-{suffix}"
    output = output.expanduser().resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FoldwiseError(
            f"output folder {output} already exists and is not empty: choose another --output "
            "(results are never written over)")
    output.mkdir(parents=True, exist_ok=True)
    return output


def _publish(source: str, destination: Path) -> None:
    """Copy under a temporary name, then rename: a reader never sees a half-written file."""
    temporary = destination.with_name(f".{destination.name}.partial")
    shutil.copyfile(source, temporary)
    os.replace(temporary, destination)


def _describe_plan(data_path: Path, schema: dict, spec: dict, output: Path) -> None:
    dropped = len(schema["rows_dropped_missing_target"])
    lines = [
        f"data     {data_path.name}: {schema['rows_used']} rows used"
        + (f", {dropped} dropped (missing target)" if dropped else ""),
        f"task     {schema['task']} ({schema['task_reason']})"
        + (f", classes {schema['classes']}" if schema["classes"] else ""),
        f"features {len(schema['numeric'])} numeric, {len(schema['categorical'])} categorical",
        f"folds    {schema['folds']} ({schema['fold_strategy']}, seed {schema['seed']})",
        "model    " + json.dumps(spec, sort_keys=True),
        f"output   {output}",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


class _Progress:
    """One line per finished step on stderr: ``[ 4/17] scale fold 1  0.7 s``."""

    def __init__(self, total: int, show_config: bool = False) -> None:
        self.total, self.done, self.show_config = total, 0, show_config

    def __call__(self, event) -> None:
        if event.status is None:
            return
        self.done += 1
        where = f" {event.config_id}" if event.config_id and self.show_config else ""
        where += f" fold {event.fold}" if event.fold is not None else ""
        mark = "" if event.status == "SUCCESS" else f"  {event.status}"
        width = len(str(self.total))
        label = f"{event.name}{where}"
        print(f"[{self.done:>{width}}/{self.total}] {label:<{22 + 15 * self.show_config}} "
              f"{event.seconds:6.1f} s{mark}", file=sys.stderr, flush=True)


def format_results(cv_results_path: Path, summary: dict) -> str:
    """Per-fold scores and mean ± std of the (best) configuration as a text table."""
    import pandas as pd

    table = pd.read_csv(cv_results_path)
    best = table.sort_values(f"rank_test_{summary['scoring']}", kind="stable").iloc[0]
    names = list(summary["metrics"])
    width = max(len(n) for n in names) + 2
    lines = ["", "fold".ljust(6) + "".join(n.rjust(width) for n in names)]
    for fold in range(summary["folds"]):
        lines.append(str(fold).ljust(6) + "".join(
            f"{best[f'split{fold}_test_{n}']:.4f}".rjust(width) for n in names))
    lines.append("mean".ljust(6) + "".join(
        f"{best[f'mean_test_{n}']:.4f}".rjust(width) for n in names))
    lines.append("± std".ljust(6) + "".join(
        f"{best[f'std_test_{n}']:.4f}".rjust(width) for n in names))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
