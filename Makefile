# The two commands of the README:
#   make demo   set everything up in .venv and cross-validate a Keras model on the penguins table
#   make test   set everything up in .venv and run the test suite (what .ci/run calls), a test
#               file per worker on two cores (pytest-xdist), then its 15 slowest tests
# and, for a developer's loop, make test-fast: everything but the real pipeline runs and the
# image build (tests marked local or image), a file per worker on every core: about 4.5
# minutes on a 2-core machine once JAX's compilation cache is warm (about 560 core-seconds).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup system-packages demo test test-fast lint image images bench
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REGISTRY ?=

$(INSTALLED): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(INSTALLED)

# Debian packages only the tests and `make image` use (needs root or sudo): headless Chromium
# renders the HTML report; debootstrap makes the image's local Debian base, podman (with runc)
# builds the image and runs every step of a pipeline in it, serving the Docker API that
# kfp.local speaks. `make demo` needs none of them.
system-packages:
	@command -v chromium >/dev/null && command -v podman >/dev/null && \
	  command -v runc >/dev/null && command -v debootstrap >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    chromium podman runc debootstrap >/dev/null; }

setup: $(INSTALLED)

demo: setup
	$(BIN)/foldwise run cross-validation --data examples/penguins.csv --target species

test: setup system-packages
	$(BIN)/pytest -n 2 --dist loadfile --durations=15

test-fast: setup
	$(BIN)/pytest -m "not local and not image" -n auto --dist loadfile --durations=15

lint: setup
	$(BIN)/ruff check .

# foldwise against scikeras and scikit-learn's MLP, and a user's builder against scikeras
# (about 40 minutes; see benchmarks/README.md).
bench: setup
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev,bench]'
	$(BIN)/python benchmarks/compare.py --write-readme
	$(BIN)/python benchmarks/builder.py --write-readme

# The CPU image on this machine, with no registry: foldwise:<version>-cpu, the image that
# `foldwise run ... --runner container` runs by default (podman or docker; a local Debian base).
image:
	@command -v debootstrap >/dev/null && { command -v podman >/dev/null || \
	  command -v docker >/dev/null; } || $(MAKE) system-packages
	docker/build-image.sh

# The step images for a cluster, tagged with the package version (needs a Docker engine and
# Docker Hub's python image).
images:
	for variant in cpu gpu tpu; do \
	  docker build -f docker/Dockerfile --build-arg VARIANT=$$variant \
	    -t $(REGISTRY)foldwise:$(VERSION)-$$variant . || exit 1; \
	done
