"""The curation job on a real Spark standalone cluster: a master and two workers.

The daemons come from pyspark's own distribution (`bin/spark-class
org.apache.spark.deploy.{master.Master,worker.Worker}`), bind 127.0.0.1 on
ports picked here, run in their own process groups and are always stopped.
Workers get one core each, run the venv's Python and see this machine's
file system, so the job's local paths mean the same everywhere.

The job runs as a CLI subprocess (`--spark-master spark://...`); its output
must equal, row for row, the output of the same job under `local[*]`: same
spans, same quarantine, same manifest (bar `created_at` and the output
directory), same Parquet rows in the same order.
"""
import glob
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

import pandas as pd
import pyarrow.parquet as pq
import pytest

from components import synthetic_weather
from components.spark_curation import job
from components.spark_curation.standalone import (
    StandaloneCluster,
    daemon_env,
    free_port,
    get_json,
    wait_for,
)
from components.spark_curation.spans import MANIFEST_FILE, STAGING_PREFIX

pytestmark = pytest.mark.spark_cluster

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_NAME = "rain-tomorrow-curation"
JOB_TIMEOUT = 600


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    handle = StandaloneCluster(str(tmp_path_factory.mktemp("spark-standalone")))
    try:
        yield handle.start()
    finally:
        handle.stop()


# ---------------------------------------------------------------- running the job

# Few shuffle partitions keep the many small stages cheap on a shared 2-core
# machine; the same setting for both masters (the output must not depend on it).
LOCAL_CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8"}
CLUSTER_CONF = dict(LOCAL_CONF, **{"spark.executor.memory": "512m"})
# The Seattle runs leave the shuffle partitions to the job (sized to the input,
# adaptive coalescing; job.session_defaults), on both masters.
SIZED_LOCAL_CONF = {"spark.ui.enabled": "false"}
SIZED_CLUSTER_CONF = dict(SIZED_LOCAL_CONF, **{"spark.executor.memory": "512m"})


def run_job(inputs: List[str], output_dir: str, master: str, env: Dict[str, str],
            conf: Optional[Dict[str, str]] = None, station: Optional[str] = None,
            wait: bool = True):
    """The job's CLI in a fresh Python process (no session shared with other tests)."""
    command = [sys.executable, "-m", "components.spark_curation.job", "--input", *inputs,
               "--output-dir", output_dir, "--spark-master", master,
               "--spark-conf", json.dumps(conf or {})]
    if station:
        command += ["--station", station]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if not wait:
        return process
    out, err = process.communicate(timeout=JOB_TIMEOUT)
    return process.returncode, out, err


def part_files(directory: str) -> List[str]:
    return sorted(glob.glob(os.path.join(directory, "part-*.parquet")))


def span_contents(output_dir: str) -> dict:
    """Everything a run published, part-file names aside.

    {"<kind>/span-<N>": {"files": other visible file names, "parts": number of
    part files, "manifest": manifest without created_at, with the quarantine
    path relative to output_dir}}, and the rows per span in file order.
    """
    contents, rows = {}, {}
    for kind in (job.CURATED_DIR, job.QUARANTINE_DIR):
        root = os.path.join(output_dir, kind)
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            directory = os.path.join(root, name)
            key = f"{kind}/{name}"
            visible = sorted(n for n in os.listdir(directory) if not n.startswith("."))
            entry = {"files": [n for n in visible if not n.startswith("part-")],
                     "parts": len(part_files(directory))}
            if MANIFEST_FILE in visible:
                with open(os.path.join(directory, MANIFEST_FILE)) as f:
                    manifest = json.load(f)
                manifest.pop("created_at")
                if manifest.get("quarantine_dir"):
                    manifest["quarantine_dir"] = os.path.relpath(manifest["quarantine_dir"], output_dir)
                entry["manifest"] = manifest
            contents[key] = entry
            rows[key] = pd.concat([pq.read_table(p).to_pandas() for p in part_files(directory)],
                                  ignore_index=True)
    return {"spans": contents, "rows": rows}


def assert_same_output(actual_dir: str, expected_dir: str) -> dict:
    actual, expected = span_contents(actual_dir), span_contents(expected_dir)
    assert actual["spans"] == expected["spans"]
    for key, frame in expected["rows"].items():
        pd.testing.assert_frame_equal(actual["rows"][key], frame, check_exact=True)
    return expected["spans"]


def staging_leftovers(output_dir: str) -> List[str]:
    return glob.glob(os.path.join(output_dir, "**", STAGING_PREFIX + "*"), recursive=True)


def finished_app(cluster: StandaloneCluster, before: int) -> dict:
    """The app the cluster completed since `before` completed apps."""
    def done():
        apps = cluster.master_state()["completedapps"]
        return apps[before:] if len(apps) > before else None

    (app,) = wait_for(done, 60, "the master to list the finished application")
    return app


def executor_apps_per_worker(cluster: StandaloneCluster) -> List[set]:
    """For each worker, the app ids it ran executors for (running or finished)."""
    result = []
    for index in range(cluster.worker_count):
        state = cluster.worker_state(index)
        result.append({e["appid"] for e in state["executors"] + state["finishedexecutors"]})
    return result


@pytest.fixture(scope="module")
def synthetic_inputs(tmp_path_factory) -> List[str]:
    """Three files of multi-station synthetic data with every kind of bad row."""
    directory = str(tmp_path_factory.mktemp("synthetic"))
    return synthetic_weather.generate(directory, stations=12, days=400, seed=7,
                                      bad_fraction=0.01, rows_per_file=1600)


# ---------------------------------------------------------------- tests


def test_cluster_has_two_one_core_workers(cluster):
    state = cluster.master_state()
    assert state["status"] == "ALIVE" and state["url"] == cluster.url
    assert state["aliveworkers"] == 2 and state["cores"] == 2
    assert sorted(w["cores"] for w in state["workers"]) == [1, 1]
    assert all(w["host"] == "127.0.0.1" for w in state["workers"])


def curate_both_ways(cluster: StandaloneCluster, inputs: List[str], root: str,
                     station: Optional[str] = None, sized_by_job: bool = False) -> dict:
    """Runs the job under local[*] and on the cluster; their output dirs and the app."""
    local_dir, cluster_dir = os.path.join(root, "local"), os.path.join(root, "cluster")
    local_conf, cluster_conf = ((SIZED_LOCAL_CONF, SIZED_CLUSTER_CONF) if sized_by_job
                                else (LOCAL_CONF, CLUSTER_CONF))
    code, _, err = run_job(inputs, local_dir, "local[*]", cluster.env, conf=local_conf,
                           station=station)
    assert code == 0, err[-3000:]
    apps_before = len(cluster.master_state()["completedapps"])
    code, out, err = run_job(inputs, cluster_dir, cluster.url, cluster.env, conf=cluster_conf,
                             station=station)
    assert code == 0, err[-3000:]
    return {"local": local_dir, "cluster": cluster_dir, "stdout": out, "stderr": err,
            "app": finished_app(cluster, apps_before),
            "executor_apps": executor_apps_per_worker(cluster)}


@pytest.fixture(scope="module")
def synthetic_runs(cluster, synthetic_inputs, tmp_path_factory) -> dict:
    return curate_both_ways(cluster, synthetic_inputs, str(tmp_path_factory.mktemp("synthetic-runs")))


@pytest.fixture(scope="module")
def seattle_runs(cluster, tmp_path_factory) -> dict:
    from vega_datasets import local_data

    return curate_both_ways(cluster, [local_data.seattle_weather.filepath],
                            str(tmp_path_factory.mktemp("seattle-runs")), station="seattle",
                            sized_by_job=True)


@pytest.mark.parametrize("dataset", ["seattle", "synthetic"])
def test_cluster_output_equals_local_output(request, dataset):
    runs = request.getfixturevalue(f"{dataset}_runs")
    local_dir, cluster_dir = runs["local"], runs["cluster"]
    assert "wrote" in runs["stdout"] and "as span 1" in runs["stdout"]
    # Quiet by default on a cluster too: no progress bars, no start-up WARNs.
    assert "[Stage" not in runs["stderr"] and " WARN " not in runs["stderr"], runs["stderr"][-2000:]

    # It really ran on the cluster: the master completed the app, and each
    # of the two worker processes ran an executor for it.
    app = runs["app"]
    assert app["name"] == APP_NAME and app["state"] == "FINISHED"
    assert [app["id"] in ids for ids in runs["executor_apps"]] == [True, True]

    spans = assert_same_output(cluster_dir, local_dir)
    manifest = spans["curated/span-1"]["manifest"]
    if dataset == "seattle":
        assert set(spans) == {"curated/span-1"}
        assert (manifest["rows_in"], manifest["rows_written"], manifest["rows_quarantined"]) == (1461, 1460, 0)
    else:
        assert set(spans) == {"curated/span-1", "quarantine/span-1"}
        bad = synthetic_weather.bad_row_count(12, 400, 0.01)
        assert manifest["rows_in"] == 12 * 400 + bad
        assert manifest["rows_quarantined"] == bad
        # Every bad-row kind is quarantined under its reason.
        assert set(manifest["quarantine_reasons"]) == set(synthetic_weather.BAD_ROW_KINDS.values())
        assert manifest["quarantine_dir"] == "quarantine/span-1"
    assert spans["curated/span-1"]["files"] == sorted([MANIFEST_FILE, "_SUCCESS"])
    assert not staging_leftovers(cluster_dir)


def test_second_run_on_the_cluster_is_a_no_op(cluster, synthetic_inputs, synthetic_runs):
    output_dir = synthetic_runs["cluster"]
    before = span_contents(output_dir)["spans"]
    code, out, err = run_job(synthetic_inputs, output_dir, cluster.url, cluster.env, conf=CLUSTER_CONF)
    assert code == 0, err[-3000:]
    assert "already curated as span 1" in out
    assert span_contents(output_dir)["spans"] == before


# ---------------------------------------------------------------- losing a worker

KILL_STATIONS, KILL_DAYS = 50, 1000


@pytest.fixture(scope="module")
def kill_inputs(tmp_path_factory) -> List[str]:
    directory = str(tmp_path_factory.mktemp("kill-inputs"))
    return synthetic_weather.generate(directory, stations=KILL_STATIONS, days=KILL_DAYS, seed=3,
                                      bad_fraction=0.005, rows_per_file=20_000)


@pytest.fixture(scope="module")
def kill_reference(kill_inputs, tmp_path_factory) -> str:
    """The local[*] output of the kill tests' data."""
    output_dir = str(tmp_path_factory.mktemp("kill-reference") / "out")
    env = daemon_env(str(tmp_path_factory.mktemp("kill-reference-env")))
    code, _, err = run_job(kill_inputs, output_dir, "local[*]", env, conf=LOCAL_CONF)
    assert code == 0, err[-3000:]
    return output_dir


@pytest.fixture
def fresh_cluster(tmp_path_factory):
    """A cluster of its own: the test kills one of its workers."""
    handle = StandaloneCluster(str(tmp_path_factory.mktemp("spark-standalone-kill")))
    try:
        yield handle.start()
    finally:
        handle.stop()


class SpanWatcher:
    """Scans output_dir while the job runs; records any span seen without its manifest."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.incomplete: List[str] = []
        self.scans = 0

    def scan(self) -> None:
        self.scans += 1
        for path in glob.glob(os.path.join(self.output_dir, "*", "span-*")):
            kind = os.path.basename(os.path.dirname(path))
            required = [MANIFEST_FILE, "_SUCCESS"] if kind == job.CURATED_DIR else ["_SUCCESS"]
            missing = [name for name in required if not os.path.exists(os.path.join(path, name))]
            if missing and not any(seen.startswith(path + " ") for seen in self.incomplete):
                self.incomplete.append(f"{path} (missing {missing})")


def driver_api(ui_port: int, path: str = ""):
    apps = get_json(f"http://127.0.0.1:{ui_port}/api/v1/applications", timeout=2)
    if not apps:
        return None
    return get_json(f"http://127.0.0.1:{ui_port}/api/v1/applications/{apps[0]['id']}{path}", timeout=2)


def busy_executor(ui_port: int) -> Optional[dict]:
    """An executor (not the driver) that is running a task right now."""
    executors = driver_api(ui_port, "/executors") or []
    busy = [e for e in executors if e["id"] != "driver" and e["isActive"] and e["activeTasks"] > 0]
    return busy[0] if busy else None


def worker_running(cluster: StandaloneCluster, executor_id: str) -> Optional[int]:
    for index in range(cluster.worker_count):
        if any(str(e["id"]) == executor_id for e in cluster.worker_state(index)["executors"]):
            return index
    return None


@pytest.mark.parametrize("phase", ["first tasks", "writing the span"])
def test_losing_a_worker_mid_job_leaves_no_half_written_span(
        fresh_cluster, kill_inputs, kill_reference, tmp_path, phase):
    cluster = fresh_cluster
    output_dir = str(tmp_path / "out")
    ui_port = free_port()
    conf = dict(CLUSTER_CONF, **{
        "spark.ui.enabled": "true", "spark.ui.port": str(ui_port), "spark.port.maxRetries": "0",
        # Many small tasks: both executors are busy for most of the job.
        "spark.sql.adaptive.enabled": "false", "spark.sql.shuffle.partitions": "32",
    })
    process = run_job(kill_inputs, output_dir, cluster.url, cluster.env, conf=conf, wait=False)
    watcher = SpanWatcher(output_dir)
    killed = None
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            watcher.scan()
            if killed is None:
                writing = glob.glob(os.path.join(output_dir, job.CURATED_DIR, STAGING_PREFIX + "*"))
                ready = phase == "first tasks" or writing
                try:
                    executor = busy_executor(ui_port) if ready else None
                except (OSError, ValueError):
                    executor = None  # the driver's UI is not up yet ("Spark is starting up")
                index = worker_running(cluster, executor["id"]) if executor else None
                if index is not None:
                    cluster.kill_worker(index)
                    killed = {"worker": index, "executor": executor["id"],
                              "active_tasks": executor["activeTasks"],
                              "staging_existed": bool(writing)}
            time.sleep(0.05)
        out, err = process.communicate(timeout=max(1, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    watcher.scan()

    assert killed is not None, f"the job ended before a worker could be killed during {phase}"
    assert killed["active_tasks"] > 0
    assert cluster.worker_processes[killed["worker"]].poll() is not None
    assert cluster.alive_workers() == 1 or wait_for(lambda: cluster.alive_workers() == 1, 60,
                                                    "the master to drop the killed worker")
    assert watcher.scans > 10 and watcher.incomplete == [], watcher.incomplete
    assert staging_leftovers(output_dir) == []
    if process.returncode == 0:
        # Spark re-ran the lost work on the surviving worker: same output.
        assert_same_output(output_dir, kill_reference)
    else:
        assert "Curation failed: the Spark job failed; no span was published." in err, err[-3000:]
        for kind in (job.CURATED_DIR, job.QUARANTINE_DIR):
            assert glob.glob(os.path.join(output_dir, kind, "span-*")) == []
    print(f"killed {killed} during {phase}: exit code {process.returncode}")


def test_cli_reports_a_spark_failure_clearly(monkeypatch, capsys, tmp_path):
    """The message the job prints when Spark gives up (e.g. all retries of a task failed)."""
    from py4j.protocol import Py4JJavaError

    class JavaException:
        _target_id = "o1"  # what py4j's error keeps of the Java object

        def __str__(self):
            return ("org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in "
                    "stage 3.0 failed 4 times\n\tat org.apache.spark.scheduler...")

    def failing(*args, **kwargs):
        raise Py4JJavaError("An error occurred while calling o81.parquet.", JavaException())

    monkeypatch.setattr(job, "run_curation", failing)
    code = job.main(["--input", "a.csv", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [
        "Curation failed: the Spark job failed; no span was published.",
        "org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 "
        "failed 4 times"]
