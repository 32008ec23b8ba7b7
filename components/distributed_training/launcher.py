"""Starts N local worker processes for MultiWorkerMirroredStrategy and watches them.

Every worker is a fresh `python -m components.distributed_training.worker`
subprocess (the strategy must be created before any TensorFlow op, and the
TFX executor that calls this has run TensorFlow already), with its own
TF_CONFIG on free 127.0.0.1 ports and its output in
`<model_run_dir>/workers/worker-<i>.log`.

The launcher polls the processes. The first worker that exits non-zero or
is killed stops the others (SIGKILL to their process groups) and raises
`WorkerFailedError` naming the worker, its exit code or signal, and the tail
of its log. If not all workers have finished after `timeout_seconds`, all
are stopped and `TrainingTimeoutError` is raised. A peer that hangs without
dying (e.g. SIGSTOP) fails the survivors inside TensorFlow: the coordination
service of MultiWorkerMirroredStrategy misses its heartbeats and aborts
their collectives (optionally also a per-collective timeout, the spec's
`collective_timeout_seconds`), and the launcher reports the survivor.
"""
import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from components.distributed_training import spec as spec_lib
from components.distributed_training import tf_config as tf_config_lib

DEFAULT_TIMEOUT_SECONDS = 3600.0
TAIL_LINES = 25
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER_MODULE = "components.distributed_training.worker"


class DistributedTrainingError(RuntimeError):
    """Distributed training did not complete."""


class WorkerFailedError(DistributedTrainingError):
    def __init__(self, message: str, worker: int, exit_code: int):
        super().__init__(message)
        self.worker = worker
        self.exit_code = exit_code


class TrainingTimeoutError(DistributedTrainingError):
    pass


def describe_exit(code: int) -> str:
    """'exit code 3' or 'exit code -9 (killed by SIGKILL)'."""
    if code < 0:
        try:
            return f"exit code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"exit code {code} (killed by signal {-code})"
    return f"exit code {code}"


def tail(path: str, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as log_file:
            return "".join(log_file.readlines()[-lines:]).rstrip()
    except OSError as error:
        return f"(log unreadable: {error})"


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGKILL it when the launching thread's process dies.

    A launcher killed by a signal it cannot handle (SIGKILL, or SIGTERM from
    an orchestrator) would otherwise leave its workers running, in their own
    sessions, waiting for each other.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def default_command(spec_path: str, index: int) -> List[str]:
    return [sys.executable, "-m", WORKER_MODULE, "--spec", spec_path, "--strategy", "multi_worker"]


@dataclasses.dataclass
class Worker:
    index: int
    process: subprocess.Popen
    log_path: str
    tf_config: Dict


@dataclasses.dataclass
class LaunchResult:
    workers: int
    seconds: float
    log_paths: List[str]
    evidence: List[Optional[Dict]]


class WorkerGroup:
    """N worker processes of one training run; `start()` then `wait()`."""

    def __init__(self, spec: spec_lib.TrainingSpec, workers: int, spec_path: str,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                 command: Callable[[str, int], List[str]] = default_command,
                 env: Optional[Dict[str, str]] = None, poll_seconds: float = 0.2):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}.")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}.")
        self.spec, self.workers, self.spec_path = spec, workers, spec_path
        self.timeout_seconds, self.command, self.poll_seconds = timeout_seconds, command, poll_seconds
        self.env = env
        self.members: List[Worker] = []
        self.started_at: Optional[float] = None

    def start(self) -> "WorkerGroup":
        self.spec.write(self.spec_path)
        os.makedirs(self.spec.workers_dir(), exist_ok=True)
        configs = tf_config_lib.local_tf_configs(self.workers)
        base_env = dict(os.environ if self.env is None else self.env)
        # Workers import this repository's packages whatever their cwd.
        base_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (REPO_ROOT, base_env.get("PYTHONPATH", "")) if p)
        self.started_at = time.monotonic()
        for index, config in enumerate(configs):
            env = dict(base_env, TF_CONFIG=tf_config_lib.json.dumps(config))
            log_path = self.spec.log_path(tf_config_lib.task_label(config))
            with open(log_path, "wb") as log_file:
                process = subprocess.Popen(
                    self.command(self.spec_path, index), env=env, stdout=log_file,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
            self.members.append(Worker(index, process, log_path, config))
        return self

    def stop(self) -> None:
        """SIGKILL every worker still running (its whole process group) and reap it."""
        for member in self.members:
            if member.process.poll() is None:
                try:
                    os.killpg(member.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for member in self.members:
            try:
                member.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def wait(self) -> LaunchResult:
        if self.started_at is None:
            raise RuntimeError("start() the group first.")
        try:
            while True:
                codes = [member.process.poll() for member in self.members]
                for member, code in zip(self.members, codes):
                    if code not in (None, 0):
                        self.stop()
                        raise WorkerFailedError(self._failure_message(member, code), member.index, code)
                if all(code == 0 for code in codes):
                    break
                elapsed = time.monotonic() - self.started_at
                if elapsed > self.timeout_seconds:
                    running = [m for m, c in zip(self.members, codes) if c is None]
                    self.stop()
                    raise TrainingTimeoutError(self._timeout_message(running))
                time.sleep(self.poll_seconds)
        except BaseException:
            self.stop()
            raise
        labels = [tf_config_lib.task_label(m.tf_config) for m in self.members]
        return LaunchResult(self.workers, time.monotonic() - self.started_at,
                            [m.log_path for m in self.members],
                            [spec_lib.read_evidence(self.spec, label) for label in labels])

    def _failure_message(self, member: Worker, code: int) -> str:
        elapsed = time.monotonic() - self.started_at
        return (f"Distributed training failed: worker {member.index} of {self.workers} "
                f"(pid {member.process.pid}) ended with {describe_exit(code)} after {elapsed:.0f} s; "
                f"the other workers were stopped. Last lines of {member.log_path}:\n"
                f"{tail(member.log_path)}")

    def _timeout_message(self, running: Sequence[Worker]) -> str:
        names = ", ".join(f"worker {m.index} (pid {m.process.pid})" for m in running)
        last = running[0]
        return (f"Distributed training did not finish within {self.timeout_seconds:.0f} s: "
                f"{names} still running, all workers stopped. Last lines of {last.log_path}:\n"
                f"{tail(last.log_path)}")


def launch(spec: spec_lib.TrainingSpec, workers: int, spec_path: Optional[str] = None,
           timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, **kwargs) -> LaunchResult:
    """Runs `workers` worker processes to completion (see module doc)."""
    spec_path = spec_path or os.path.join(spec.workers_dir(), "spec.json")
    return WorkerGroup(spec, workers, spec_path, timeout_seconds, **kwargs).start().wait()
