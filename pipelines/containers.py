"""Every step in foldwise's image, as a cluster runs it (``--runner container``).

kfp.local's ``DockerRunner`` starts each step in a container through a Docker-API engine:
Docker, or podman's service (``DOCKER_HOST`` says where; ``docker/podman-service.sh`` starts
one). kfp.local's own container call auto-removes the container and counts a container that
vanished as a success, so a failed step could pass; :class:`Steps` replaces that one call:
each container is created, started, its output streamed into the run's log, waited for, its
exit status kept as the step's, and removed; on Ctrl-C the running ones are stopped.

What a step sees in its container is what it sees in a pod:

- the image's own Python, foldwise and pins (the user's interpreter plays no part);
- the run folder, mounted at its own path (artifact paths read the same inside and out), the
  table file read-only, and a retrain's local promotion folder; nothing else of the host;
- the settings a step reads from the environment (:data:`PASSED_ENVIRONMENT`);
- the host's network, so a storage emulator on loopback answers as it does for the host.

The image runs as its own unprivileged user. Run as root here, the mounted folders (and a
table file only root may read) are lent to that user for the run, their owners put back
afterwards; run as another user, the step runs with that user's ids, so what it writes is the
user's own.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from foldwise.components.core.errors import FoldwiseError

RUNNERS = ("subprocess", "container")
# What a step reads from the environment, passed into its container when set here.
PASSED_ENVIRONMENT = ("FOLDWISE_RESUME", "FOLDWISE_WARM_START",
                      "FOLDWISE_STORAGE_RETRY_SECONDS", "STORAGE_EMULATOR_HOST",
                      "GOOGLE_CLOUD_PROJECT",
                      "GOOGLE_APPLICATION_CREDENTIALS", "TF_CPP_MIN_LOG_LEVEL")
START_ENGINE = ("start Docker, or podman's Docker-API service (eval "
                "\"$(docker/podman-service.sh)\" in foldwise's clone), and set DOCKER_HOST to "
                "its socket")


def default_image() -> str:
    """The image every foldwise component names (``FOLDWISE_IMAGE`` or ``foldwise:VERSION-cpu``)."""
    from foldwise.components.image import IMAGE

    return IMAGE


@dataclass
class Steps:
    """Runs each step of one pipeline run in a container of ``image`` (see the module)."""

    image: str
    writable: list[Path]
    readable: list[Path]
    user: str | None = None  # the image's user, as its config names it
    borrowed: list[Path] = field(default_factory=list)  # readable only once lent, as root
    _running: dict[str, object] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def volumes(self) -> dict[str, dict]:
        """Bind mounts: each folder at its own path (one under another is covered by it)."""
        wanted = {**{str(p): "ro" for p in self.readable}, **{str(p): "rw" for p in self.writable}}
        chosen = {}
        for path in sorted(wanted, key=len):
            if not any(path == p or path.startswith(p.rstrip("/") + "/") for p in chosen
                       if chosen[p] == "rw" or wanted[path] == "ro"):
                chosen[path] = wanted[path]
        return {path: {"bind": path, "mode": mode} for path, mode in chosen.items()}

    def environment(self, given: dict | None) -> dict:
        """A step's environment: the settings it reads from here, then the task's own."""
        environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT
                       if os.environ.get(name)}
        environment.update(given or {})
        if os.getuid() != 0:  # runs with the user's ids, which have no home in the image
            environment.setdefault("HOME", "/tmp")
        return environment

    def run_container(self, client, image: str, command: list, volumes: dict,
                      **run_args) -> int:
        """kfp.local's ``run_docker_container``, done right; returns the step's exit status."""
        import docker

        if self._stopping.is_set():
            return 130
        image = self.image  # every foldwise step names foldwise's image, as compiled here
        options = {"user": f"{os.getuid()}:{os.getgid()}"} if os.getuid() != 0 else {}
        container = client.containers.create(
            image=image, command=command, volumes=self.volumes(), network_mode="host",
            environment=self.environment(run_args.get("environment")),
            working_dir="/tmp", **options)
        with self._lock:
            self._running[container.id] = container
        print(f"step container {container.short_id} of {image}")
        try:
            container.start()
            for chunk in container.logs(stream=True, follow=True):
                print(chunk.decode(errors="replace"), end="")
            return int(container.wait().get("StatusCode", 1))
        except docker.errors.NotFound:  # stopped and removed by an interrupt
            return 130
        finally:
            with self._lock:
                self._running.pop(container.id, None)
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    def stop(self) -> None:
        """Stop every running step's container (Ctrl-C); start no more."""
        import docker

        self._stopping.set()
        with self._lock:
            running = list(self._running.values())
        for container in running:
            with contextlib.suppress(docker.errors.APIError):
                container.kill()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Within: kfp.local runs every step through :meth:`run_container`, in lent folders."""
        from kfp.local import docker_task_handler

        original = docker_task_handler.run_docker_container
        docker_task_handler.run_docker_container = self.run_container
        try:
            with lent(self.writable + self.borrowed, self.user):
                yield
        finally:
            docker_task_handler.run_docker_container = original


def engine_client():
    """A client of the Docker-API engine ``DOCKER_HOST`` names, checked to answer."""
    import docker

    where = os.environ.get("DOCKER_HOST") or "the default socket (/var/run/docker.sock)"
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        if any(word in reason for word in ("FileNotFoundError", "ConnectionRefused",
                                           "Connection refused", "No such file")):
            reason = "nothing listens there"
        raise FoldwiseError(f"--runner container needs a Docker-API engine, and none answers "
                            f"at {where} ({reason}): {START_ENGINE}") from None
    return client


def check_image(image: str | None) -> tuple[str, str | None]:
    """The image a container run will use, and its user, once the engine shows it holds it.

    Raises:
        FoldwiseError: No engine answers, or it does not hold the image (one line each).
    """
    import docker

    image = image or default_image()
    client = engine_client()
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise FoldwiseError(
            f"the engine at {os.environ.get('DOCKER_HOST') or 'the default socket'} has no "
            f"image {image}: build it with 'make image' in foldwise's clone (or pass --image "
            "with a foldwise image the engine holds)") from None
    except docker.errors.APIError as err:
        raise FoldwiseError(f"the engine could not look up image {image} "
                            f"({err.explanation or err}): {START_ENGINE}") from None
    finally:
        client.close()
    return image, (found.attrs.get("Config") or {}).get("User") or None


@contextlib.contextmanager
def lent(folders: list[Path], user: str | None) -> Iterator[None]:
    """Within: ``folders`` (with all they hold) are owned by the image's user, when run as root.

    A container that runs as an unprivileged user cannot write into a root-owned bind mount;
    its user gets the folders for the run, and every entry's owner is put back afterwards
    (what the steps made belongs to root, as if root had made it).
    """
    uid = _numeric_user(user)
    if os.getuid() != 0 or uid in (None, 0):
        yield
        return
    owners: dict[str, tuple[int, int]] = {}
    for entry in _entries(folders):
        if str(entry) not in owners:  # a folder may be listed twice, or inside another
            stat = entry.lstat()
            owners[str(entry)] = (stat.st_uid, stat.st_gid)
            os.lchown(entry, uid, uid)
    try:
        yield
    finally:
        for entry in _entries(folders):
            with contextlib.suppress(OSError):
                os.lchown(entry, *owners.get(str(entry), (0, 0)))


def _entries(folders: list[Path]) -> Iterator[Path]:
    for folder in folders:
        if not folder.exists():
            continue
        yield folder
        for parent, dirs, files in os.walk(folder):
            for name in dirs + files:
                yield Path(parent, name)


def _numeric_user(user: str | None) -> int | None:
    """The image's user as a number (``1000`` or ``1000:1000``); ``None`` when it names one."""
    if not user:
        return 0
    name = user.split(":")[0]
    return int(name) if name.isdigit() else None
