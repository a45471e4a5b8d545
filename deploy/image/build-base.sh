#!/usr/bin/env bash
# Build a local Python 3.11 base image with debootstrap + `podman import`, for machines where the
# Dockerfile's default base (python:3.11-slim) cannot be pulled. Debian bookworm, minimal
# (minbase), plus python3 (3.11), python3-venv, python3-pip and ca-certificates; packages come
# from the Debian mirror apt already uses on this machine (or DEBIAN_MIRROR).
#
#   deploy/image/build-base.sh [TAG]      default TAG: localhost/workflow-engine-base:bookworm
#
# The image is built once and reused: delete it (`podman rmi TAG`) or set REBUILD=1 to rebuild.
set -euo pipefail

TAG=${1:-localhost/workflow-engine-base:bookworm}
SUITE=bookworm

if [ "${REBUILD:-0}" != 1 ] && podman image exists "$TAG"; then
  echo "[base] $TAG exists: reused (REBUILD=1 to build it again)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[base] debootstrap needs root" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "[base] debootstrap is not installed" >&2; exit 1; }

# The Debian archive apt uses here: deb822 `.sources` files (URIs:) or one-line `deb` entries.
mirror_from_apt() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # The stanza whose Suites name the plain suite (not -security/-updates only).
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (uri != "" && ok) print uri }
    ' "$f" | head -n1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == suite) { u = $(i - 1); if (u !~ /^\[/) { print u; exit } } }' "$f"
  done
}
MIRROR=${DEBIAN_MIRROR:-$(mirror_from_apt | grep -v -- '-security' | head -n1)}
if [ -z "$MIRROR" ]; then
  echo "[base] no Debian $SUITE mirror found in /etc/apt/sources.list*: set DEBIAN_MIRROR" >&2
  exit 1
fi

ROOTFS=$(mktemp -d /var/tmp/workflow-engine-base.XXXXXX)
cleanup() {
  # debootstrap mounts /proc and /sys inside the tree while it installs: never delete through them.
  findmnt -rno TARGET | grep -F "$ROOTFS/" | sort -r | xargs -r umount -l || true
  rm -rf --one-file-system "$ROOTFS" "$ROOTFS.log"
}
trap cleanup EXIT
started=$SECONDS
echo "[base] debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
  tail -n 30 "$ROOTFS.log" >&2
  exit 1
}
# Nothing the image does not need at run time: package lists, caches, docs.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
  "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
  "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/*
"$ROOTFS"/usr/bin/python3 --version

tar --numeric-owner -C "$ROOTFS" -c . |
  podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "Debian $SUITE minbase + python3 python3-venv python3-pip (debootstrap)" \
    --quiet - "$TAG" >/dev/null
echo "[base] built $TAG in $((SECONDS - started)) s ($(podman image inspect --format '{{.Size}}' "$TAG") bytes)"
