import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_hadolint_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(ROOT / "docker" / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_images_install_with_the_same_pins_and_carry_the_version():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "-c requirements/constraints.txt" in dockerfile  # every variant: the same pins
    assert "FROM ${BASE_IMAGE}" in dockerfile and "python:3.11" in dockerfile
    assert 'gpu) extra="jax[cuda12]"' in dockerfile  # JAX's CUDA plugin, pinned below
    assert 'tpu) extra="jax[tpu]"' in dockerfile and '{"backend": "jax"}' in dockerfile
    pins = (ROOT / "requirements" / "constraints.txt").read_text()
    assert all(f"{name}==" in pins for name in ("jax", "jaxlib", "libtpu", "jax-cuda12-plugin",
                                                "jax-cuda12-pjrt"))
    makefile = (ROOT / "Makefile").read_text()
    assert "foldwise:$(VERSION)-$$variant" in makefile
    assert "for variant in cpu gpu tpu" in makefile
    from importlib.metadata import version

    from foldwise.components.image import IMAGE

    assert IMAGE == f"foldwise:{version('foldwise')}-cpu"
