"""foldwise's CPU image: its size, a step's cold start in it, and a run with every step in it.

    make image && eval "$(docker/podman-service.sh)"
    .venv/bin/python benchmarks/image.py [--image foldwise:0.1.0-cpu] [--write-readme]

Through the Docker-API engine ``DOCKER_HOST`` names, as ``--runner container`` uses it:

- the image's size, and its largest installed packages;
- a container's start to its first line (``python3 -c print``), and to the first line of a
  step's own imports (``import foldwise.components``, what every step loads before its work);
  medians of five containers each;
- the README's first command (penguins cross-validation) run with each step a subprocess, then
  with each step in a container: the two runs' times and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from compare import record  # noqa: E402

FOLDWISE = str(Path(sys.executable).parent / "foldwise")
SITE = "python3 -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'"


def first_line_seconds(client, image: str, command: list[str]) -> float:
    """Seconds from a container's creation to its first line of output."""
    started = time.perf_counter()
    container = client.containers.create(image=image, command=command)
    try:
        container.start()
        for _ in container.logs(stream=True, follow=True):
            return time.perf_counter() - started
        raise RuntimeError(f"{command} printed nothing")
    finally:
        container.remove(force=True)


def run_seconds(runner: str, work: Path, image: str) -> float:
    """The penguins cross-validation's own time (the last line it prints) with ``runner``."""
    command = [FOLDWISE, "run", "cross-validation", "--data", str(ROOT / "examples" /
               "penguins.csv"), "--target", "species", "--output", str(work / runner),
               "--runner", runner]
    if runner == "container":
        command += ["--image", image]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1].strip("[] s"))


def measure(image: str) -> dict:
    """Every measure of the module's docstring, for ``image``."""
    import docker

    client = docker.from_env()
    found = client.images.get(image)
    listing = client.containers.run(
        image, ["sh", "-c", f"du -sm \"$({SITE})\"/* | sort -n | tail -6"], remove=True)
    largest = [line.split("\t") for line in listing.decode().strip().splitlines()]
    bare = [first_line_seconds(client, image, ["python3", "-c", "print('ready')"])
            for _ in range(5)]
    step = [first_line_seconds(client, image, ["python3", "-c", "import foldwise.components; "
                                               "print('ready')"]) for _ in range(5)]
    client.close()
    with tempfile.TemporaryDirectory() as work:
        subprocess_s = run_seconds("subprocess", Path(work), image)
        container_s = run_seconds("container", Path(work), image)
    return {"image": image, "size_mb": round(found.attrs["Size"] / 1e6),
            "largest": [[name.rsplit("/", 1)[-1], int(mb)] for mb, name in reversed(largest)],
            "first_line_s": round(statistics.median(bare), 2),
            "step_imports_s": round(statistics.median(step), 2),
            "subprocess_run_s": subprocess_s, "container_run_s": container_s,
            "ratio": round(container_s / subprocess_s, 2)}


def report(r: dict) -> str:
    """The measures as a Markdown table."""
    largest = ", ".join(f"{name} {mb:,} MB" for name, mb in r["largest"])
    return "\n".join([
        "| measure | value |", "|---|---|",
        f"| image size ({r['image']}) | {r['size_mb']:,} MB |",
        f"| largest packages | {largest} |",
        f"| container start → first line (`python3 -c print`), median of 5 | "
        f"{r['first_line_s']:.2f} s |",
        f"| container start → a step's imports done (`import foldwise.components`), median "
        f"of 5 | {r['step_imports_s']:.2f} s |",
        f"| penguins cross-validation, each step a subprocess | {r['subprocess_run_s']:.1f} s |",
        f"| the same, each step in a container | {r['container_run_s']:.1f} s "
        f"({r['ratio']:.2f}×) |"])


def main() -> int:
    """Measure, print the table, and write it where asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="foldwise:0.1.0-cpu")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    result = measure(args.image)
    record("image", "image", result, report(result), started, args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
