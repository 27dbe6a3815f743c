"""The ``foldwise`` command line: a thin shell over :mod:`foldwise.pipelines.runs`.

Exit status: 0 on success, 2 for an error the user caused (one ``error:`` line on stderr, no
traceback), 1 when a pipeline step failed for another reason (its error and the log's path are
printed); anything else is a bug. Every option comes from the option table
(:mod:`foldwise.components.core.options`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError, one_line
from foldwise.pipelines import kinds
from foldwise.pipelines.containers import RUNNERS

EXIT_USER_ERROR = 2
EXIT_STEP_FAILED = 1
GROUP_TITLES = {options.DATA: "data", options.FOLDS: "folds and preprocessing",
                options.BUILDER: "your own model",
                options.MODEL: "model options (fixed for every configuration a grid leaves "
                "open)", options.SEARCH: "search", options.CLUSTER: "cluster",
                options.SERVICE: "service (--host, or --vertex-project and --vertex-region)"}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``error:`` line and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse's hook
        raise FoldwiseError(f"{message} (see '{self.prog} --help')")


def _value_type(opt: options.Option):
    def parse(text: str):  # argparse reports ArgumentTypeError as "argument --flag: ..."
        try:
            return options.parse_text(opt, text)
        except FoldwiseError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def _add_options(parser: argparse.ArgumentParser, *groups: str, required=(),
                 only: tuple[str, ...] | None = None) -> None:
    """Add every command-line option of ``groups`` (of ``only``), as the table declares it."""
    for name in groups:
        group = parser.add_argument_group(GROUP_TITLES[name])
        if name == options.DATA:
            group.add_argument("--data", required=True,
                               help="CSV or Parquet table (path or gs://)")
        for opt in options.group(name):
            if not opt.on_command_line or (only is not None and opt.name not in only):
                continue
            text = opt.help
            shown = opt.default if opt.group == options.MODEL else opt.given_default
            if shown not in (None, "", [], ()) and "(default" not in text:
                text += f" (default {options.format_value(shown)})"
            if opt.kind == "flag":
                group.add_argument(opt.flag, action="store_true", default=None, help=text)
                continue
            group.add_argument(opt.flag, type=_value_type(opt), choices=opt.choices,
                               default=opt.given_default, metavar=opt.metavar, help=text,
                               required=opt.name in required or opt.name == "target")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = _Parser(prog="foldwise", description=(
        "Leakage-free K-fold cross-validation and hyperparameter search of Keras models on "
        "tables, as Kubeflow Pipelines: run here, compile, submit or schedule on a cluster, "
        "predict with the exported model."))
    parser.add_argument("--version", action="version", version=f"foldwise {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="run a pipeline on this machine (kfp.local)")
    pipelines = run.add_subparsers(dest="pipeline", required=True, parser_class=_Parser)
    for name in kinds.names():
        kind = kinds.get(name)
        command = pipelines.add_parser(name, help=kind.summary, description=kind.description)
        _add_options(command, options.DATA, options.FOLDS, options.BUILDER, options.MODEL)
        if kind.options:
            _add_options(command, options.SEARCH, only=kind.options)
        if kind.candidates:
            command.add_argument("--grid", type=Path, required=kind.needs_candidates,
                                 help="YAML file: parameter -> list of values, or a list of "
                                 "such mappings" + (kinds.DISTRIBUTIONS if kinds.SPACE
                                                    in kind.candidates else ""))
        if kind.promotes:
            command.add_argument("--promote-to", required=True,
                                 help="folder or gs:// prefix holding versions/ and "
                                 "current.json")
            command.add_argument("--workspace", help="folder for the run's artifacts "
                                 "(default: a new folder under ./foldwise-runs/)")
        else:
            command.add_argument("--output", help="results folder or gs:// prefix (default: "
                                 "a new folder under ./foldwise-runs/)")
            command.add_argument("--resume", metavar="DIR",
                                 help="continue an interrupted or failed run of the same search "
                                 "in its folder DIR: trials it finished are taken over, not "
                                 "trained again")
        command.add_argument("--runner", choices=RUNNERS, default="subprocess",
                             help="subprocess: each step a process of this Python (default); "
                             "container: each step in a container of foldwise's image, as a "
                             "cluster runs it, through the Docker-API engine DOCKER_HOST names")
        command.add_argument("--image", dest="container_image", metavar="IMAGE",
                             help="--runner container: the image (default: what 'make image' "
                             "builds, foldwise:VERSION-cpu)")

    searches = ", ".join(n for n in kinds.names() if kinds.get(n).candidates)
    staged = [n for n in kinds.names() if kinds.get(n).staged]
    exported = ", ".join(n for n in kinds.names() if not kinds.get(n).promotes)
    promoting = ", ".join(n for n in kinds.names() if kinds.get(n).promotes)
    compile_ = commands.add_parser(
        "compile", help="compile a pipeline (or every component) to YAML for a cluster",
        description="Compile a pipeline to the YAML that Kubeflow Pipelines and Vertex AI "
        "Pipelines run, with the image, resources, accelerators, retries and caching of every "
        "step; or every component to its own YAML file.")
    compile_.add_argument("what", choices=[*kinds.names(), "components"],
                          help="a pipeline, or 'components'")
    _add_options(compile_, options.CLUSTER)
    compile_.add_argument("--out", required=True, type=Path,
                          help="YAML file (a folder for 'components')")
    compile_.add_argument("--rungs", type=int, default=None,
                          help=f"{', '.join(staged)}: the rungs of the DAG (a run tells how "
                          "many its search needs; default 2)")

    for verb, summary in [("submit", "start a run on Kubeflow Pipelines or Vertex AI"),
                          ("schedule", "schedule recurring runs on Kubeflow Pipelines or "
                           "Vertex AI")]:
        command = commands.add_parser(
            verb, help=summary,
            description=f"Compile a pipeline and {summary} through the service's client "
            "library. Data, grid and model options are validated here first.")
        command.add_argument("pipeline", choices=kinds.names())
        _add_options(command, options.SERVICE, required=("pipeline_root",))
        if verb == "schedule":
            command.add_argument("--cron", required=True, help="when, e.g. '0 0 3 * * *' "
                                 "(SEC MIN HOUR DAY MONTH WEEKDAY)")
        _add_options(command, options.DATA, options.FOLDS, options.BUILDER, options.MODEL,
                     options.CLUSTER)
        _add_options(command, options.SEARCH)
        command.add_argument("--grid", type=Path, help=f"grid or space YAML ({searches})")
        command.add_argument("--output", help=f"gs:// prefix for the results ({exported})")
        command.add_argument("--promote-to", help=f"gs:// prefix {promoting} promotes to")

    plan = commands.add_parser(
        "plan", help="show the tasks a run would create and estimate its time, here and on a "
        "cluster", description="Check a search as 'run' does, then show for each packing "
        "the train tasks it would create, the models each trains, and an estimate of the "
        "wall time on this machine (kfp.local) and on a cluster of --nodes nodes, with the "
        "node-hours it occupies; from the per-step costs measured with the benchmarks.")
    plan.add_argument("pipeline", choices=kinds.names())
    _add_options(plan, options.DATA, options.FOLDS, options.BUILDER, options.MODEL)
    _add_options(plan, options.SEARCH)
    plan.add_argument("--grid", type=Path, help=f"grid or space YAML ({searches})")
    plan.add_argument("--promote-to", help=f"{promoting}: folder or gs:// prefix of the "
                      "promoted model (its configuration is cross-validated too)")
    plan.add_argument("--nodes", type=int, default=1,
                      help="cluster nodes, each running one train pod at a time (default 1)")
    plan.add_argument("--accelerator", default="cpu",
                      help="the nodes' accelerator, for its measured training speed "
                      "(default cpu: as fast as the reference machine)")
    plan.add_argument("--node-speedup", type=float, default=None, metavar="FACTOR",
                      help="how many times faster a node trains than the reference machine "
                      "(instead of --accelerator's measurement)")
    plan.add_argument("--pod-start", type=float, default=None, metavar="SECONDS",
                      help="seconds a pod takes to start on the cluster (default 30)")

    predict = commands.add_parser(
        "predict", help="predict with an exported model",
        description="Predict rows of a table with a model exported by a grid search.")
    predict.add_argument("--model", required=True, help="an export folder or its model/ "
                         "folder (path or gs://), or a retrain's --promote-to folder (its "
                         "current version is used)")
    predict.add_argument("--data", required=True, help="CSV or Parquet table (path or gs://)")
    predict.add_argument("--output", required=True, help="file to write (path or gs://): "
                         "CSV for .csv (or .csv.gz), Parquet for .parquet or .pq")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace --output if it exists (it is never replaced otherwise)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``foldwise`` console script."""
    from foldwise.pipelines.engine import PipelineFailed

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    try:
        args = build_parser().parse_args(argv)
        command = {"predict": predict_command, "compile": compile_command, "run": run_command,
                   "submit": submit_command, "schedule": submit_command,
                   "plan": plan_command}[args.command]
        return command(args)
    except FoldwiseError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except PipelineFailed as err:
        print(f"error: {one_line(err)}; full log: {err.log_path}", file=sys.stderr)
        return EXIT_STEP_FAILED
    except KeyboardInterrupt as err:
        workspace = getattr(err, "workspace", None)
        print("error: interrupted" + (f"; every step was stopped and nothing was published; "
                                      f"the partial run is in {workspace}" if workspace else ""),
              file=sys.stderr)
        return 130
    except Exception as err:  # never a traceback on the terminal: it goes to a log file
        return _unexpected(err)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("foldwise")
    except PackageNotFoundError:
        return "unknown"


def _unexpected(err: Exception) -> int:
    """Report an error of the environment or a bug in one line; the traceback to a log file.

    Environment (exit 1): a file or folder that cannot be read or written (no permission, disk
    full) or a storage service that cannot be reached. Anything else is foldwise's bug (exit 1).
    """
    import time
    import traceback

    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = Path(tempfile.gettempdir()) / f"foldwise-error-{stamp}-{os.getpid()}.log"
    try:
        log.write_text("".join(traceback.format_exception(err)), encoding="utf-8")
        where = f"full log: {log}"
    except OSError:
        where = "no log could be written"
    text = one_line(err)[:300]
    from foldwise.pipelines.submit import ServiceUnreachable

    if isinstance(err, ServiceUnreachable):  # names the service, not the bucket
        print(f"error: {err}; {where}", file=sys.stderr)
    elif isinstance(err, OSError):
        name = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"error: the system refused an operation{name}: {err.strerror or text}; check "
              f"permissions and free space; {where}", file=sys.stderr)
    elif type(err).__module__.startswith(("google.", "requests", "urllib3")):
        print(f"error: the storage service could not be reached ({type(err).__name__}: "
              f"{text}); check the bucket's name, credentials and network; {where}",
              file=sys.stderr)
    else:
        print(f"error: foldwise failed unexpectedly ({type(err).__name__}: {text}); this is a "
              f"bug, please report it with the log; {where}", file=sys.stderr)
    return EXIT_STEP_FAILED


def search_from_args(args: argparse.Namespace):
    """The :class:`runs.Search` a parsed command line asks for."""
    from foldwise.components.core.search.grid import load_grid, read_yaml
    from foldwise.components.core.search.sampling import has_distributions
    from foldwise.pipelines.runs import Search

    kind = kinds.get(args.pipeline)
    path = getattr(args, "grid", None)
    grid, space = [], []
    if path and kinds.SPACE in kind.candidates:
        space = kind.read_space(read_yaml(path), f"grid file {path}")
        if kinds.GRID in kind.candidates and not has_distributions(space):
            grid, space = load_grid(path, builder=args.model is not None), []
    elif path:
        grid = load_grid(path, builder=args.model is not None)
    output = getattr(args, "workspace", None) if kind.promotes else args.output
    return Search.from_values(args.pipeline, args.data, vars(args), grid=grid,
                              distributions=space, output=output,
                              promote_to=getattr(args, "promote_to", None),
                              resume=getattr(args, "resume", None),
                              runner=getattr(args, "runner", "subprocess"),
                              image=getattr(args, "container_image", None))


def run_command(args: argparse.Namespace) -> int:
    """``foldwise run PIPELINE``: plan, run on kfp.local, print the results."""
    from foldwise.pipelines import display, runs

    search = search_from_args(args)
    progress = display.Progress(None,
                                show_config=bool(kinds.get(search.pipeline).candidates))

    def on_plan(plan, workspace, destination) -> None:
        display.describe_plan(plan, workspace, destination)
        progress.total = plan.tasks

    display.print_result(runs.run_local(search, progress, on_plan))
    return 0


def plan_command(args: argparse.Namespace) -> int:
    """``foldwise plan PIPELINE``: check the search, print its tasks and estimates."""
    from foldwise.pipelines import display, runs

    args.output = None
    search = search_from_args(args)
    found = runs.estimates(search, args.nodes, args.accelerator, args.pod_start,
                           args.node_speedup)
    display.print_estimates(search, found, args.nodes, args.accelerator, args.pod_start)
    return 0


def compile_command(args: argparse.Namespace) -> int:
    """``foldwise compile``: a pipeline's YAML, or one YAML per component."""
    from foldwise.components.image import IMAGE
    from foldwise.pipelines import packaging, runs

    if args.what == "components":
        written = packaging.compile_components(args.out, args.image)
        print(f"wrote {len(written)} components to {args.out}/: "
              f"{', '.join(p.name for p in written)}")
    else:
        settings = runs.cluster_settings(vars(args))
        packaging.compile_pipeline(args.what, settings, args.out, args.rungs)
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
    from foldwise.pipelines import runs

    values = vars(args)
    result = runs.submit(search_from_args(args),
                         {name: values.get(name) for name in options.names(options.SERVICE)},
                         values, cron=values.get("cron"))
    print(f"{result.kind} {result.id}" + (f": {result.url}" if result.url else ""))
    return 0


def predict_command(args: argparse.Namespace) -> int:
    """Predict a table's rows with an exported model; write CSV or Parquet (path or gs://).

    The output's name says its format; an existing output is replaced only with --overwrite.
    """
    from foldwise.components import storage
    from foldwise.components.core.data.table import read_table
    from foldwise.pipelines.models import load_model

    name = args.output.rstrip("/").rsplit("/", 1)[-1].lower()
    formats = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
    written = next((kind for suffix, kind in formats.items() if name.endswith(suffix)), None)
    if args.output.endswith("/") or (not storage.is_gcs(args.output)
                                      and Path(args.output).is_dir()):
        raise FoldwiseError(f"--output {args.output} is a folder: give the file to write, "
                            f"such as {args.output.rstrip('/')}/predictions.csv")
    if written is None:
        raise FoldwiseError(f"--output {args.output} names no format foldwise writes: end it "
                            "in .csv (or .csv.gz) or .parquet")
    if not args.overwrite and storage.exists(args.output):
        raise FoldwiseError(f"--output {args.output} exists: choose another name, or pass "
                            "--overwrite to replace it")
    model = load_model(args.model)
    with storage.local_copy(args.data) as local:
        table = read_table(local)
    result = model.prediction_table(table)
    with tempfile.TemporaryDirectory(prefix="foldwise-") as folder:
        target = Path(folder) / name
        if written == "parquet":
            result.to_parquet(target, index=False)
        else:
            result.to_csv(target, index=False)
        storage.upload(target, args.output)
    print(f"wrote {len(result)} predictions to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
