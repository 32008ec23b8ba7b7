#!/usr/bin/env bash
# Sets up the environment if needed, then runs the test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"

# The report test renders HTML in headless Chromium (Debian's package). Install
# it where we can (root with apt-get); elsewhere that one test skips, saying why.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
  echo ">> Installing Debian's chromium for the report rendering test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo ">> Could not install chromium; the report rendering test will be skipped"
fi

exec "$VENV/bin/python" -m pytest "$@"
