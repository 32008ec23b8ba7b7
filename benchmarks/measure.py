"""Runs one workload in a fresh Python process and measures it from outside.

The child (`python -m benchmarks.workloads NAME PARAMS RESULT`) times its own
work, after its imports, and writes a JSON result; the parent samples the
resident memory of the child and every process below it (Spark's JVM, Beam's
worker processes) every `SAMPLE_SECONDS`.
"""
import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, Optional

import psutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_SECONDS = 0.2
_LOG_TAIL_CHARS = 2000


@dataclasses.dataclass
class Measurement:
    """One workload run: the child's own numbers plus what the parent saw.

    `seconds` is the work as the child timed it (imports excluded; up to the
    failure for a failed run); `process_seconds` the child's whole lifetime;
    `peak_rss_mb` the largest sum of RSS over the process tree (shared pages
    counted once per process, so an upper bound for forked workers).
    """

    status: str  # "ok", "failed" or "timeout"
    seconds: Optional[float]
    process_seconds: float
    peak_rss_mb: float
    rows: Optional[int]
    extra: Dict[str, Any]
    error: Optional[str] = None


def tree_rss_bytes(process: psutil.Process) -> int:
    """Sum of RSS of `process` and all its descendants (0 for vanished ones)."""
    total = 0
    try:
        members = [process] + process.children(recursive=True)
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass  # exited between listing and sampling
    return total


def run_workload(name: str, params: Dict[str, Any], log_path: str,
                 timeout_seconds: Optional[float] = None) -> Measurement:
    """Runs workload `name` with `params` in a child process and measures it.

    Args:
      name: a key of `benchmarks.workloads.WORKLOADS`.
      params: JSON-serialisable keyword arguments of the workload.
      log_path: the child's stdout and stderr go here (TF and Spark are
        chatty); its tail is quoted when the child dies without a result.
      timeout_seconds: kill the process tree after this long.
    """
    result_path = log_path + ".result.json"
    if os.path.exists(result_path):
        os.remove(result_path)
    command = [sys.executable, "-m", "benchmarks.workloads", name, json.dumps(params), result_path]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    started = time.perf_counter()
    peak = 0
    timed_out = False
    with open(log_path, "w") as log:
        child = psutil.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
        while child.poll() is None:
            peak = max(peak, tree_rss_bytes(child))
            if timeout_seconds and time.perf_counter() - started > timeout_seconds:
                timed_out = True
                _kill_tree(child)
                break
            time.sleep(SAMPLE_SECONDS)
        child.wait()
    process_seconds = time.perf_counter() - started
    peak_mb = peak / 2 ** 20
    if timed_out:
        return Measurement("timeout", None, process_seconds, peak_mb, None, {},
                           f"killed after {timeout_seconds:.0f} s")
    if not os.path.exists(result_path):
        return Measurement("failed", None, process_seconds, peak_mb, None, {},
                           f"exit code {child.returncode}, no result; log tail: "
                           f"{_tail(log_path)}")
    with open(result_path) as f:
        result = json.load(f)
    return Measurement(result["status"], result.get("seconds"), process_seconds, peak_mb,
                       result.get("rows"), result.get("extra", {}), result.get("error"))


def _kill_tree(process: psutil.Process) -> None:
    """Kills the workload we started and everything it started, by pid."""
    try:
        members = process.children(recursive=True) + [process]
    except psutil.Error:
        members = [process]
    for member in members:
        try:
            member.kill()
        except psutil.Error:
            pass


def _tail(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-_LOG_TAIL_CHARS:]
