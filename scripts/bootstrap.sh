#!/usr/bin/env bash
# Creates (or refreshes) the project virtualenv in .venv with the pinned
# dependency set. Sourced by scripts/run.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
STAMP="$VENV/.installed-from"

find_python310() {
  local candidates=()
  [ -n "${PYTHON310:-}" ] && candidates+=("$PYTHON310")
  if command -v pyenv >/dev/null 2>&1; then
    local root; root="$(pyenv root)"
    for v in "$root"/versions/3.10*; do
      [ -x "$v/bin/python3.10" ] && candidates+=("$v/bin/python3.10")
    done
  fi
  candidates+=(python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10 python3)
  for c in "${candidates[@]}"; do
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; then
      command -v "$c" 2>/dev/null || echo "$c"
      return 0
    fi
  done
  return 1
}

fingerprint() {
  cat "$ROOT/requirements/constraints.txt" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] && [ -x "$VENV/bin/python" ]; then
  return 0 2>/dev/null || exit 0
fi

if ! PY="$(find_python310)"; then
  cat >&2 <<'MSG'
ERROR: no Python 3.10 interpreter found.
TFX 1.16 (ml-metadata, tfx-bsl, TFDV wheels) needs Python 3.10 on this platform.
Install one, e.g. `pyenv install 3.10.13`, or `apt-get install python3.10 python3.10-venv`,
or point PYTHON310=/path/to/python3.10 at it, then run this command again.
MSG
  exit 1
fi
echo ">> Using $PY ($("$PY" --version 2>&1)) to build $VENV" >&2
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade "pip==24.2" "setuptools==75.1.0" "wheel==0.45.1" >&2
# Pinned constraints keep pip from backtracking (and from picking a Beam under
# which tfx_bsl cannot import). Editable "compat" mode puts the repo root on
# sys.path, so Beam workers import pipeline.*/components.*/models.* directly.
"$VENV/bin/pip" install --quiet -c "$ROOT/requirements/constraints.txt" \
  --config-settings editable_mode=compat -e "$ROOT[dev]" >&2
fingerprint > "$STAMP"
echo ">> Environment ready: $VENV" >&2
