#!/usr/bin/env bash
# Build the container image with podman (`make image`).
#
#   deploy/image/build.sh [IMAGE]          default IMAGE: localhost/workflow-engine:latest
#
# BASE_IMAGE (default: the Dockerfile's python:3.11-slim) is pulled when it can be; where it
# cannot (no access to its registry, as on the project's machines) a local Debian bookworm base
# with Python 3.11 is built once with debootstrap (deploy/image/build-base.sh) and used instead.
# PIP_INDEX_URL (optional) is passed to the build; pip in the build trusts the CA bundle of this
# machine (PIP_CERT, else the system bundle), passed as a build secret so no layer keeps it.
# No container engine runs containers here: podman only builds (--isolation=chroot).
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${1:-localhost/workflow-engine:latest}
DEFAULT_BASE=python:3.11-slim
LOCAL_BASE=localhost/workflow-engine-base:bookworm

# What the build needs, installed from Debian's packages when missing (CI starts from a clone).
missing=()
command -v podman >/dev/null || missing+=(podman)
if [ -z "${BASE_IMAGE:-}" ] && ! command -v debootstrap >/dev/null; then missing+=(debootstrap); fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "[image] missing: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "[image] installing ${missing[*]} from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for file in socket.io.min.js uPlot.iife.min.js uPlot.min.css; do
  if [ ! -s "src/workflow_engine/web/static/vendor/$file" ]; then
    echo "[image] $file is not in src/workflow_engine/web/static/vendor/: run make install" >&2
    exit 1
  fi
done

base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  if podman image exists "$DEFAULT_BASE" || podman pull -q "$DEFAULT_BASE" >/dev/null 2>&1; then
    base=$DEFAULT_BASE
  else
    echo "[image] $DEFAULT_BASE cannot be pulled here: using a local Debian base ($LOCAL_BASE)"
    deploy/image/build-base.sh "$LOCAL_BASE"
    base=$LOCAL_BASE
  fi
fi

args=(--isolation=chroot --network=host --layers -f Dockerfile -t "$IMAGE" --build-arg "BASE_IMAGE=$base")
if [ -n "${PIP_INDEX_URL:-}" ]; then args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL"); fi
cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [ -s "$cert" ]; then args+=(--secret "id=pip_cert,src=$cert"); fi

previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
started=$SECONDS
echo "[image] podman build $IMAGE (base $base)"
podman build "${args[@]}" . >"${BUILD_LOG:-/dev/stdout}"
# The image this build replaced, now untagged, is removed (not the build stage's layers: they are
# the cache of the next build).
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "[image] built $IMAGE in $((SECONDS - started)) s: $((size / 1000000)) MB, user $(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
