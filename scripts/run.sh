#!/usr/bin/env bash
# Sets up the environment if needed, then runs the pipeline end to end on the
# bundled Seattle data (Spark curation -> TFX pipeline -> pushed model).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$VENV/bin/python" local_runner.py "$@"
