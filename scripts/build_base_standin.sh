#!/usr/bin/env bash
# Builds a local stand-in for the Dockerfile's base image, for machines that
# cannot pull from a container registry (the development and CI machines of
# this project reach Debian's package archive, not Docker Hub).
#
#   scripts/build_base_standin.sh [--force]
#
# What it makes: Debian bookworm (debootstrap, minbase, plus the shared
# libraries CPython's extension modules link against) with a CPython 3.10.13
# at /usr/local, tagged with the exact name the Dockerfile's FROM line uses
# (docker.io/library/python:3.10.13-slim-bookworm), so the Dockerfile stays
# exactly what a user with registry access builds. The CPython is the
# machine's own 3.10.13 (PYTHON310, or pyenv's), copied, not downloaded.
#
# It differs from the official image in size and history only: same Debian
# release (bookworm, glibc 2.36), same Python version and prefix, `python`,
# `python3` and `pip` on PATH. Rebuilt only when this script or the
# interpreter changes (a label records their fingerprint); --force rebuilds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE="${CONTAINER_ENGINE:-podman}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

BASE="$(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$ROOT/Dockerfile" | head -n 1)"
case "$BASE" in
  */*) IMAGE="$BASE" ;;
  *) IMAGE="docker.io/library/$BASE" ;;  # how Docker and podman expand a short name
esac
PY_VERSION="$(echo "$BASE" | sed -n 's/^.*python:\([0-9.]*\)-.*/\1/p')"
[ -n "$PY_VERSION" ] || { echo "ERROR: cannot read a python:X.Y.Z base from the Dockerfile's FROM ($BASE)" >&2; exit 2; }

find_python() {
  local candidates=()
  [ -n "${PYTHON310:-}" ] && candidates+=("$PYTHON310")
  command -v pyenv >/dev/null 2>&1 && candidates+=("$(pyenv root)/versions/$PY_VERSION/bin/python${PY_VERSION%.*}")
  for c in "${candidates[@]}"; do
    if [ -x "$c" ] && [ "$("$c" -c 'import platform; print(platform.python_version())')" = "$PY_VERSION" ]; then
      echo "$c"; return 0
    fi
  done
  return 1
}

if ! PY="$(find_python)"; then
  echo "ERROR: the stand-in base needs a CPython $PY_VERSION on this machine (pyenv install $PY_VERSION," \
       "or PYTHON310=/path/to/python pointing at a $PY_VERSION built with --enable-shared or static)." >&2
  exit 1
fi
PREFIX="$("$PY" -c 'import sys; print(sys.prefix)')"
FINGERPRINT="$( (cat "${BASH_SOURCE[0]}"; echo "$PY_VERSION"; "$PY" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
LABEL="rain-tomorrow.base-standin"

if [ "$FORCE" = 0 ] && "$ENGINE" image exists "$IMAGE" 2>/dev/null; then
  have="$("$ENGINE" image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)"
  if [ "$have" = "$FINGERPRINT" ]; then
    echo ">> Base stand-in $IMAGE is up to date"; exit 0
  elif [ -z "$have" ] || [ "$have" = "<no value>" ]; then
    echo ">> $IMAGE exists and is not a stand-in (pulled?): using it as it is"; exit 0
  fi
fi

command -v debootstrap >/dev/null || { echo "ERROR: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
echo ">> debootstrap bookworm (minbase) into $ROOTFS"
# The libraries CPython's extension modules link against (ssl, sqlite3, ctypes,
# lzma, bz2, readline, uuid, ...), as in the official slim image.
INCLUDE=ca-certificates,netbase,tzdata,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libncursesw6,libreadline8,zlib1g,libuuid1,libnsl2,libtirpc3,libexpat1,libcrypt1
# The mirror is the one this machine's apt uses (debootstrap's default otherwise).
MIRROR="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
[ -n "$MIRROR" ] || MIRROR="$(sed -n 's/^deb[[:space:]]\+\([^[:space:]]\+\)[[:space:]]\+bookworm[[:space:]].*/\1/p' /etc/apt/sources.list 2>/dev/null | head -n 1)"
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$ROOTFS" ${MIRROR:+"$MIRROR"} >"$WORK/debootstrap.log" 2>&1 \
  || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }

echo ">> CPython $PY_VERSION from $PREFIX into /usr/local"
# Everything but this machine's own site-packages additions; pip and
# setuptools stay, as in the official image.
tar -C "$PREFIX" --exclude='lib/python*/site-packages/*.pth' --exclude='__pycache__' -cf - bin include lib share \
  | tar -C "$ROOTFS/usr/local" -xf -
for pth in distutils-precedence.pth; do  # setuptools' own .pth goes back in
  src="$PREFIX/lib/python${PY_VERSION%.*}/site-packages/$pth"
  [ -f "$src" ] && cp "$src" "$ROOTFS/usr/local/lib/python${PY_VERSION%.*}/site-packages/"
done
# Text files that name the original prefix (script shebangs, sysconfig data,
# the build Makefile) name /usr/local instead; binaries are left alone (the
# interpreter finds libpython through ldconfig's cache).
grep -rlI --null "$PREFIX" "$ROOTFS/usr/local/bin" "$ROOTFS/usr/local/lib/python${PY_VERSION%.*}" 2>/dev/null \
  | xargs -0 --no-run-if-empty sed -i "s|$PREFIX|/usr/local|g"
chroot "$ROOTFS" /sbin/ldconfig

# The stand-in trusts what this machine trusts: a machine that reaches PyPI
# through a TLS-intercepting proxy has that proxy's CA in its bundle, and pip
# in the build needs it. Kept under /usr/local/share/ca-certificates so that
# update-ca-certificates (run again when the JRE is installed) keeps it; pip
# and uv are pointed at the system bundle (they use their own roots otherwise).
HOST_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [ -f "$HOST_BUNDLE" ]; then
  cp "$HOST_BUNDLE" "$ROOTFS/usr/local/share/ca-certificates/build-host-trust.crt"
  chroot "$ROOTFS" update-ca-certificates >/dev/null
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$ROOTFS/etc/pip.conf"
  mkdir -p "$ROOTFS/etc/uv"  # uv: the system trust store instead of its bundled roots
  printf 'native-tls = true\n' > "$ROOTFS/etc/uv/uv.toml"
fi
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
chroot "$ROOTFS" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, lzma, bz2, uuid, zlib; print("stdlib ok")'
chroot "$ROOTFS" /usr/local/bin/pip --version

echo ">> Importing as $IMAGE"
tar -C "$ROOTFS" -cf - . | "$ENGINE" import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "ENV PYTHON_VERSION=$PY_VERSION" \
  --change "LABEL $LABEL=$FINGERPRINT" \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
echo ">> Base stand-in ready: $IMAGE ($("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE") bytes)"
