"""The application layer: validate → plan → run on kfp.local (or compile and submit) → results.

The command line, the Python API, the tests and the benchmarks all go through here: a
:class:`Search` says what a user asks for; :func:`plan` checks all of it (the table is read
and preprocessed here, so every data error comes before any step runs) and builds the
pipeline's arguments; :func:`run_local` runs the pipeline on the embedded engine, where the
pipeline itself publishes the results; :func:`submit` sends the same pipeline to a cluster.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from foldwise.components.core import options
from foldwise.components.core.errors import FoldwiseError
from foldwise.components.core.jsonio import class_count
from foldwise.pipelines import containers, kinds

RUNS_FOLDER = Path("foldwise-runs")


@dataclass
class Search:
    """What a user asks to run.

    Attributes:
        pipeline: The search kind's name (:mod:`foldwise.pipelines.kinds`).
        data: Path or ``gs://`` URI of the CSV or Parquet table.
        run: The run options of :data:`options.RUN` (``target`` required; missing ones take
            the table's default; ``packing`` ``None`` lets the engine decide).
        model_spec: Model options fixed for every configuration (only those given; a
            user's builder travels here).
        grid: The ``param_grid`` (mappings of parameter → list of values), ``[]`` for one
            configuration.
        output: Results folder or ``gs://`` prefix (default: a new folder under
            ``./foldwise-runs/``); for retrain, its local run folder.
        promote_to: Folder or ``gs://`` prefix a retrain promotes to.
        table: The table itself (a DataFrame, from Python) instead of ``data``: it is
            written into the run folder as ``data.parquet`` for the steps to read.
        resume: The folder of an earlier run of the same search that did not finish: the
            run continues there, taking over every trial it finished (``core.training.resume``).
        distributions: A random (or halving-random) search's space (``core.search.sampling``).
        choice: The kind's search options (``Kind.options``) by name.
        runner: ``subprocess`` (each step a process of this interpreter) or ``container``
            (each step in a container of ``image``, as a cluster runs it:
            :mod:`foldwise.pipelines.containers`).
        image: The container runner's image (default: the one the components name).
    """

    pipeline: str
    data: str
    run: dict
    model_spec: dict = field(default_factory=dict)
    grid: list = field(default_factory=list)
    output: str | None = None
    promote_to: str | None = None
    table: object = None
    resume: str | None = None
    distributions: list = field(default_factory=list)
    choice: dict = field(default_factory=dict)
    runner: str = "subprocess"
    image: str | None = None

    @classmethod
    def from_values(cls, pipeline: str, data: str, values: dict, **kwargs) -> Search:
        """A search from option values by name (a parsed command line, Python keywords).

        Values are checked against the option table; ``None`` means "not given".
        """
        run = {}
        for name in options.RUN:
            opt = options.option(name)
            value = options.check_value(opt, values.get(name))
            run[name] = opt.given_default if value is None else value
        model_spec = {}
        for opt in options.group(options.MODEL):
            value = options.check_value(opt, values.get(opt.name))
            if value is not None:
                model_spec[opt.name] = value
        if values.get("model") is not None:  # a model of the user's own
            from foldwise.components.core.models.builder_code import builder_reference
            from foldwise.pipelines.models import quiet_stderr

            with quiet_stderr():  # its module may import TensorFlow, which chatters
                reference = builder_reference(values["model"])
            from foldwise.components.core.models.estimators import named

            (user,) = named("user")
            model_spec = {"estimator": user, "builder": reference, **model_spec}
        choice = {}
        for name in kinds.get(pipeline).options:
            opt, value = options.option(name), values.get(name)
            if name == "min_resources" and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)  # a number of folds, or 'smallest' / 'exhaust'
            value = options.check_value(opt, value)
            choice[name] = opt.default if value is None else value
        return cls(pipeline, str(data), run, model_spec, choice=choice, **kwargs)


@dataclass
class Plan:
    """A validated search: what the pipeline will be given and what it will do."""

    search: Search
    data: str
    schema: dict
    configs: list[dict]
    arguments: dict
    tasks: int
    pipeline: object  # the @dsl.pipeline that will run (built for this machine)
    table_bytes: bytes | None = None  # the in-memory table, as the steps will read it
    rungs: int | None = None  # a halving search's rungs (its pipeline is built with them)
    n_features: int = 0  # with count_features: numeric columns plus one-hot indicators
    image_user: str | None = None  # the container runner's image's user (as its config says)
    table_sha256: str = ""  # the table's bytes, as the run reads them
    warm_root: Path | None = None  # a warm start's earlier pipeline folder, its trials there


@dataclass
class Result:
    """A finished local run."""

    plan: Plan
    workspace: Path
    destination: str
    outputs: dict
    summary: dict | None
    cv_results: Path | None
    step_seconds: dict[str, float]
    seconds: float

    @property
    def decision(self) -> dict | None:
        """A retrain's decision (promote, version, reason), else ``None``."""
        if not kinds.get(self.plan.search.pipeline).promotes:
            return None
        return json.loads(self.outputs["decision"])


def pipeline_function(name: str, settings=None, rungs: int | None = None):
    """The ``@dsl.pipeline`` of ``name``, built for ``settings`` (default: this machine)."""
    from foldwise.pipelines.dags.cluster import LOCAL

    return kinds.get(name).build(settings or LOCAL, rungs)


def checked_objectives(search: Search, scoring: str, names: tuple[str, ...],
                       task: str) -> tuple[str, str]:
    """The run's objectives and scoring, checked: ``("r2,latency", "r2")``.

    A score named in ``--objectives`` is the run's scoring when ``--scoring`` is not given;
    a ``pareto:<cost>`` refit adds its cost to the objectives (it is measured, and the
    front is drawn). Empty objectives stay empty.

    Raises:
        FoldwiseError: As ``core.scoring.pareto.parse``.
    """
    from foldwise.components.core.scoring import metrics, pareto

    text = str(search.run.get("objectives") or "")
    named = [name.strip() for name in text.split(",") if name.strip() in names]
    scoring = scoring or (named[0] if named else "")
    resolved = scoring or metrics.default_scoring(task)
    wanted = pareto.parse(text, resolved, names)
    costs = pareto.measured(wanted, str(search.choice.get("refit") or "best"))
    if not costs:
        return "", scoring
    return ",".join([wanted.score, *costs]), scoring


def nested_run(search: Search, kind) -> dict:
    """The preprocess options of a run: its run options, and a nested kind's outer folds."""
    if "outer_folds" not in kind.options:
        return search.run
    return {**search.run, "outer_folds": search.choice["outer_folds"]}


def plan(search: Search, local: bool = True, count_features: bool = False) -> Plan:
    """Check everything a run needs before any step runs, and build the pipeline's arguments.

    Args:
        search: What the user asks for.
        local: Whether the run goes to the embedded engine (its own default packing).
        count_features: Count the model-ready columns (``Plan.n_features``: a pass over
            every categorical column, which only estimates need).

    Raises:
        FoldwiseError: Anything the user can fix: the table, the grid, a model option, the
            scoring, the champion (the message names it).
    """
    from foldwise.components import storage
    from foldwise.components.core.data.preprocess import preprocess, preprocess_options
    from foldwise.components.core.data.table import file_sha256, read_table
    from foldwise.components.core.scoring import metrics
    from foldwise.components.core.search.grid import candidates
    kind = kinds.get(search.pipeline)
    table_bytes = None
    if search.table is not None:
        data, table_bytes = "", parquet_bytes(search.table)
        table_sha256 = hashlib.sha256(table_bytes).hexdigest()
        prepared, schema = preprocess(read_table_bytes(table_bytes),
                                      preprocess_options(nested_run(search, kind)))
    else:
        data = search.data if storage.is_gcs(search.data) else str(
            Path(search.data).expanduser().resolve())
        with storage.local_copy(data) as local_data:
            prepared, schema = preprocess(read_table(local_data),
                                          preprocess_options(nested_run(search, kind)))
            table_sha256 = file_sha256(local_data)  # once it is known to be a table
    task, n_classes = schema["task"], class_count(schema)
    promoted = champion(search.promote_to) if kind.promotes else []
    grid = search.grid if kinds.GRID in kind.candidates else []
    space = search.distributions if kinds.SPACE in kind.candidates else []
    if kind.needs_candidates and not (grid or space):
        raise FoldwiseError(f"{kind.name} needs --grid: a YAML file of parameter → list of "
                            "values" + (" or distribution, e.g. learning_rate: {loguniform: "
                                        "[1.0e-4, 1.0e-1]}" if kinds.SPACE in kind.candidates
                                        else ""))
    n_iter, settings = kind.size(search, grid, space, schema["folds"])
    if kind.first_points is not None:  # the configurations its run asks first
        from foldwise.components.core.search.sampling import points_as_grid

        grid = points_as_grid(kind.first_points(settings, space, search.run["seed"]))
    configs = candidates(grid, search.model_spec, task, n_classes, champion=promoted,
                         baseline=search.run["baseline"],
                         distributions=[] if kind.first_points else space, n_iter=n_iter,
                         seed=search.run["seed"])
    from foldwise.components.core.models.estimators import role_of

    if role_of(search.model_spec) == "user":  # what only building it shows
        from foldwise.components.core.models.builder_checks import check_configs
        from foldwise.pipelines.models import quiet_stderr

        with quiet_stderr():
            check_configs(configs, prepared, schema, search.run["scaler"],
                          search.run["seed"], search.model_spec["builder"])
    scoring = search.run["scoring"]
    names = metrics.metric_names(task, n_classes)
    if scoring and scoring not in names:
        raise FoldwiseError(f"--scoring {scoring!r} is not reported for {task}; use one of "
                            f"{', '.join(names)}")
    objectives, scoring = checked_objectives(search, scoring, names, task)
    packing = search.run["packing"] or (options.LOCAL_DEFAULTS["packing"] if local
                                        else options.option("packing").default)
    arguments = {"data": data, **search.run, "packing": packing, "model_spec": search.model_spec,
                 "scoring": scoring, "objectives": objectives}
    if kinds.GRID in kind.candidates:
        arguments["param_grid"] = grid
    if kinds.SPACE in kind.candidates:
        arguments["param_distributions"] = space
    arguments.update(kind.arguments(n_iter, settings, space))
    for name in kinds.REFIT:
        if name in search.choice:
            arguments[name] = search.choice[name]
    warm_root = None
    if search.choice.get("warm_start"):
        warm_root = warm_start(kind, str(search.choice["warm_start"]), arguments, prepared,
                               schema, table_sha256, scoring or metrics.default_scoring(task))
    rungs, loops = kind.stages(settings, configs, list(range(schema["folds"])), packing)
    pipeline = pipeline_function(search.pipeline, rungs=rungs)
    tasks = task_count(pipeline, schema["folds"], loops)
    n_features = len(schema["numeric"]) + sum(
        int(prepared[column].nunique()) for column in schema["categorical"]
    ) if count_features else 0
    return Plan(search, data, schema, configs, arguments, tasks, pipeline, table_bytes, rungs,
                n_features, table_sha256=table_sha256, warm_root=warm_root)


def warm_start(kind, source: str, arguments: dict, prepared, schema: dict, table_sha256: str,
               scoring: str) -> Path | None:
    """Check an earlier run a search is warm-started from, and hand the kind its scores.

    Returns:
        The earlier run's pipeline folder when it holds its train tasks' trial records (a
        local run folder): the steps take finished trials over from there. ``None`` for an
        export alone (a ``gs://`` prefix): its scores still seed a Bayesian search.

    Raises:
        FoldwiseError: The export is missing or of another table, target, folds or seed.
    """
    from foldwise.components import storage
    from foldwise.components.core.data.folds import assignment_frame
    from foldwise.components.core.search import warm
    from foldwise.components.core.training import resume

    if not storage.is_gcs(source):
        source = str(Path(source).expanduser().resolve())
        if not Path(source).is_dir():
            raise FoldwiseError(f"--warm-start {source} is not a folder: give the folder (or "
                                "gs:// prefix) an earlier foldwise run exported its results to")
    earlier = warm.read(source, storage.read_bytes, storage.exists)
    folds = assignment_frame(prepared)
    warm.check_same(source, earlier, schema, folds, table_sha256)
    root = None if storage.is_gcs(source) else Path(source) / "pipeline"
    take_over = root is not None and bool(resume.records(root))
    if kind.warm_arguments is not None:
        kind.warm_arguments(arguments, warm.told(earlier, scoring), take_over)
    return root if take_over else None


def estimates(search: Search, nodes: int = 1, accelerator: str = "cpu",
              pod_start: float | None = None, speedup: float | None = None) -> list:
    """Check a search as :func:`plan` does and estimate it under every packing.

    Returns:
        One :class:`~foldwise.components.core.search.costs.Estimate` per packing (``none``,
        ``folds``, ``configs``), from the measured costs in ``core.search.costs`` and the grid's
        arithmetic. A halving search is estimated as its full grid (an upper bound).

    Raises:
        FoldwiseError: What :func:`plan` raises; nodes below 1; an unknown accelerator.
    """
    from foldwise.components.core.search import costs
    from foldwise.components.core.search.packing import PACKINGS

    if int(nodes) < 1:
        raise FoldwiseError(f"--nodes must be at least 1, got {nodes}")
    if speedup is not None and not float(speedup) > 0:
        raise FoldwiseError(f"--node-speedup must be a positive factor, got {speedup}")
    if pod_start is not None and not float(pod_start) >= 0:
        raise FoldwiseError(f"--pod-start must be seconds (0 or more), got {pod_start}")
    if speedup is None:
        speedup = costs.node_speedup(accelerator)
    checked = plan(search, local=True, count_features=True)
    rows = int(checked.schema["rows_used"])
    kind = kinds.get(search.pipeline)
    refit = kind.exports_model
    configs = kind.estimated(checked) if kind.estimated is not None else checked.configs
    return [costs.estimate(configs, checked.schema["folds"], rows,
                           checked.n_features, packing, refit=refit, nodes=int(nodes),
                           pod_start=costs.POD_START_SECONDS if pod_start is None
                           else float(pod_start), speedup=float(speedup))
            for packing in PACKINGS]


def parquet_bytes(table) -> bytes:
    """An in-memory table as Parquet, the form the steps read.

    Raises:
        FoldwiseError: A column Parquet cannot hold (mixed types, nested objects).
    """
    import io

    buffer = io.BytesIO()
    try:
        table.to_parquet(buffer, index=False)
    except Exception as err:  # pyarrow raises ArrowTypeError, ArrowInvalid, ValueError ...
        raise FoldwiseError(f"the table cannot be stored for the pipeline's steps ({err}): "
                            "give each column one type (numbers or text)") from None
    return buffer.getvalue()


def read_table_bytes(content: bytes):
    """A Parquet table held in memory, read as :func:`core.data.table.read_table` reads files."""
    from foldwise.components.core.data.table import read_table

    with tempfile.TemporaryDirectory(prefix="foldwise-") as folder:
        path = Path(folder) / "data.parquet"
        path.write_bytes(content)
        return read_table(path)


def champion(promote_to: str | None) -> list[dict]:
    """The promoted model's configuration under ``promote_to`` (``[]`` if none yet)."""
    from foldwise.components import storage
    from foldwise.components.core.results.promotion import promoted_configuration

    if not promote_to:
        raise FoldwiseError("a retrain needs --promote-to: the folder or gs:// prefix holding "
                            "versions/ and current.json")
    return promoted_configuration(promote_to, storage.exists, storage.read_bytes)


def task_count(pipeline_func, folds: int, trials: int | dict[str, int]) -> int:
    """How many tasks a run of the pipeline executes, read from its own compiled plan.

    Each task outside a loop runs once; each task of the ``folds`` loop once per fold and of
    a ``trials`` loop once per train task (``trials``: the count, or by loop name; a
    halving search's later rungs count the most tasks they can have).
    """
    if not isinstance(trials, dict):
        trials = {"trials": trials}
    spec = pipeline_func.pipeline_spec
    total = 0
    for task in spec.root.dag.tasks.values():
        if not task.HasField("parameter_iterator"):
            total += 1
            continue
        body = spec.components[task.component_ref.name].dag.tasks
        total += len(body) * {"folds": folds, **trials}[task.task_info.name]
    return total


def run_local(search: Search, on_event: Callable | None = None,
              on_plan: Callable[[Plan, Path, str], None] | None = None) -> Result:
    """Plan the search and run it on kfp.local; the pipeline publishes to its destination.

    Args:
        search: What to run.
        on_event: Called at each task's start and end (:class:`engine.TaskEvent`).
        on_plan: Called once the plan is checked and the run folder made, before any step.

    Raises:
        FoldwiseError: A user error, found before the run or by a step.
        PipelineFailed: A step failed for another reason (its error and the log's path).
    """
    from foldwise.components import storage
    started = time.perf_counter()
    if search.runner not in containers.RUNNERS:
        raise FoldwiseError(f"runner {search.runner!r} is not one of "
                            f"{', '.join(containers.RUNNERS)}")
    image_user = None
    if search.runner == "container":  # the engine and the image, before anything is made
        search.image, image_user = containers.check_image(search.image)
    checked = plan(search, local=True)
    checked.image_user = image_user
    if kinds.get(search.pipeline).promotes:
        workspace = prepare_folder(search.output, search.pipeline)
        destination = search.promote_to.rstrip("/")
        checked.arguments["promote_to"] = destination
        return _run_claimed(search, checked, workspace, destination, None, on_event, on_plan,
                            started)
    if search.resume:
        workspace = resumable(search.resume)
        check_same_search(workspace, search_record(checked))
        destination = search.output.rstrip("/") if search.output else str(workspace)
    else:
        workspace, destination = workspace_and_destination(search.output, search.pipeline)
    checked.arguments["destination"] = destination
    try:
        token = storage.claim(destination)  # writable, and no other run's, before any step
    except FoldwiseError:
        if not search.resume and (search.output is None or storage.is_gcs(search.output)):
            shutil.rmtree(workspace, ignore_errors=True)  # made for this run
        raise
    from foldwise.components.core.training.resume import RESUME_ENV, WARM_ENV

    saved = {name: os.environ.get(name) for name in (RESUME_ENV, WARM_ENV)}
    if search.resume:  # the steps take over the trials the earlier run finished
        os.environ[RESUME_ENV] = "1"
    if checked.warm_root is not None:  # and those of the run it is warm-started from
        os.environ[WARM_ENV] = str(checked.warm_root)
    try:
        return _run_claimed(search, checked, workspace, destination, token, on_event, on_plan,
                            started)
    finally:
        storage.release(destination, token)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


SEARCH_RECORD = ".foldwise-search.json"
# What each part of a search is called in a refused resume's message.
_RECORD_PARTS = {"pipeline": "the pipeline", "table_sha256": "the table",
                 "model_spec": "the model options", "grid": "the grid",
                 "distributions": "the space", "choice": "the search options"}


def search_record(checked: Plan) -> dict:
    """What a resumed run must share with the run it continues: table, target and options.

    Kept in the run folder (:data:`SEARCH_RECORD`) when a run starts; a builder is recorded
    by its reference and digest, not its source.
    """
    search = checked.search
    model_spec = dict(search.model_spec)
    if isinstance(model_spec.get("builder"), dict):
        model_spec["builder"] = {k: v for k, v in model_spec["builder"].items()
                                 if k != "source"}
    record = {"pipeline": search.pipeline, "table_sha256": checked.table_sha256,
              "options": search.run, "model_spec": model_spec, "grid": search.grid,
              "distributions": search.distributions, "choice": search.choice}
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def check_same_search(workspace: Path, record: dict) -> None:
    """Refuse to resume ``workspace`` with another search than the one it holds.

    A folder from before the record was kept is taken as it is (its trials are still matched
    one by one). Nothing in the folder is touched.

    Raises:
        FoldwiseError: The table, an option, the grid or the model options differ (named).
    """
    path = workspace / SEARCH_RECORD
    if not path.exists():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise FoldwiseError(f"--resume {workspace}: the record of its search ({SEARCH_RECORD}) "
                            "cannot be read: start a new run without --resume") from None
    differ = []
    for part, value in record.items():
        if part == "options":
            before = earlier.get("options") or {}
            differ += [options.BY_NAME[name].flag if name in options.BY_NAME else name
                       for name in sorted(set(value) | set(before))
                       if value.get(name) != before.get(name)]
        elif value != earlier.get(part):
            differ.append(_RECORD_PARTS.get(part, part))
    if differ:
        raise FoldwiseError(
            f"--resume {workspace} holds a run of another search ({', '.join(differ)} "
            f"{'differs' if len(differ) == 1 else 'differ'} from that run's): resume with the "
            "same table and options, or start a new run without --resume")


def resumable(folder: str) -> Path:
    """An earlier run's folder that a run may continue in (``--resume``).

    Raises:
        FoldwiseError: It is not a local run folder, or that run finished (its manifest).
    """
    from foldwise.components import storage

    path = Path(folder).expanduser().resolve()
    if storage.is_gcs(folder) or not (path / "pipeline").is_dir():
        raise FoldwiseError(f"--resume {folder} is not the folder of an earlier run on this "
                            "machine (it has no pipeline/ folder): give the run's output folder")
    if (path / storage.MANIFEST).exists():
        raise FoldwiseError(f"the run in {path} finished ({storage.MANIFEST} is there): there "
                            "is nothing to resume")
    return path


def _run_claimed(search: Search, checked: Plan, workspace: Path, destination: str,
                 token: str | None, on_event, on_plan, started: float) -> Result:
    """The rest of :func:`run_local`, once the destination is claimed."""
    from foldwise.pipelines.engine import Interrupted, PipelineFailed
    from foldwise.pipelines.engine import run_local as run_on_engine

    if search.resume:  # what a refused resume takes away again: only what it added
        added_to = workspace / "pipeline"
        earlier_runs = set(added_to.iterdir()) if added_to.is_dir() else set()
        log_stat = (workspace / "pipeline.log").stat() if (
            workspace / "pipeline.log").exists() else None
    else:
        record = workspace / SEARCH_RECORD
        partial = record.with_name(f".{SEARCH_RECORD}.partial")
        partial.write_text(json.dumps(search_record(checked), indent=1) + "\n", encoding="utf-8")
        partial.replace(record)
    if checked.table_bytes is not None:  # the steps read the table from the run folder
        data = workspace / "data.parquet"
        partial = data.with_name(".data.parquet.partial")
        partial.write_bytes(checked.table_bytes)
        partial.replace(data)
        checked.data = checked.arguments["data"] = str(data)
    if on_plan:
        on_plan(checked, workspace, destination)
    step_seconds: dict[str, float] = {}

    def observe(event) -> None:
        if event.status is not None:
            step_seconds[event.name] = step_seconds.get(event.name, 0.0) + event.seconds
        if on_event:
            on_event(event)

    steps = None
    if search.runner == "container":
        from foldwise.components import storage

        # the table file itself, not its folder: a folder the image's user may not enter
        # (a home, a 0700 temporary folder) would hide whatever is mounted beneath it
        readable = [] if storage.is_gcs(checked.data) or not checked.data else [
            Path(checked.data)]
        borrowed = [path for path in readable if os.getuid() == 0 and path.is_file()
                    and not path.stat().st_mode & 0o004]  # not readable by others
        writable = [workspace] + [Path(folder) for folder in (destination, search.promote_to)
                                  if folder and not storage.is_gcs(folder)]
        if checked.warm_root is not None:  # the earlier run's trials, taken over
            readable.append(checked.warm_root)
        credentials = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if credentials and Path(credentials).is_file():
            readable.append(Path(credentials))
        for folder in writable:  # a bind mount's folder must exist (a first promotion's)
            folder.mkdir(parents=True, exist_ok=True)
        steps = containers.Steps(search.image, [p.resolve() for p in writable],
                                 [p.resolve() for p in readable], checked.image_user,
                                 borrowed=[p.resolve() for p in borrowed])
    try:
        outputs = run_on_engine(checked.pipeline, checked.arguments, workspace / "pipeline",
                                workspace / "pipeline.log", observe, steps)
    except KeyboardInterrupt:
        raise Interrupted(workspace) from None
    except PipelineFailed as err:
        if not err.user_error:
            raise  # the run folder stays, with the log the message names
        # A mistake the message explains in full: leave the output as it was found (empty),
        # so that the same command runs again once it is fixed.
        from foldwise.components import storage

        if token is not None:
            storage.release(destination, token)
        if search.resume:  # the earlier run's folder, as it was: its finished trials stay
            for entry in set(added_to.iterdir()) - earlier_runs:
                shutil.rmtree(entry, ignore_errors=True)
            if log_stat is not None:  # its log as it was, to the byte and the time
                with open(workspace / "pipeline.log", "r+b") as log:
                    log.truncate(log_stat.st_size)
                os.utime(workspace / "pipeline.log",
                         ns=(log_stat.st_atime_ns, log_stat.st_mtime_ns))
            raise FoldwiseError(str(err)) from None
        for entry in workspace.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        if search.output is None or search.output.startswith("gs://"):
            workspace.rmdir()  # made for this run
        raise FoldwiseError(str(err)) from None
    summary = cv_results = None
    if "summary" in outputs:
        summary = json.loads(Path(outputs["summary"].path).read_text(encoding="utf-8"))
        cv_results = Path(outputs["cv_results"].path)
    return Result(checked, workspace, destination, outputs, summary, cv_results, step_seconds,
                  time.perf_counter() - started)


def workspace_and_destination(output: str | None, pipeline: str) -> tuple[Path, str]:
    """The local folder the run works in, and where results go (the same, or gs://).

    A bucket destination that already holds a manifest (a finished export) is refused.
    """
    from foldwise.components import storage

    if output and storage.is_gcs(output):
        destination = output.rstrip("/")
        if storage.exists(storage.join(destination, storage.MANIFEST)):
            raise FoldwiseError(
                f"{destination} already holds finished results ({storage.MANIFEST}): choose "
                "another --output (results are never written over)")
        return prepare_folder(None, pipeline), destination
    workspace = prepare_folder(output, pipeline)
    return workspace, str(workspace)


def prepare_folder(output: str | Path | None, pipeline: str) -> Path:
    """A new, empty local folder: ``output``, or a fresh one under ``./foldwise-runs/``.

    Raises:
        FoldwiseError: ``output`` exists and is not an empty folder (never written over).
    """
    if output is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = RUNS_FOLDER / f"{pipeline}-{stamp}"
        suffix = 1
        while folder.exists():
            suffix += 1
            folder = RUNS_FOLDER / f"{pipeline}-{stamp}-{suffix}"
    else:
        folder = Path(output)
    folder = folder.expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise FoldwiseError(f"output {folder} is a file, not a folder: choose another --output")
    if folder.exists() and any(folder.iterdir()):
        raise FoldwiseError(
            f"output folder {folder} already exists and is not empty: choose another --output "
            "(results are never written over)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FoldwiseError(f"cannot create output folder {folder} ({err.strerror}): choose "
                            "another --output") from None
    return folder


def cluster_settings(values: dict):
    """The :class:`ClusterSettings` of the cluster options in ``values`` (by name)."""
    from foldwise.pipelines.dags.cluster import ClusterSettings, parse_accelerator

    given = {name: values.get(name) for name in options.names(options.CLUSTER)}
    given = {name: options.option(name).default if value is None else value
             for name, value in given.items()}
    return ClusterSettings(
        image=given["image"],
        accelerator=parse_accelerator(given["accelerator"], given["tpu_topology"]),
        platform=given["platform"], train_cpu=given["train_cpu"],
        train_memory=given["train_memory"], step_cpu=given["step_cpu"],
        step_memory=given["step_memory"])


def compile_pipeline(pipeline: str, out: str | Path, values: dict) -> Path:
    """Compile ``pipeline`` for a cluster set up by the cluster options in ``values``."""
    from foldwise.pipelines import packaging

    return packaging.compile_pipeline(pipeline, cluster_settings(values), Path(out),
                                      values.get("rungs"))


def submit(search: Search, service: dict, cluster: dict, cron: str | None = None):
    """Validate the search, compile its pipeline and start (or schedule) it on a cluster.

    Args:
        search: What to run; ``data``, ``output`` and ``promote_to`` must be ``gs://``.
        service: The :data:`options.SERVICE` options by name (``host``, or
            ``vertex_project`` and ``vertex_region``; ``pipeline_root``, ...).
        cluster: The :data:`options.CLUSTER` options by name.
        cron: A schedule instead of one run.

    Returns:
        The service's answer (:class:`submit.Submitted`).
    """
    from foldwise.components import storage
    from foldwise.pipelines import packaging
    from foldwise.pipelines import submit as service_api

    service = {**options.defaults(options.SERVICE),
               **{k: v for k, v in service.items() if v is not None}}
    on_vertex = bool(service["vertex_project"] or service["vertex_region"])
    if on_vertex == bool(service["host"]) or (
            on_vertex and not (service["vertex_project"] and service["vertex_region"])):
        raise FoldwiseError("give --host (Kubeflow Pipelines) or both --vertex-project and "
                            "--vertex-region (Vertex AI)")
    if not storage.is_gcs(service["pipeline_root"] or ""):
        raise FoldwiseError("--pipeline-root must be a gs:// prefix the cluster can write to")
    if search.table is not None or not storage.is_gcs(search.data):
        raise FoldwiseError("--data must be a gs:// URI the cluster can read")
    kind = kinds.get(search.pipeline)
    if kind.promotes:
        if not storage.is_gcs(search.promote_to or ""):
            raise FoldwiseError(f"{kind.name} needs a --promote-to gs:// prefix")
    elif not storage.is_gcs(search.output or ""):
        raise FoldwiseError(f"{kind.name} needs an --output gs:// prefix for its results")
    checked = plan(search, local=False)
    if kind.promotes:
        checked.arguments["promote_to"] = search.promote_to.rstrip("/")
    else:
        checked.arguments["destination"] = search.output.rstrip("/")
    if cron is not None:
        service_api.kfp_cron(cron)  # refuse a bad expression before compiling anything
    settings = cluster_settings(cluster)
    if on_vertex and settings.platform != "vertex":
        settings = dataclasses.replace(settings, platform="vertex")
    name = service["name"] or f"foldwise-{search.pipeline}-{datetime.now():%Y%m%d-%H%M%S}"
    arguments = checked.arguments
    with tempfile.TemporaryDirectory(prefix="foldwise-") as folder:
        package = packaging.compile_pipeline(search.pipeline, settings,
                                             Path(folder) / "pipeline.yaml", checked.rungs)
        if on_vertex:
            with service_api.reaching("Vertex AI", f"project {service['vertex_project']}, "
                                      f"region {service['vertex_region']}"):
                job = service_api.vertex_job(package, arguments, name,
                                             service["vertex_project"],
                                             service["vertex_region"], service["pipeline_root"])
                if cron is not None:
                    return service_api.schedule_vertex(job, name, cron,
                                                       service["service_account"])
                return service_api.submit_vertex(job, service["service_account"])
        with service_api.reaching("Kubeflow Pipelines", service["host"]):
            client = service_api.kfp_client(service["host"], service["namespace"])
            if cron is not None:
                return service_api.schedule_kfp(client, package, arguments, name,
                                                service["experiment"], cron,
                                                service["namespace"], service["service_account"])
            return service_api.submit_kfp(client, package, arguments, name,
                                          service["experiment"], service["pipeline_root"],
                                          service["namespace"], service["service_account"])


def model_folder(uri: str) -> str:
    """The model folder that ``uri`` names.

    ``uri`` itself, an export folder's ``model/``, or the current version's of a promotion
    folder.

    Raises:
        FoldwiseError: Nothing there is a foldwise model.
    """
    from foldwise.components import storage
    from foldwise.components.core.results.promotion import POINTER

    uri = str(uri).rstrip("/")
    pointer_uri = storage.join(uri, POINTER)
    if storage.exists(pointer_uri):  # a promotion folder: serve its current version
        uri = storage.join(uri, json.loads(storage.read_bytes(pointer_uri))["version"])
    if storage.exists(storage.join(uri, "model", "model.keras")):  # an export folder
        uri = storage.join(uri, "model")
    if not storage.is_gcs(uri) and not Path(uri).is_dir():
        raise FoldwiseError(f"model folder {uri} does not exist: give a search's export "
                            "folder or its 'model' folder")
    return uri
