"""One run at a time per runs dir, and the summary of the caller's own run (issue #12, item 2)."""
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


def _no_work(monkeypatch):
    """Fails the test if the runner starts curation or the pipeline."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the second run did work although the lock is held")

    monkeypatch.setattr(local_runner, "curate", forbidden)
    monkeypatch.setattr(local_runner, "run_pipeline", forbidden)


def test_second_run_exits_with_the_lock_code_naming_the_holder(tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch)
    runs_dir = str(tmp_path / "runs")
    flags = local_runner.parse_flags(["--runs-dir", runs_dir])
    holder = {"run_id": "2026-01-01T10:00:00.000001", "pid": 424242,
              "host": "builder", "started_at": "2026-01-01T10:00:00+00:00"}
    with local_runner.run_lock(local_runner._lock_dirs(flags), holder):
        code = local_runner.main(["--runs-dir", runs_dir])
    err = capsys.readouterr().err
    assert code == local_runner.EXIT_LOCKED == 4
    assert "pid 424242" in err and "started 2026-01-01T10:00:00+00:00" in err
    assert "run 2026-01-01T10:00:00.000001" in err
    assert "one run at a time" in err and "Traceback" not in err
    # Nothing was curated.
    assert not os.path.exists(os.path.join(runs_dir, "data", "curated"))


def test_lock_on_any_of_the_run_directories_blocks(tmp_path, monkeypatch, capsys):
    """An explicit --serving-base shared by two runs dirs is still one run at a time."""
    _no_work(monkeypatch)
    serving = str(tmp_path / "shared-serving")
    with local_runner.run_lock([serving], {"pid": 1, "run_id": "r", "started_at": "t", "host": "h"}):
        code = local_runner.main(["--runs-dir", str(tmp_path / "other"), "--serving-base", serving])
    assert code == local_runner.EXIT_LOCKED
    assert serving in capsys.readouterr().err


def test_lock_is_free_again_after_the_holder_finishes(tmp_path):
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    with local_runner.run_lock(dirs, {"pid": 1}):
        with pytest.raises(local_runner.RunLockedError):
            with local_runner.run_lock(dirs, {"pid": 2}):
                pass
    with local_runner.run_lock(dirs, {"pid": 3}):
        assert local_runner.read_lock_holder(os.path.join(dirs[0], local_runner.LOCK_FILE)) == {"pid": 3}
    # The record is cleared on release.
    assert local_runner.read_lock_holder(os.path.join(dirs[0], local_runner.LOCK_FILE)) == {}


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    directory = str(tmp_path / "runs")
    script = (
        "import sys, time, local_runner\n"
        f"with local_runner.run_lock([{directory!r}], {{'pid': 7, 'run_id': 'killed'}}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        with pytest.raises(local_runner.RunLockedError, match="run killed"):
            with local_runner.run_lock([directory], {}):
                pass
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with local_runner.run_lock([directory], {"pid": os.getpid()}):
        pass


# --- the summary describes the caller's run -----------------------------------


@tfx.dsl.components.component
def Noop(value: tfx.dsl.components.Parameter[int]) -> None:
    del value


@pytest.fixture
def two_runs(tmp_path):
    """Two runs of a one-node pipeline in one store, under run ids chosen here."""
    store_path = str(tmp_path / "metadata.sqlite")
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(store_path)

    def run(run_id, value):
        pipeline = tfx.dsl.Pipeline(
            pipeline_name="p", pipeline_root=str(tmp_path / "root"),
            components=[Noop(value=value).with_id("Noop")], enable_cache=False,
            metadata_connection_config=connection)
        local_runner._runner(run_id).run(pipeline)

    run("run-one", 1)
    time.sleep(0.01)
    run("run-two", 2)
    return connection


def test_runner_records_the_run_id_the_caller_chose(two_runs):
    from ml_metadata import metadata_store

    store = metadata_store.MetadataStore(two_runs)
    names = sorted(c.name for c in store.get_contexts_by_type("pipeline_run"))
    assert names == ["run-one", "run-two"]


def test_summary_describes_the_given_run_not_the_newest(two_runs):
    from pipeline.run_summary import collect_run_summary

    own = collect_run_summary(two_runs, "p", run_id="run-one")
    newest = collect_run_summary(two_runs, "p")
    assert own.run_id == "run-one" and newest.run_id == "run-two"
    assert [c.node_id for c in own.components] == ["Noop"]
    assert collect_run_summary(two_runs, "p", run_id="no-such-run") is None
