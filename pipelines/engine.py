"""Run a foldwise pipeline on KFP's embedded engine (kfp.local): no cluster.

Every task runs as a subprocess of this interpreter, which therefore must have foldwise
installed; or, with ``--runner container``, in a container of foldwise's image
(:mod:`foldwise.pipelines.containers`). The engine's own chatter (and every task's output)
goes to a log file; callers get one event per task start and end for progress display.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from foldwise.components.core.errors import FoldwiseError, without_escapes


@dataclass
class TaskEvent:
    """A task started (``status`` is ``None``) or ended (``SUCCESS`` / ``FAILURE``)."""

    name: str
    folds: tuple[int, ...]  # the fold(s) a per-fold step works on; empty for the others
    status: str | None
    seconds: float = 0.0
    config_id: str | None = None


class Interrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); every step process it started has been stopped."""

    def __init__(self, workspace: Path | None = None) -> None:
        super().__init__("interrupted")
        self.workspace = workspace


class PipelineFailed(RuntimeError):
    """A pipeline task failed; ``message`` is the task's last error line."""

    def __init__(self, message: str, log_path: Path, user_error: bool) -> None:
        super().__init__(message)
        self.log_path = log_path
        self.user_error = user_error


# Steps run in this interpreter, which has foldwise installed: the image is not needed here.
warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
# The same pipeline carries cluster settings (resources, accelerators) that the embedded
# engine ignores by design.
warnings.filterwarnings("ignore", message=r"Task .*: settings \[.*\] have no effect in the "
                        r"current local runner")

_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$")


def run_local(pipeline_func, arguments: dict, pipeline_root: Path, log_path: Path,
              on_event: Callable[[TaskEvent], None] | None = None, steps=None) -> dict:
    """Run ``pipeline_func`` with ``arguments`` on kfp.local and return its outputs.

    Args:
        pipeline_func: A ``@dsl.pipeline`` function.
        arguments: Its parameters.
        pipeline_root: Local folder for the run's artifacts.
        log_path: File that receives the engine's and the tasks' output.
        on_event: Called from the engine's threads at each task's start and end.
        steps: A :class:`containers.Steps` to run every step in a container of foldwise's
            image (``--runner container``); ``None`` runs them as subprocesses.

    Returns:
        The pipeline's outputs by name (artifacts have a local ``.path``).

    Raises:
        PipelineFailed: A task failed; the message is its last error line.
    """
    from kfp import local
    from kfp.local import task_dispatcher

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pipeline_root.mkdir(parents=True, exist_ok=True)
    runner = local.SubprocessRunner(use_venv=False) if steps is None else local.DockerRunner()
    local.init(runner=runner, pipeline_root=str(pipeline_root), raise_on_error=True)

    original_task_runner = task_dispatcher.run_single_task_implementation
    lock = threading.Lock()
    plans: dict[str, list] = {}
    stopping = threading.Event()

    def planned(arguments: dict) -> dict:
        """A train task's entry in the plan it is given (each plan read once)."""
        given = getattr(arguments.get("plan"), "path", None)
        if given is None:  # the plan-trials step's
            found = sorted(pipeline_root.glob("*/plan-trials/plan"))
            given = str(found[-1]) if found else ""
        if given not in plans:
            try:
                plans[given] = json.loads(Path(given).read_text(encoding="utf-8"))["tasks"]
            except (OSError, ValueError, KeyError, TypeError):
                plans[given] = []
        tasks, trial = plans[given], arguments["trial"]
        index = int(trial) if isinstance(trial, (int, float)) else -1
        return tasks[index] if 0 <= index < len(tasks) else {}

    def observed_task_runner(*args, **kwargs):
        if stopping.is_set():  # interrupted: start nothing more
            raise Interrupted()
        # a component used more than once is named comp-train-2, ... (halving's rungs)
        name = re.sub(r"-[0-9]+$", "", kwargs.get("component_name", "task").removeprefix("comp-"))
        arguments = kwargs.get("arguments", {})
        if name == "train" and "trial" in arguments:
            arguments = {**arguments, **planned(arguments)}
        listed = arguments.get("folds")  # a train task's folds (a pipeline's is a count)
        listed = listed if isinstance(listed, list) else [arguments.get("fold")]
        fold = tuple(int(f) for f in listed if isinstance(f, (int, float)))
        config = arguments.get("config_id")
        listed_configs = arguments.get("configs")
        if isinstance(listed_configs, list) and listed_configs:
            ids = [c.get("config_id", "?") for c in listed_configs if isinstance(c, dict)]
            config = ids[0] + (f" +{len(ids) - 1}" if len(ids) > 1 else "")
        if on_event:
            with lock:
                on_event(TaskEvent(name, fold, None, config_id=config))
        started = time.perf_counter()
        outputs, status = original_task_runner(*args, **kwargs)
        if on_event:
            with lock:
                on_event(TaskEvent(name, fold, status.name, time.perf_counter() - started,
                                   config))
        return outputs, status

    # kfp.local swaps builtins.print and the root logger's handlers from its worker threads
    # without restoring them reliably: keep ours and put them back afterwards.
    saved_print = builtins.print
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    task_dispatcher.run_single_task_implementation = observed_task_runner
    previous_handler = _on_interrupt(stopping, steps)
    try:
        # Appended: a resumed run keeps the earlier run's log above its own.
        with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
                steps.installed() if steps else contextlib.nullcontext():
            try:
                task = pipeline_func(**arguments)
            except RuntimeError as err:
                log.flush()
                raise _failure(str(err), log_path) from None
        return dict(task.outputs)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        task_dispatcher.run_single_task_implementation = original_task_runner
        builtins.print = saved_print
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _on_interrupt(stopping: threading.Event, steps=None):
    """On Ctrl-C: start no more steps, stop the running ones, then raise :class:`Interrupted`.

    kfp.local waits for its running steps before an interrupt reaches its caller; stopping
    their processes first (and every process they started) ends the run within seconds.
    Returns the previous SIGINT handler (``None`` off the main thread, where none is set).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        stopping.set()
        if steps is not None:
            steps.stop()
        stop_descendants(os.getpid())
        raise Interrupted()

    return signal.signal(signal.SIGINT, handler)


def stop_descendants(pid: int, grace: float = 3.0) -> list[int]:
    """Terminate every process descended from ``pid`` (then kill what outlives ``grace``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        alive = [p for p in found if Path(f"/proc/{p}").exists()]
        for child in alive:
            with contextlib.suppress(OSError):
                os.kill(child, sig)
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline and any(
                Path(f"/proc/{p}").exists() and not _zombie(p) for p in alive):
            time.sleep(0.05)
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _failure(engine_message: str, log_path: Path) -> PipelineFailed:
    """The failing task's own last error line, found in the log."""
    engine_message = without_escapes(engine_message)
    last_error, user_error = None, False
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _ERROR_LINE.match(without_escapes(line))
        if match:
            last_error = match.group(2).strip()
            user_error = match.group(1) == FoldwiseError.__name__
    detail = last_error or engine_message
    return PipelineFailed(f"{engine_message.rstrip('.')}: {detail}", log_path, user_error)
