"""Clean-up at start (issue #12, item 5): dead runs' executions, broken serving versions."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tfx import v1 as tfx

import local_runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@tfx.dsl.components.component
def Sleeper(seconds: tfx.dsl.components.Parameter[int],
            model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model]) -> None:
    """Starts writing its output, then hangs (until killed)."""
    with open(os.path.join(model.uri, "partial.txt"), "w") as f:
        f.write("half done")
    time.sleep(seconds)


def sleeper_pipeline(root: str):
    return tfx.dsl.Pipeline(
        pipeline_name="p", pipeline_root=root,
        components=[Sleeper(seconds=600).with_id("Sleeper")], enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(root, local_runner.METADATA_FILE)))


def _flags(tmp_path, **extra):
    argv = ["--runs-dir", str(tmp_path / "runs"), "--pipeline-name", "p"]
    for key, value in extra.items():
        argv += ["--" + key.replace("_", "-"), value]
    return local_runner.parse_flags(argv)


def _running_execution(root):
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import artifact_lookup

    if not os.path.exists(os.path.join(root, local_runner.METADATA_FILE)):
        return None
    try:
        store = artifact_lookup.open_store(root)
        for execution in store.get_executions():
            if execution.last_known_state == metadata_store_pb2.Execution.RUNNING:
                return execution
    except Exception:  # the store is being created by the other process
        return None
    return None


def test_execution_left_running_by_a_killed_run_is_marked_failed_and_reported(tmp_path):
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import artifact_lookup

    flags = _flags(tmp_path)
    root = flags.pipeline_root
    script = ("import sys; from tfx import v1 as tfx; from tests import test_reliability_cleanup as t\n"
              f"tfx.orchestration.LocalDagRunner().run(t.sleeper_pipeline({root!r}))\n")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        execution = None
        while execution is None and time.time() < deadline and process.poll() is None:
            time.sleep(1)
            execution = _running_execution(root)
        assert execution is not None, "the pipeline never reached the sleeping component"
        time.sleep(1)  # let it create its output directory
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    notes = local_runner.clean_up_at_start(flags, "cleanup-run")

    assert len(notes) == 1, notes
    note = notes[0]
    assert f"execution {execution.id} (Sleeper)" in note and "left RUNNING" in note
    assert "marked FAILED" in note
    output_dir = os.path.join(root, "Sleeper", "model", str(execution.id))
    assert output_dir in note and os.path.exists(os.path.join(output_dir, "partial.txt"))
    store = artifact_lookup.open_store(root)
    [after] = store.get_executions_by_id([execution.id])
    assert after.last_known_state == metadata_store_pb2.Execution.FAILED
    assert "marked FAILED by run cleanup-run" in \
        after.custom_properties[artifact_lookup.ABANDONED_BY].string_value
    # Nothing is left to clean on the next start.
    assert local_runner.clean_up_at_start(flags, "next-run") == []


def _version(model_dir, version, files):
    path = os.path.join(model_dir, str(version))
    for name, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), "w") as f:
            f.write(content)
    return path


def test_half_written_serving_versions_are_moved_aside(tmp_path, capsys):
    from serving import model_dir as serving_dir

    flags = _flags(tmp_path)
    model_dir = os.path.join(flags.serving_base, flags.model_name)
    complete = {"saved_model.pb": "pb", "variables/variables.index": "i",
                serving_dir.METADATA_FILE: json.dumps({"version": 100})}
    _version(model_dir, 100, complete)
    _version(model_dir, 200, {"variables/variables.data-00000-of-00001": "half"})
    _version(model_dir, 250, {"saved_model.pb": "pb"})  # variables never written
    _version(model_dir, 300, {"saved_model.pb": "pb", "variables/variables.index": "i"})

    notes = local_runner.clean_up_at_start(flags, "r")

    assert serving_dir.existing_versions(model_dir) == [100, 300]
    hidden = sorted(n for n in os.listdir(model_dir) if n.startswith(local_runner.REJECTED_PREFIX))
    assert [n.split("-")[1] for n in hidden] == ["200", "250"]
    assert os.path.exists(os.path.join(model_dir, hidden[0], "variables"))  # kept for inspection
    assert any("200 is incomplete (missing saved_model.pb): moved aside" in n for n in notes)
    assert any("250 is incomplete (missing variables" in n for n in notes)
    assert any("300 was not pushed by this pipeline" in n and "left in place" in n for n in notes)
    assert "Clean-up: " in capsys.readouterr().out


def test_clean_up_runs_under_the_lock_before_curation_and_is_in_the_summary(tmp_path, monkeypatch, capsys):
    from components.spark_curation.job import CurationError
    from pipeline.run_summary import RunSummary, format_run_summary

    flags = _flags(tmp_path)
    model_dir = os.path.join(flags.serving_base, flags.model_name)
    _version(model_dir, 7, {"junk.txt": "x"})

    def curate(flags, meanwhile=None):
        assert not os.path.exists(os.path.join(model_dir, "7")), "curation before clean-up"
        raise CurationError("stop here")

    monkeypatch.setattr(local_runner, "curate", curate)
    code = local_runner.main(["--runs-dir", str(tmp_path / "runs"), "--pipeline-name", "p"])
    assert code == local_runner.EXIT_DATA_REJECTED
    assert "Clean-up: serving version" in capsys.readouterr().out

    text = format_run_summary(RunSummary("p", "r", [], cleanup=["moved aside x"]))
    assert "Clean-up at start:\n  - moved aside x" in text


def test_summary_says_the_pusher_failed_rather_than_did_not_run():
    from pipeline.run_summary import ComponentRun, RunSummary, format_run_summary

    failed = RunSummary("p", "r", [ComponentRun("Pusher", "FAILED", 1.0)])
    assert "Push: the pusher failed, nothing pushed" in format_run_summary(failed)
    absent = RunSummary("p", "r", [ComponentRun("AnomalyGate", "FAILED", 1.0)])
    assert "Push: pusher did not run, nothing pushed" in format_run_summary(absent)
