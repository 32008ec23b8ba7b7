"""Is a local run up to date? A make-style check before TensorFlow is imported.

An unchanged re-run of `local_runner.py` is all cache hits: curation skips
the raw files it already curated and every TFX component is CACHED. Getting
there still costs importing TFX and TensorFlow and compiling the pipeline
(several seconds on a laptop). This module decides the same thing from
files alone, in well under a second: a run whose *inputs* equal those of the
last successful run in the same pipeline root would reproduce that run, so
the runner prints that run's summary instead of running.

The inputs (`run_key`):
  * every flag value except --verbose and --force (thresholds, steps,
    locations, ...);
  * the bytes of every raw file the run would curate;
  * the project's code and schema: every *.py, *.pbtxt, *.json and *.txt
    file under pipeline/, components/, models/, schema/, serving/,
    requirements/ plus local_runner.py and setup.py;
  * the interpreter (its path), so another venv runs again;
  * the state outside the pipeline root a run reads: the curated span
    names and manifests, and the serving directory's versions (the
    baseline is its newest version).

Only a run that finished with exit code 0 is recorded (atomically, in
`<pipeline-root>/last_run.json`; any other run removes the record);
`--force` runs anyway and records; `--no-cache` neither reads nor records.
"""
import glob
import hashlib
import json
import os
import sys
from typing import Dict, Iterable, List, Optional

from components.spark_curation.inputs import file_sha256

RECORD_FILE = "last_run.json"
CODE_DIRS = ("pipeline", "components", "models", "schema", "serving", "requirements")
CODE_FILES = ("local_runner.py", "setup.py")
CODE_SUFFIXES = (".py", ".pbtxt", ".json", ".txt")
# Flags that change what is printed or whether the check applies, not what is computed.
IGNORED_FLAGS = frozenset({"verbose", "force"})


def code_digest(repo_root: str) -> str:
    """sha256 over the project's code, schema and locks (paths and bytes)."""
    paths = [os.path.join(repo_root, name) for name in CODE_FILES]
    for directory in CODE_DIRS:
        for root, dirs, files in os.walk(os.path.join(repo_root, directory)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            paths.extend(os.path.join(root, name) for name in files if name.endswith(CODE_SUFFIXES))
    digest = hashlib.sha256()
    for path in sorted(p for p in paths if os.path.isfile(p)):
        digest.update(os.path.relpath(path, repo_root).encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def raw_digests(patterns: Iterable[str]) -> Dict[str, str]:
    """{absolute file: sha256} of every file the raw-data paths/globs match."""
    found = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                found[os.path.abspath(path)] = file_sha256(path)
    return found


def _listing(directory: str, manifest: Optional[str] = None) -> List[List[str]]:
    """[[entry, sha256 of its manifest file or '']] of a directory ([] if missing)."""
    if not os.path.isdir(directory):
        return []
    rows = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name, manifest) if manifest else ""
        rows.append([name, file_sha256(path) if manifest and os.path.isfile(path) else ""])
    return rows


def flag_values(flags) -> dict:
    """The flags as plain JSON values, taken when the run starts (a run may add attributes)."""
    values = {name: value for name, value in sorted(vars(flags).items())
              if name not in IGNORED_FLAGS}
    return json.loads(json.dumps(values, sort_keys=True, default=repr))


def run_key(flag_values: dict, repo_root: str, raw_patterns: Iterable[str], curated_root: str,
            model_dir: str, manifest_file: str) -> str:
    """The sha256 of everything a local run's outcome depends on (module docstring).

    A run records the key of the state it leaves behind (its span, its pushed
    version); the next run compares the key of the state it starts from.
    """
    identity = {
        "flags": flag_values,
        "raw": raw_digests(raw_patterns),
        "code": code_digest(repo_root),
        "python": sys.executable,
        "curated": _listing(curated_root, manifest_file),
        "serving": _listing(model_dir, "push_metadata.json"),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def previous_run(pipeline_root: str, key: str) -> Optional[dict]:
    """The recorded run with this key, or None (no record, another key, unreadable)."""
    path = os.path.join(pipeline_root, RECORD_FILE)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    if not isinstance(record.get("summary"), list):
        return None
    return record


def record_run(pipeline_root: str, key: str, run_id: str, exit_code: int,
               summary: List[str], finished_at: str) -> str:
    """Writes the record of a finished run (temp file + rename: never half-written)."""
    path = os.path.join(pipeline_root, RECORD_FILE)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump({"key": key, "run_id": run_id, "exit_code": exit_code,
                   "finished_at": finished_at, "summary": list(summary)}, f, indent=1)
    os.replace(temporary, path)
    return path


def forget(pipeline_root: str) -> None:
    """Removes the record (a run that did not finish with 0 leaves none behind)."""
    try:
        os.remove(os.path.join(pipeline_root, RECORD_FILE))
    except FileNotFoundError:
        pass
