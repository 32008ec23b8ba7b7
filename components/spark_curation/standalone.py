"""A Spark standalone cluster on this machine, from pyspark's own distribution.

For the tests of the job on a real multi-process cluster and for the
cluster benchmark: a master and N workers (`bin/spark-class
org.apache.spark.deploy.master.Master` / `...worker.Worker`), all bound to
127.0.0.1 on free ports, each in its own process group so that stopping (or
killing) a worker also stops the executor JVMs it started. Workers inherit
`PYSPARK_PYTHON` = this interpreter and see this machine's file system.

    with StandaloneCluster(work_dir, workers=2).start() as cluster:
        run_curation(..., master=cluster.url)
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Callable, Dict, List

import pyspark

SPARK_HOME = os.path.dirname(os.path.abspath(pyspark.__file__))
START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.25):
    """predicate()'s first truthy value; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError as error:  # the UI is not listening yet
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def daemon_env(root: str) -> Dict[str, str]:
    """Environment for the daemons and the driver: this venv's Python, loopback only."""
    conf_dir = os.path.join(root, "conf")  # empty: no stray spark-defaults/log4j
    os.makedirs(conf_dir, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "SPARK_HOME": SPARK_HOME,
        "SPARK_CONF_DIR": conf_dir,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": os.path.join(root, "logs"),
        "SPARK_DAEMON_MEMORY": "256m",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    })
    return env


class StandaloneCluster:
    """A master and `workers` workers (`cores` each) from pyspark's distribution.

    Logs and work directories go under `root`. `start()` returns once every
    worker has registered with the master; `stop()` (or leaving the `with`
    block) ends every daemon, also after a failure.
    """

    def __init__(self, root: str, workers: int = 2, worker_memory: str = "1g", cores: int = 1):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.env = daemon_env(root)
        self.worker_count = workers
        self.worker_memory = worker_memory
        self.cores = cores
        self.port = free_port()
        self.webui_port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.processes: List[subprocess.Popen] = []
        self.worker_ui_ports: List[int] = []
        self.worker_processes: List[subprocess.Popen] = []

    def _spawn(self, name: str, args: List[str]) -> subprocess.Popen:
        log = open(os.path.join(self.root, f"{name}.log"), "wb")
        process = subprocess.Popen(
            [os.path.join(SPARK_HOME, "bin", "spark-class"), *args],
            env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)  # own process group
        log.close()
        self.processes.append(process)
        return process

    def master_state(self) -> dict:
        return get_json(f"http://127.0.0.1:{self.webui_port}/json/")

    def worker_state(self, index: int) -> dict:
        return get_json(f"http://127.0.0.1:{self.worker_ui_ports[index]}/json/")

    def alive_workers(self) -> int:
        return self.master_state()["aliveworkers"]

    def start(self) -> "StandaloneCluster":
        self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.port), "--webui-port", str(self.webui_port)])
        try:
            wait_for(lambda: self.master_state()["status"] == "ALIVE", START_TIMEOUT, "the master")
        except BaseException:
            self.stop()
            raise
        for index in range(self.worker_count):
            ui_port = free_port()
            work_dir = os.path.join(self.root, f"work-{index}")
            self.worker_ui_ports.append(ui_port)
            self.worker_processes.append(self._spawn(f"worker-{index}", [
                "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                "--cores", str(self.cores), "--memory", self.worker_memory, "--webui-port", str(ui_port),
                "--work-dir", work_dir]))
        try:
            wait_for(lambda: self.alive_workers() == self.worker_count, START_TIMEOUT,
                     f"{self.worker_count} workers to register")
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> "StandaloneCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def pids(self) -> List[int]:
        """Process ids of the daemons (their executors are their children)."""
        return [process.pid for process in self.processes]

    def kill_worker(self, index: int) -> None:
        """SIGKILL to the worker's process group: the worker and its executor JVM."""
        os.killpg(self.worker_processes[index].pid, signal.SIGKILL)
        self.worker_processes[index].wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The executor JVMs a worker started share its process group.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
