#!/usr/bin/env bash
# Regenerates the dependency locks from their top-level lists:
#   requirements/requirements.in       -> requirements/constraints.txt        (Python 3.10, glibc 2.36, TFX 1.16)
#   requirements/requirements-py312.in -> requirements/constraints-py312.txt  (Python 3.12, glibc 2.39, TFX 1.21)
#
# Usage: requirements/compile.sh [py310|py312|all] [OUTPUT_DIR]
#   OUTPUT_DIR defaults to requirements/ (tests write to a temporary directory
#   and compare). Needs uv: $UV, then .venv-tools/bin/uv (scripts/bootstrap.sh
#   installs it there), then `uv` on PATH.
#
# Reproducible: resolution is cut off at fixed upload dates (--exclude-newer),
# so the same inputs give the same file tomorrow. Packages that need a newer
# release than the main cutoff are listed with their own cutoff below; move a
# date only on purpose, then rerun this script and commit the result.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHICH="${1:-all}"
OUT="${2:-$ROOT/requirements}"

UV="${UV:-}"
if [ -z "$UV" ]; then
  if [ -x "$ROOT/.venv-tools/bin/uv" ]; then UV="$ROOT/.venv-tools/bin/uv"
  elif command -v uv >/dev/null 2>&1; then UV="$(command -v uv)"
  else
    echo "ERROR: uv not found. Run scripts/bootstrap.sh (it installs uv into .venv-tools/), or pip install uv." >&2
    exit 2
  fi
fi

# uv must not read a user's uv.toml, nor download a managed Python for building
# the few sdists whose metadata it needs.
export UV_PYTHON_DOWNLOADS=never
# --upgrade: ignore the pins already in the output file, so the result depends
# on the inputs alone.
# --generate-hashes: uv checks every downloaded file against the lock. (The
# pip fallback in scripts/bootstrap.sh installs the same pins from a copy
# without hashes: pip's hash-checking mode is all-or-nothing, and the editable
# install of this repository has no hash.)
COMMON=(--no-config --quiet --upgrade --generate-hashes
        --custom-compile-command "requirements/compile.sh")

# Python 3.10 lock. The main cutoff is the date of the proven set (the TFX 1.16
# environment this project was built and tested in). Later cutoffs:
#  - the TFX 1.16 packages themselves (released after the rest of the set),
#    pyspark 3.5.7 and kubernetes-validate 1.32.0 (added to the project later);
#  - the serving stack (fastapi, uvicorn, streamlit, httpx and what they need);
#  - web-facing libraries with security fixes since: werkzeug (TensorBoard),
#    h11/httpcore (HTTP parsing in uvicorn/httpx), jinja2, python-multipart;
#  - importlib-resources: kubernetes-validate 1.32.0 came with 7.1.0;
#  - mlflow / mlflow-skinny 2.22.5 (experiment tracking, added later).
CUTOFF_310=2024-10-11
LATER_310=2026-11-26
LATER_PACKAGES_310=(
  tfx tensorflow-data-validation tensorflow-transform tensorflow-model-analysis
  tfx-bsl ml-pipelines-sdk pyspark kubernetes-validate
  fastapi starlette annotated-doc typing-inspection uvicorn streamlit httptools httpx
  werkzeug h11 httpcore jinja2 python-multipart
  importlib-resources
  mlflow mlflow-skinny
)

# Python 3.12 lock: current releases as of its cutoff.
CUTOFF_312=2026-11-26

compile_py310() {
  local args=()
  for p in "${LATER_PACKAGES_310[@]}"; do args+=(--exclude-newer-package "$p=$LATER_310"); done
  (cd "$ROOT" && "$UV" pip compile "${COMMON[@]}" requirements/requirements.in \
    --python-version 3.10 --python-platform x86_64-manylinux_2_36 \
    --exclude-newer "$CUTOFF_310" "${args[@]}" \
    -o "$OUT/constraints.txt")
}

compile_py312() {
  (cd "$ROOT" && "$UV" pip compile "${COMMON[@]}" requirements/requirements-py312.in \
    --python-version 3.12 --python-platform x86_64-manylinux_2_39 \
    --exclude-newer "$CUTOFF_312" \
    -o "$OUT/constraints-py312.txt")
}

mkdir -p "$OUT"
case "$WHICH" in
  py310) compile_py310 ;;
  py312) compile_py312 ;;
  all) compile_py310; compile_py312 ;;
  *) echo "usage: $0 [py310|py312|all] [OUTPUT_DIR]" >&2; exit 2 ;;
esac
