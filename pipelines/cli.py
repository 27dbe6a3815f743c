"""The ``foldwise`` command line.

Exit status: 0 on success, 2 for an error the user caused (one ``error:`` line on stderr, no
traceback), 1 when a pipeline step failed for another reason (its error and the log's path are
printed); anything else is a bug.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.jsonio import class_count

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


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="CSV or Parquet table (path or gs://)")
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
    folds = parser.add_argument_group("folds and preprocessing")
    folds.add_argument("--folds", type=int, default=5, help="number of folds")
    folds.add_argument("--seed", type=int, default=0, help="seed of folds, weights, shuffling")
    folds.add_argument("--scaler", default="standard",
                       choices=["standard", "minmax", "robust", "none"],
                       help="numeric scaling fitted per fold (after median imputation)")
    folds.add_argument("--scoring", default="",
                       help="metric to rank by (default: r2 or accuracy)")
    folds.add_argument("--baseline", default="none", choices=["none", "mlp"],
                       help="mlp: also score scikit-learn's MLP with matching hidden layers, "
                       "learning rate, batch size and epochs on the same folds")
    folds.add_argument("--packing", choices=["configs", "folds", "none"],
                       help="configs: train configurations that stack (same depth) together, "
                       "all folds, as one stacked model in 2 tasks; folds: one task per "
                       "configuration, its folds stacked; none: one task per (configuration, "
                       "fold), a pod each on a cluster. Same models either way (default: "
                       "configs for run, none for submit and schedule)")


def _add_model_options(parser: argparse.ArgumentParser, title: str) -> None:
    model = parser.add_argument_group(title)
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


def _add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", help="results folder or gs:// prefix (default: a new "
                        "folder under ./foldwise-runs/)")


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--image", help="image of every step, e.g. "
                         "REGISTRY/foldwise:0.1.0-gpu (default: the components' own)")
    cluster.add_argument("--accelerator", default="cpu",
                         help="accelerator of the training steps: cpu, nvidia-t4:1, "
                         "nvidia-l4:1, nvidia-a100:2, tpu-v5e:4, ...")
    cluster.add_argument("--tpu-topology", help="TPU slice topology, e.g. 2x2")
    cluster.add_argument("--platform", default="kfp", choices=["kfp", "vertex"],
                         help="kfp: Kubeflow Pipelines on GKE; vertex: Vertex AI Pipelines")
    cluster.add_argument("--train-cpu", default="2", help="CPU request of training steps")
    cluster.add_argument("--train-memory", default="8G", help="memory of training steps")
    cluster.add_argument("--step-cpu", default="1", help="CPU request of other steps")
    cluster.add_argument("--step-memory", default="4G", help="memory of other steps")


def cluster_settings(args: argparse.Namespace):
    """The :class:`ClusterSettings` the command line asks for."""
    from foldwise.pipelines.cluster import ClusterSettings, parse_accelerator

    return ClusterSettings(
        image=args.image, accelerator=parse_accelerator(args.accelerator, args.tpu_topology),
        platform=args.platform, train_cpu=args.train_cpu, train_memory=args.train_memory,
        step_cpu=args.step_cpu, step_memory=args.step_memory)


def compile_command(args: argparse.Namespace) -> int:
    """``foldwise compile``: a pipeline's YAML, or one YAML per component."""
    from foldwise.components.image import IMAGE
    from foldwise.pipelines import packaging

    settings = cluster_settings(args)
    if args.what == "components":
        written = packaging.compile_components(args.out, args.image)
        print(f"wrote {len(written)} components to {args.out}/: "
              f"{', '.join(p.name for p in written)}")
    else:
        packaging.compile_pipeline(args.what, settings, args.out)
        accelerator = settings.accelerator
        print(f"wrote {args.out}: {args.what} for {args.platform}, image "
              f"{args.image or IMAGE}, training on "
              f"{'cpu' if accelerator is None else f'{accelerator.count} × {accelerator.name}'}")
    if not args.image:
        print(f"note: steps run image {IMAGE}: push it (docker/Dockerfile) to a registry the "
              "cluster can pull from and pass --image", file=sys.stderr)
    return 0


def submit_command(args: argparse.Namespace) -> int:
    """``foldwise submit`` / ``foldwise schedule``: validate, compile, send."""
    from foldwise.components import storage
    from foldwise.pipelines import packaging, submit

    on_vertex = bool(args.vertex_project or args.vertex_region)
    if on_vertex == bool(args.host) or (on_vertex and not (args.vertex_project and
                                                           args.vertex_region)):
        raise FoldwiseError("give --host (Kubeflow Pipelines) or both --vertex-project and "
                            "--vertex-region (Vertex AI)")
    if not storage.is_gcs(args.pipeline_root):
        raise FoldwiseError("--pipeline-root must be a gs:// prefix the cluster can write to")
    if not storage.is_gcs(args.data):
        raise FoldwiseError("--data must be a gs:// URI the cluster can read")
    if args.pipeline == "grid-search" and not (args.grid and args.output and
                                               storage.is_gcs(args.output)):
        raise FoldwiseError("grid-search needs --grid and an --output gs:// prefix")
    if args.pipeline == "retrain" and not (args.promote_to and
                                           storage.is_gcs(args.promote_to)):
        raise FoldwiseError("retrain needs a --promote-to gs:// prefix")
    data, _, grid, spec, _ = _validated_search(args, args.pipeline != "cross-validation")
    arguments = _pipeline_arguments(args, data)
    if args.pipeline == "grid-search":
        arguments.update(param_grid=grid, destination=args.output.rstrip("/"))
    elif args.pipeline == "retrain":
        arguments.update(param_grid=grid, model_spec=spec,
                         promote_to=args.promote_to.rstrip("/"))
    else:
        arguments["model_spec"] = spec
    if args.verb_is_schedule:
        submit.kfp_cron(args.cron)  # refuse a bad expression before compiling anything

    settings = cluster_settings(args)
    if on_vertex and settings.platform != "vertex":
        settings = dataclasses.replace(settings, platform="vertex")
    name = args.name or f"foldwise-{args.pipeline}-{datetime.now():%Y%m%d-%H%M%S}"
    with tempfile.TemporaryDirectory(prefix="foldwise-") as folder:
        package = packaging.compile_pipeline(args.pipeline, settings,
                                             Path(folder) / "pipeline.yaml")
        if on_vertex:
            job = submit.vertex_job(package, arguments, name, args.vertex_project,
                                    args.vertex_region, args.pipeline_root)
            result = (submit.schedule_vertex(job, name, args.cron, args.service_account)
                      if args.verb_is_schedule else
                      submit.submit_vertex(job, args.service_account))
        else:
            client = submit.kfp_client(args.host, args.namespace)
            result = (submit.schedule_kfp(client, package, arguments, name, args.experiment,
                                          args.cron, args.namespace, args.service_account)
                      if args.verb_is_schedule else
                      submit.submit_kfp(client, package, arguments, name, args.experiment,
                                        args.pipeline_root, args.namespace,
                                        args.service_account))
    print(f"{result.kind} {result.id}" + (f": {result.url}" if result.url else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = _Parser(prog="foldwise", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="run a pipeline on this machine (kfp.local)")
    pipelines = run.add_subparsers(dest="pipeline", required=True, parser_class=_Parser)
    formatter = argparse.ArgumentDefaultsHelpFormatter

    cv = pipelines.add_parser(
        "cross-validation", help="K-fold cross-validation of one Keras model",
        description="Leakage-free K-fold cross-validation of a Keras model, run as a KFP "
        "pipeline on the embedded engine.", formatter_class=formatter)
    _add_data_options(cv)
    _add_model_options(cv, "model (defaults: see foldwise.components.core.model)")
    _add_output_option(cv)

    grid = pipelines.add_parser(
        "grid-search", help="grid search with refit and a model that serves raw rows",
        description="Grid search of Keras models with leakage-free K-fold cross-validation, "
        "run as a KFP pipeline on the embedded engine; the best configuration is refitted on "
        "all rows and exported with its preprocessing, cv_results, a report and a manifest.",
        formatter_class=formatter)
    _add_data_options(grid)
    grid.add_argument("--grid", required=True, type=Path,
                      help="YAML file: parameter -> list of values, or a list of such mappings")
    _add_model_options(grid, "model options fixed for every configuration the grid leaves open")
    _add_output_option(grid)

    compile_ = commands.add_parser(
        "compile", help="compile a pipeline (or every component) to YAML for a cluster",
        description="Compile a pipeline to the YAML that Kubeflow Pipelines and Vertex AI "
        "Pipelines run, with the image, resources, accelerators, retries and caching of every "
        "step; or every component to its own YAML file.", formatter_class=formatter)
    compile_.add_argument("what", choices=["cross-validation", "grid-search", "retrain",
                                           "components"],
                          help="a pipeline, or 'components'")
    _add_cluster_options(compile_)
    compile_.add_argument("--out", required=True, type=Path,
                          help="YAML file (a folder for 'components')")

    for verb, summary in [("submit", "start a run on Kubeflow Pipelines or Vertex AI"),
                          ("schedule", "schedule recurring runs on Kubeflow Pipelines or "
                           "Vertex AI")]:
        command = commands.add_parser(
            verb, help=summary, formatter_class=formatter,
            description=f"Compile a pipeline and {summary} through the service's client "
            "library. Data, grid and model options are validated here first.")
        command.add_argument("pipeline", choices=["cross-validation", "grid-search",
                                                  "retrain"])
        service = command.add_argument_group("service (--host, or --vertex-project and "
                                             "--vertex-region)")
        service.add_argument("--host", help="Kubeflow Pipelines endpoint, https://...")
        service.add_argument("--namespace", help="Kubeflow namespace (multi-user clusters)")
        service.add_argument("--experiment", default="foldwise", help="experiment name")
        service.add_argument("--vertex-project", help="Google Cloud project for Vertex AI")
        service.add_argument("--vertex-region", help="Vertex AI region, e.g. europe-west4")
        service.add_argument("--pipeline-root", required=True,
                             help="gs:// prefix for the run's artifacts")
        service.add_argument("--service-account", help="service account the steps run as")
        service.add_argument("--name", help="run or schedule name (default: pipeline and time)")
        if verb == "schedule":
            service.add_argument("--cron", required=True,
                                 help="when, e.g. '0 0 3 * * *' (SEC MIN HOUR DAY MONTH WEEKDAY)")
        _add_data_options(command)
        command.add_argument("--grid", type=Path, help="grid YAML (grid-search, retrain)")
        _add_model_options(command, "model options")
        command.add_argument("--output", help="gs:// prefix for the results (grid-search)")
        command.add_argument("--promote-to", help="gs:// prefix retrain promotes to")
        _add_cluster_options(command)

    retrain = pipelines.add_parser(
        "retrain", help="search, refit, promote only if better than the promoted model",
        description="Grid search (or one configuration) on fresh data; the winner is exported "
        "as a new version under --promote-to and promoted (current.json) only if it beats the "
        "promoted model's configuration cross-validated on the same folds.",
        formatter_class=formatter)
    _add_data_options(retrain)
    retrain.add_argument("--grid", type=Path, help="grid YAML (default: one configuration "
                         "from the model options)")
    _add_model_options(retrain, "model options")
    retrain.add_argument("--promote-to", required=True,
                         help="folder or gs:// prefix holding versions/ and current.json")
    retrain.add_argument("--workspace", type=Path, help="folder for the run's artifacts "
                         "(default: a new folder under ./foldwise-runs/)")

    predict = commands.add_parser(
        "predict", help="predict with an exported model",
        description="Predict rows of a table with the model folder of a grid-search export.",
        formatter_class=formatter)
    predict.add_argument("--model", required=True,
                         help="the export's model folder (path or gs://.../model), or a "
                         "retrain's --promote-to folder (its current version is used)")
    predict.add_argument("--data", required=True, help="CSV or Parquet table (path or gs://)")
    predict.add_argument("--output", required=True, help="CSV to write (path or gs://)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``foldwise`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    try:
        args = build_parser().parse_args(argv)
        args.verb_is_schedule = args.command == "schedule"
        if args.command == "predict":
            return predict(args)
        if args.command == "compile":
            return compile_command(args)
        if args.command in ("submit", "schedule"):
            return submit_command(args)
        if args.pipeline == "grid-search":
            return run_grid_search(args)
        if args.pipeline == "retrain":
            return run_retrain(args)
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


def _validate_data(args: argparse.Namespace) -> tuple[str, dict]:
    """Read and preprocess the table here, so that every data error comes before any step."""
    from foldwise.components import storage
    from foldwise.components.core.preprocess import PreprocessOptions, preprocess
    from foldwise.components.core.table import read_table

    data = args.data if storage.is_gcs(args.data) else str(Path(args.data).expanduser()
                                                              .resolve())
    options = PreprocessOptions(
        target=args.target, task=args.task, categorical=tuple(args.categorical),
        numeric=tuple(args.numeric), drop=tuple(args.drop),
        group_column=args.group_column or None, folds=args.folds, seed=args.seed,
    )
    with storage.local_copy(data) as local:
        _, schema = preprocess(read_table(local), options)
    return data, schema


def _validated_search(args: argparse.Namespace,
                      use_grid: bool) -> tuple[str, dict, list, dict, list]:
    """Everything a run searches, validated before any step runs.

    The grid file (with the model options fixed where it is silent) when ``use_grid`` and one
    is given, else one configuration from the model options; plus the baseline twins.

    Returns:
        ``(data, schema, grid, model_spec, configs)``; ``grid`` is ``[]`` or ``model_spec``
        is ``{}``.
    """
    from foldwise.components.core.grid import expand_grid, single_config_grid, with_baseline

    data, schema = _validate_data(args)
    grid = grid_from_args(args) if use_grid and args.grid else []
    spec = {} if grid else model_spec_from_args(args)
    n_classes = class_count(schema)
    configs = expand_grid(grid or single_config_grid(spec), schema["task"], n_classes)
    configs = with_baseline(configs, args.baseline, schema["task"], n_classes)
    _check_scoring(args.scoring, schema)
    return data, schema, grid, spec, configs


def _check_scoring(scoring: str, schema: dict) -> None:
    from foldwise.components.core import metrics

    names = metrics.metric_names(schema["task"], class_count(schema))
    if scoring and scoring not in names:
        raise FoldwiseError(
            f"--scoring {scoring!r} is not reported for {schema['task']}; use one of "
            f"{', '.join(names)}")


def _pipeline_arguments(args: argparse.Namespace, data: str) -> dict:
    return {
        "data": data, "target": args.target, "task": args.task or "",
        "categorical": list(args.categorical), "numeric": list(args.numeric),
        "drop": list(args.drop), "group_column": args.group_column, "folds": args.folds,
        "seed": args.seed, "scaler": args.scaler, "scoring": args.scoring,
        "baseline": args.baseline, "packing": packing(args),
    }


def packing(args: argparse.Namespace) -> str:
    """``--packing``, else ``configs`` on this machine and ``none`` on a cluster."""
    return args.packing or ("configs" if args.command == "run" else "none")


def _train_tasks(configs: list, args: argparse.Namespace) -> int:
    from foldwise.components.core.grid import plan_trials

    return len(plan_trials(configs, list(range(args.folds)), packing(args)))


def _run(pipeline, arguments: dict, pipeline_root: Path, log: Path, progress) -> dict | None:
    """Run on kfp.local; ``None`` (after printing why) when a step failed for no user error."""
    from foldwise.pipelines.engine import PipelineFailed, run_local

    try:
        return run_local(pipeline, arguments, pipeline_root, log, progress)
    except PipelineFailed as err:
        if err.user_error:
            raise FoldwiseError(str(err)) from None
        print(f"error: {err}; full log: {err.log_path}", file=sys.stderr)
        return None


def run_cross_validation(args: argparse.Namespace) -> int:
    """Validate everything, run the pipeline on kfp.local, publish and print the results."""
    from foldwise.components import storage
    from foldwise.pipelines.cross_validation import cross_validation

    started = time.perf_counter()
    data, schema, _, spec, configs = _validated_search(args, use_grid=False)
    workspace, destination = _workspace_and_destination(args.output, "cross-validation",
                                                        "summary.json")

    plan = [f"model    {json.dumps(configs[0]['params'], sort_keys=True)}"]
    if len(configs) > 1:
        plan.append(f"baseline {json.dumps(configs[1]['params'], sort_keys=True)}")
    _describe_plan(data, schema, plan, workspace)
    total = 4 + 2 * args.folds + _train_tasks(configs, args)
    outputs = _run(cross_validation, {**_pipeline_arguments(args, data), "model_spec": spec},
                   workspace / "pipeline", workspace / "pipeline.log", _Progress(total))
    if outputs is None:
        return EXIT_STEP_FAILED
    # Each file appears whole (temporary name, then rename); summary.json, written last,
    # marks a finished run.
    for source, name in [("cv_results", "cv_results.csv"), ("folds", "folds.csv"),
                         ("summary", "summary.json")]:
        storage.upload(Path(outputs[source].path), storage.join(destination, name))
    summary = json.loads(Path(outputs["summary"].path).read_text(encoding="utf-8"))
    print(format_results(Path(outputs["cv_results"].path), summary))
    run_files = "pipeline/ (every step's artifacts), pipeline.log"
    if destination == str(workspace):
        print(f"\nwrote {destination}/: cv_results.csv, folds.csv, summary.json, {run_files}"
              f"  [{time.perf_counter() - started:.1f} s]")
    else:
        print(f"\nwrote {destination}/: cv_results.csv, folds.csv, summary.json")
        print(f"run   {workspace}/: {run_files}  [{time.perf_counter() - started:.1f} s]")
    return 0


def _workspace_and_destination(output: str | None, pipeline: str,
                               marker: str) -> tuple[Path, str]:
    """The local folder the run works in, and where results go (the same, or gs://).

    A bucket destination holding ``marker`` (the file written last) is refused.
    """
    from foldwise.components import storage

    if output and storage.is_gcs(output):
        destination = output.rstrip("/")
        if storage.exists(storage.join(destination, marker)):
            raise FoldwiseError(
                f"{destination} already holds finished results ({marker}): choose another "
                "--output (results are never written over)")
        return _prepare_output(None, pipeline), destination
    workspace = _prepare_output(Path(output) if output else None, pipeline)
    return workspace, str(workspace)


def grid_from_args(args: argparse.Namespace) -> list[dict]:
    """The grid file's mappings, completed with the command line's model options.

    An option given on the command line is fixed for every mapping that does not vary it.
    """
    from foldwise.components.core.grid import load_grid

    fixed = model_spec_from_args(args)
    return [{**{key: [value] for key, value in fixed.items()}, **part}
            for part in load_grid(args.grid)]


def run_grid_search(args: argparse.Namespace) -> int:
    """Validate data and grid, run the grid search on kfp.local, print the ranking."""
    from foldwise.components import storage
    from foldwise.pipelines.grid_search import grid_search

    started = time.perf_counter()
    data, schema, grid, _, configs = _validated_search(args, use_grid=True)
    workspace, destination = _workspace_and_destination(args.output, "grid-search",
                                                        storage.MANIFEST)

    trials = len(configs) * args.folds
    _describe_plan(data, schema, [
        f"grid     {len(configs)} configurations × {args.folds} folds = {trials} trials",
        f"export   {destination}"], workspace)
    total = 7 + 2 * args.folds + _train_tasks(configs, args)
    outputs = _run(grid_search, {**_pipeline_arguments(args, data), "param_grid": grid,
                                 "destination": destination},
                   workspace / "pipeline", workspace / "pipeline.log",
                   _Progress(total, show_config=True))
    if outputs is None:
        return EXIT_STEP_FAILED
    summary = json.loads(Path(outputs["summary"].path).read_text(encoding="utf-8"))
    print(format_grid_results(Path(outputs["cv_results"].path), summary))
    print(f"\nbest     {summary['best_config_id']}: "
          f"{json.dumps(summary['best_params'], sort_keys=True)}")
    print(f"wrote    {destination}/: model/ (model.keras, savedmodel/), cv_results.csv, "
          f"best_params.json, summary.json, folds.csv, report.html, manifest.json")
    if destination != str(workspace):
        print(f"run      {workspace}/: pipeline/ (every step's artifacts), pipeline.log")
    print(f"predict  foldwise predict --model {storage.join(destination, 'model')} "
          f"--data TABLE --output predictions.csv  [{time.perf_counter() - started:.1f} s]")
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    """Run the retrain pipeline on kfp.local and print the decision."""
    from foldwise.pipelines.retrain import retrain

    started = time.perf_counter()
    data, schema, grid, spec, configs = _validated_search(args, use_grid=True)
    workspace = _prepare_output(args.workspace, "retrain")
    promote_to = args.promote_to.rstrip("/")
    _describe_plan(data, schema, [
        f"search   {len(configs)} configurations (+ the promoted one, if any) × {args.folds} "
        "folds", f"promote  {promote_to}"], workspace)
    # How many trials the promoted configuration adds is only known when the run reads it.
    outputs = _run(retrain, {**_pipeline_arguments(args, data), "param_grid": grid,
                             "model_spec": spec, "promote_to": promote_to},
                   workspace / "pipeline", workspace / "pipeline.log",
                   _Progress(None, show_config=True))
    if outputs is None:
        return EXIT_STEP_FAILED
    decision = json.loads(outputs["Output"])
    verb = "promoted" if decision["promote"] else "kept"
    print(f"{verb} {decision['version']} ({decision['config_id']}): {decision['reason']}")
    print(f"served   {promote_to}/current.json -> {decision['version']}  "
          f"[{time.perf_counter() - started:.1f} s]")
    return 0


def predict(args: argparse.Namespace) -> int:
    """Predict a table's rows with an exported model; write a CSV (path or gs://)."""
    from foldwise.components import storage
    from foldwise.components.core.promotion import POINTER
    from foldwise.components.core.table import read_table

    model = args.model.rstrip("/")
    pointer_uri = storage.join(model, POINTER)
    if storage.exists(pointer_uri):  # a promotion folder: serve its current version
        model = storage.join(model, json.loads(storage.read_bytes(pointer_uri))["version"],
                             "model")
    with tempfile.TemporaryDirectory(prefix="foldwise-") as folder:
        model_dir = Path(folder) / "model"
        if storage.is_gcs(model):
            storage.download_folder(model, model_dir)
        elif Path(model).is_dir():
            model_dir = Path(model)
        else:
            raise FoldwiseError(f"model folder {args.model} does not exist: give the 'model' "
                                "folder of a grid-search export")
        with storage.local_copy(args.data) as local:
            table = read_table(local)
        result = predict_table(model_dir, table)
        target = Path(folder) / "predictions.csv"
        result.to_csv(target, index=False)
        storage.upload(target, args.output)
    print(f"wrote {len(result)} predictions to {args.output}")
    return 0


def predict_table(model_dir: Path, table):
    """Predictions of an exported model folder for a raw table, one line per row."""
    for name in ("model.keras", "preprocessing.json", "schema.json"):
        if not (model_dir / name).is_file():
            raise FoldwiseError(
                f"{model_dir} is not a foldwise model folder (no {name}): give the 'model' "
                "folder of a grid-search export")
    with _quiet_stderr():  # TensorFlow writes start-up chatter straight to file descriptor 2
        import keras

        from foldwise.components.core.serving import prediction_table, serving_inputs

    state = json.loads((model_dir / "preprocessing.json").read_text(encoding="utf-8"))
    schema = json.loads((model_dir / "schema.json").read_text(encoding="utf-8"))
    model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    values = model.predict(serving_inputs(table, state), batch_size=4096, verbose=0)
    result = prediction_table(values, schema)
    result.insert(0, "row", range(len(table)))
    return result


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null for a moment (Python errors still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _prepare_output(output: Path | None, pipeline: str) -> Path:
    if output is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        output = RUNS_FOLDER / f"{pipeline}-{stamp}"
        suffix = 1
        while output.exists():
            suffix += 1
            output = RUNS_FOLDER / f"{pipeline}-{stamp}-{suffix}"
    output = output.expanduser().resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FoldwiseError(
            f"output folder {output} already exists and is not empty: choose another --output "
            "(results are never written over)")
    output.mkdir(parents=True, exist_ok=True)
    return output


def _describe_plan(data: str, schema: dict, extra: list[str], output: Path) -> None:
    dropped = len(schema["rows_dropped_missing_target"])
    lines = [
        f"data     {data.rsplit('/', 1)[-1]}: {schema['rows_used']} rows used"
        + (f", {dropped} dropped (missing target)" if dropped else ""),
        f"task     {schema['task']} ({schema['task_reason']})"
        + (f", classes {schema['classes']}" if schema["classes"] else ""),
        f"features {len(schema['numeric'])} numeric, {len(schema['categorical'])} categorical",
        f"folds    {schema['folds']} ({schema['fold_strategy']}, seed {schema['seed']})",
        *extra,
        f"output   {output}",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


class _Progress:
    """One line per finished step on stderr: ``[ 4/17] scale fold 1  0.7 s``.

    With ``total=None`` (not known before the run) the count stands alone: ``[ 4]``.
    """

    def __init__(self, total: int | None, show_config: bool = False) -> None:
        self.total, self.done, self.show_config = total, 0, show_config

    def __call__(self, event) -> None:
        if event.status is None:
            return
        self.done += 1
        where = f" {event.config_id}" if event.config_id and self.show_config else ""
        if event.folds:
            where += (f" fold {event.folds[0]}" if len(event.folds) == 1 else
                      f" folds {event.folds[0]}-{event.folds[-1]}")
        mark = "" if event.status == "SUCCESS" else f"  {event.status}"
        width = len(str(self.total or 99))
        count = f"{self.done:>{width}}" + (f"/{self.total}" if self.total else "")
        label = f"{event.name}{where}"
        print(f"[{count}] {label:<{22 + 15 * self.show_config}} "
              f"{event.seconds:6.1f} s{mark}", file=sys.stderr, flush=True)


def format_results(cv_results_path: Path, summary: dict) -> str:
    """Per-fold scores and mean ± std of the (best) configuration as a text table."""
    import pandas as pd

    table = pd.read_csv(cv_results_path)
    best = table.set_index("config_id").loc[summary["best_config_id"]]
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
    baseline = summary.get("best_baseline")
    if baseline:
        scoring = summary["scoring"]
        lines.append(f"\nbaseline: scikit-learn MLP {scoring} {baseline['mean']:.4f} ± "
                     f"{baseline['std']:.4f} on the same folds (Keras "
                     f"{best[f'mean_test_{scoring}']:.4f} ± {best[f'std_test_{scoring}']:.4f})")
    return "\n".join(lines)


def format_grid_results(cv_results_path: Path, summary: dict) -> str:
    """Every configuration ranked by the scoring metric, with what differs between them."""
    import pandas as pd

    scoring = summary["scoring"]
    table = pd.read_csv(cv_results_path).sort_values(f"rank_test_{scoring}", kind="stable")
    params = [json.loads(p) for p in table["params"]]
    varying = sorted({k for p in params for k in p if any(q.get(k) != p.get(k) for q in params)})
    lines = ["", f"{'rank':<5}{'config':<16}{scoring + ' mean ± std':>26}  "
             + "  ".join(varying)]
    for (_, row), values in zip(table.iterrows(), params, strict=True):
        score = f"{row[f'mean_test_{scoring}']:.4f} ± {row[f'std_test_{scoring}']:.4f}"
        lines.append(f"{row[f'rank_test_{scoring}']:<5}{row['config_id']:<16}{score:>26}  "
                     + "  ".join(json.dumps(values.get(k)) for k in varying))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
