#!/usr/bin/env bash
# Sets up the environment if needed, then runs the test suite (what CI runs).
# Arguments go to pytest, e.g. -m "not slow and not image" for the fast layer.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"

# System tools some layers need, from Debian's packages, installed where we
# can (root with apt-get); elsewhere those tests skip and say what is missing:
#   chromium                            the HTML report and demo UI screenshots
#   podman buildah debootstrap runc     the image build and the in-image pipeline runs
wanted=()
command -v chromium >/dev/null 2>&1 || wanted+=(chromium)
for tool in podman buildah debootstrap runc; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || wanted+=("$tool")
done
if [ ${#wanted[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo ">> Installing Debian packages for the test layers: ${wanted[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${wanted[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${wanted[@]}" >/dev/null 2>&1; } \
    || echo ">> Could not install ${wanted[*]}; the tests that need them will be skipped"
fi

exec "$VENV/bin/python" -m pytest "$@"
