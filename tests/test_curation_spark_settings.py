"""Issue #11: the bundled 1,461-row curation ran 400- and 200-task stages and
flooded the console with progress bars and start-up WARNs.

The job's CLI runs in a fresh process (its own JVM, as a user runs it) with
Spark's event log on; the log tells how many tasks each stage had.
"""
import glob
import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(tmp_path, env_extra=None):
    from vega_datasets import local_data

    events = tmp_path / "events"
    events.mkdir()
    conf = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{events}",
            "spark.ui.enabled": "false"}
    command = [sys.executable, "-m", "components.spark_curation.job",
               "--input", local_data.seattle_weather.filepath, "--station", "seattle",
               "--output-dir", str(tmp_path / "out"), "--master", "local[2]",
               "--spark-conf", json.dumps(conf)]
    env = {key: value for key, value in os.environ.items() if key != "SPARK_CURATION_VERBOSE"}
    env.update(env_extra or {})
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    stage_tasks = []
    for path in glob.glob(str(events / "*")):
        with open(path) as f:
            for line in f:
                event = json.loads(line)
                if event["Event"] == "SparkListenerStageCompleted":
                    stage_tasks.append(event["Stage Info"]["Number of Tasks"])
    return done, stage_tasks


@pytest.mark.slow
def test_bundled_curation_uses_few_tasks_and_prints_only_its_summary(tmp_path):
    done, stage_tasks = run_cli(tmp_path)
    # Before: 10 stages, 1,605 tasks, the largest 400 (Spark's 200 shuffle partitions).
    assert stage_tasks and max(stage_tasks) <= 4 and sum(stage_tasks) <= 40, stage_tasks
    assert done.stderr == ""  # no progress bars, no WARNs, no "Setting default log level"
    assert done.stdout.startswith("Read 1461 rows from 1 file(s); wrote 1460 labelled rows")


@pytest.mark.slow
def test_verbose_keeps_sparks_console_output(tmp_path):
    done, _ = run_cli(tmp_path, {"SPARK_CURATION_VERBOSE": "1"})
    assert "WARN" in done.stderr or "[Stage" in done.stderr or "log level" in done.stderr, done.stderr
