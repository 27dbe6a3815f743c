#!/usr/bin/env bash
# Build foldwise's CPU image on this machine, with no registry: `make image`.
#
#   docker/build-image.sh [TAG]      (default foldwise:<version>-cpu, what --runner container runs)
#
# The base is Debian bookworm's own Python 3.11 (what the official python:3.11-slim-bookworm
# image is built on), made with debootstrap from the machine's Debian mirror and kept in
# ~/.cache/foldwise, then imported as localhost/foldwise-base:bookworm. The image is built with
# podman (or docker when podman is absent) from docker/Dockerfile, so it is the image a cluster
# runs, on another base. Needs root (debootstrap) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
TAG=${1:-foldwise:${VERSION}-cpu}
BASE=localhost/foldwise-base:bookworm
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/foldwise
ROOTFS_TAR=$CACHE/debian-bookworm-python3.tar

if command -v podman >/dev/null; then
  ENGINE=podman
  if [ -z "${CONTAINERS_CONF:-}" ] && command -v runc >/dev/null; then
    export CONTAINERS_CONF=$PWD/docker/containers.conf
  fi
elif command -v docker >/dev/null; then
  ENGINE=docker
else
  echo "error: neither podman nor docker is installed: install one (Debian: apt-get install podman runc)" >&2
  exit 1
fi

if [ ! -f "$ROOTFS_TAR" ]; then
  command -v debootstrap >/dev/null || {
    echo "error: debootstrap is not installed: run 'make system-packages' (or apt-get install debootstrap)" >&2
    exit 1; }
  MIRROR=http://deb.debian.org/debian
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    MIRROR=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources | head -1)
  fi
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates bookworm \
    "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -20 "$WORK/debootstrap.log" >&2; echo "error: debootstrap failed (above)" >&2; exit 1; }
  # Behave like the official python image: pip may install system-wide.
  rm -f "$WORK"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
  # Trust the same certificate authorities as this machine (its package index may need it).
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$WORK/rootfs/var/cache/apt/archives" "$WORK/rootfs/var/lib/apt/lists"
  mkdir -p "$CACHE"
  tar -C "$WORK/rootfs" -cf "$ROOTFS_TAR.partial" .
  mv "$ROOTFS_TAR.partial" "$ROOTFS_TAR"
fi

if ! $ENGINE image inspect "$BASE" >/dev/null 2>&1; then
  $ENGINE import --change 'CMD ["python3"]' "$ROOTFS_TAR" "$BASE" >/dev/null
fi
NETWORK=()
[ "$ENGINE" = podman ] && NETWORK=(--network=host)  # the package index, from RUN steps
$ENGINE build "${NETWORK[@]}" --build-arg BASE_IMAGE="$BASE" --build-arg VARIANT=cpu \
  -t "$TAG" -f docker/Dockerfile .
echo "built $TAG"
