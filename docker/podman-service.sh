#!/usr/bin/env bash
# Serve the Docker Engine API from podman, for `foldwise run ... --runner container`:
#
#   eval "$(docker/podman-service.sh)"     (starts the service once, sets DOCKER_HOST)
#
# The socket is $XDG_RUNTIME_DIR/foldwise-podman.sock (or /tmp/foldwise-podman-$UID.sock); the
# service runs until the machine stops. Prints the export line for DOCKER_HOST.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v podman >/dev/null || {
  echo "error: podman is not installed: apt-get install podman runc (or run Docker)" >&2; exit 1; }
if [ -z "${CONTAINERS_CONF:-}" ] && command -v runc >/dev/null; then
  export CONTAINERS_CONF=$PWD/docker/containers.conf
fi
SOCKET=${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/foldwise-podman.sock}
SOCKET=${SOCKET:-/tmp/foldwise-podman-$(id -u).sock}
if ! curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then
  rm -f "$SOCKET"
  nohup podman system service --time=0 "unix://$SOCKET" >/dev/null 2>&1 &
  for _ in $(seq 50); do
    curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1 || {
    echo "error: podman's service did not answer on $SOCKET" >&2; exit 1; }
fi
echo "export DOCKER_HOST=unix://$SOCKET"
