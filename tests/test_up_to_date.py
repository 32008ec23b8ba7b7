"""local_runner.py's up-to-date check (pipeline/up_to_date.py), without TensorFlow.

`_run_steps` (curation + pipeline) is replaced by an autospec'd stand-in that
leaves a summary as the real one does; everything else is the runner's code.
"""
import os
import shutil
from unittest import mock

import pytest

import local_runner
from pipeline import up_to_date

CSV = "date,precipitation,temp_max,temp_min,wind,weather\n2012-01-01,0.0,12.8,5.0,4.7,drizzle\n"


@pytest.fixture
def runs(tmp_path):
    raw = tmp_path / "raw.csv"
    raw.write_text(CSV)
    argv = ["--runs-dir", str(tmp_path / "runs"), "--raw-data", str(raw), "--station", "s1"]
    calls = []

    def steps(flags, run_id, cleanup):
        calls.append(run_id)
        local_runner._LAST_SUMMARY[:] = [f"Pipeline rain-tomorrow, run {run_id}", "Blessed: yes"]
        return steps.exit_code

    steps.exit_code = 0

    def run(*extra, run_id="r"):
        flags = local_runner.parse_flags(argv + list(extra))
        os.makedirs(flags.pipeline_root, exist_ok=True)
        out = []
        with mock.patch.object(local_runner, "_run_steps", autospec=True, side_effect=steps), \
                mock.patch.object(local_runner, "_say", side_effect=lambda text="": out.append(text)):
            code = local_runner._run(flags, run_id)
        return code, "\n".join(out)

    return dict(run=run, calls=calls, steps=steps, raw=raw, tmp=tmp_path)


def test_second_unchanged_run_reprints_the_first_and_runs_nothing(runs):
    assert runs["run"](run_id="first")[0] == 0
    code, out = runs["run"](run_id="second")
    assert code == 0 and runs["calls"] == ["first"]
    assert "unchanged since run first" in out
    assert "Pipeline rain-tomorrow, run first" in out and "Blessed: yes" in out


@pytest.mark.parametrize("change", ["raw", "flag", "serving", "curated"])
def test_any_input_change_runs_again(runs, change):
    runs["run"](run_id="first")
    extra = []
    if change == "raw":
        runs["raw"].write_text(CSV + "2012-01-02,10.9,10.6,2.8,4.5,rain\n")
    elif change == "flag":
        extra = ["--train-steps", "7"]
    elif change == "serving":  # e.g. a version removed by hand: the baseline differs
        os.makedirs(runs["tmp"] / "runs" / "serving" / "rain_tomorrow" / "5")
    else:
        os.makedirs(runs["tmp"] / "runs" / "data" / "curated" / "span-9")
    runs["run"](*extra, run_id="second")
    assert runs["calls"] == ["first", "second"]


def test_code_change_runs_again(runs, tmp_path):
    flags = local_runner.parse_flags(["--runs-dir", str(tmp_path / "r"), "--raw-data", str(runs["raw"])])
    values = up_to_date.flag_values(flags)
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "model.py").write_text("UNITS = 32\n")
    key = up_to_date.run_key(values, str(repo), [str(runs["raw"])], "", "", "m")
    (repo / "models" / "model.py").write_text("UNITS = 64\n")
    assert up_to_date.run_key(values, str(repo), [str(runs["raw"])], "", "", "m") != key


def test_verbose_and_force_do_not_change_the_key_but_force_runs(runs):
    runs["run"](run_id="first")
    assert runs["run"]("--verbose", run_id="quiet")[0] == 0
    assert runs["calls"] == ["first"]
    runs["run"]("--force", run_id="forced")
    assert runs["calls"] == ["first", "forced"]


def test_no_cache_and_failed_runs_leave_no_record(runs):
    runs["run"](run_id="first")
    runs["run"]("--no-cache", run_id="nocache")
    runs["run"](run_id="third")  # the record was dropped: runs
    assert runs["calls"] == ["first", "nocache", "third"]
    runs["steps"].exit_code = 1
    runs["run"]("--force", run_id="rejected")
    runs["steps"].exit_code = 0
    runs["run"](run_id="after")
    assert runs["calls"][-2:] == ["rejected", "after"]


def test_a_damaged_record_is_ignored(runs, tmp_path):
    runs["run"](run_id="first")
    record = tmp_path / "runs" / "pipeline" / up_to_date.RECORD_FILE
    assert record.exists() and not list(record.parent.glob("*.tmp-*"))
    record.write_text("{not json")
    runs["run"](run_id="second")
    assert runs["calls"] == ["first", "second"]


@pytest.mark.parametrize("state, expected", [("NEW", True), ("RUNNING", True),
                                             ("COMPLETE", False), ("CACHED", False),
                                             ("FAILED", False)])
def test_unfinished_prefilter_reads_a_real_mlmd_store(tmp_path, state, expected):
    """The SQLite look-up that spares a clean store the TFX import agrees with ML Metadata."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    path = str(tmp_path / "metadata.sqlite")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Trainer"))
    store.put_executions([metadata_store_pb2.Execution(
        type_id=type_id, last_known_state=metadata_store_pb2.Execution.State.Value(state))])
    del store
    assert local_runner._may_have_unfinished_executions(path) is expected


def test_unfinished_prefilter_falls_back_to_the_full_check(tmp_path):
    path = tmp_path / "metadata.sqlite"
    path.write_bytes(b"not a database")
    assert local_runner._may_have_unfinished_executions(str(path)) is True


def test_incomplete_version_prefilter_agrees_with_the_serving_rule(tmp_path):
    """The os-only look that spares a clean serving directory the TensorFlow import
    answers True for every version serving.model_dir calls incomplete."""
    from serving import model_dir as serving_dir

    model_dir = tmp_path / "m"
    complete = model_dir / "1"
    (complete / "variables").mkdir(parents=True)
    (complete / "saved_model.pb").write_bytes(b"x")
    (complete / "variables" / "variables.index").write_bytes(b"x")
    (complete / "push_metadata.json").write_text('{"version": 1}')
    (model_dir / ".rejected-7-x").mkdir()  # moved aside earlier: not a version
    assert serving_dir.incomplete_reason(str(model_dir), 1) is None
    assert local_runner._may_have_incomplete_versions(str(model_dir)) is False
    broken = model_dir / "2"
    for missing in ("saved_model.pb", "variables/variables.index", "push_metadata.json"):
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(complete, broken)
        (broken / "push_metadata.json").write_text('{"version": 2}')
        (broken / missing).unlink()
        assert serving_dir.incomplete_reason(str(model_dir), 2) is not None, missing
        assert local_runner._may_have_incomplete_versions(str(model_dir)) is True, missing
