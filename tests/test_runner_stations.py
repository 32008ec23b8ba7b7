"""local_runner's station flags (issue #12.3) and quarantine ceiling.

The pairing itself is `components.spark_curation.inputs.pair_stations`
(tested with real Spark in tests/test_spark_curation.py); here: the runner's
flags reach it, bad combinations are usage errors before any work, and the
pairs and the ceiling reach `run_curation` (a fake bound to its signature).
"""
import inspect
import os

import pytest

import local_runner
from components.spark_curation import job
from tests.test_reliability_flags import no_work  # noqa: F401 (a fixture)


@pytest.mark.parametrize("argv, says", [
    (["--raw-data", "a.csv", "--raw-data", "b.csv", "--station", "x", "--station", "y",
      "--station", "z"], "3"),
    (["--raw-data", "a.csv", "--station-from-filename", "--station", "x"], "--station"),
    (["--max-quarantine-share", "2"], "--max-quarantine-share"),
    (["--max-quarantine-share", "abc"], "--max-quarantine-share"),
])
def test_bad_station_flags_are_usage_errors_before_any_work(argv, says, tmp_path, no_work, capsys):
    code = local_runner.main(["--runs-dir", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err
    assert code == local_runner.EXIT_USAGE == 2, err
    assert says in err, err
    assert "Traceback" not in err
    assert no_work == []
    assert not os.path.exists(tmp_path / "runs")


def test_a_count_mismatch_names_both_counts(tmp_path, no_work, capsys):
    local_runner.main(["--runs-dir", str(tmp_path), "--raw-data", "a.csv", "--raw-data", "b.csv",
                       "--raw-data", "c.csv", "--station", "x", "--station", "y"])
    err = capsys.readouterr().err
    assert "2" in err and "3" in err and "--station" in err, err


def test_paired_stations_and_the_ceiling_reach_the_curation_job(tmp_path):
    flags = local_runner.parse_flags([
        "--runs-dir", str(tmp_path), "--raw-data", "raw/north.csv", "--station", "KNOR",
        "--raw-data", "raw/south.csv", "--station", "KSOU", "--max-quarantine-share", "0.2"])
    # local_runner.curate runs job.run_curation(*args, **kwargs) in a child process.
    args, kwargs = local_runner.curation_call(flags)
    inspect.signature(job.run_curation).bind(*args, **kwargs)  # a call the job accepts
    raw_inputs, data_dir = args
    assert [(i.pattern, i.station) for i in raw_inputs] == [
        ("raw/north.csv", "KNOR"), ("raw/south.csv", "KSOU")]
    assert data_dir == flags.data_dir
    assert kwargs["max_quarantine_share"] == 0.2


def test_station_from_file_name_and_the_bundled_default(tmp_path):
    from_name = local_runner.parse_flags(["--runs-dir", str(tmp_path), "--raw-data", "raw/KSEA.csv",
                                          "--station-from-filename"])
    # the station is taken from each matched file's name when it is read
    assert [(i.pattern, i.station, i.from_filename) for i in from_name.raw_inputs] == [
        ("raw/KSEA.csv", None, True)]
    bundled = local_runner.parse_flags(["--runs-dir", str(tmp_path)])
    assert [i.station for i in bundled.raw_inputs] == ["seattle"]
    assert bundled.max_quarantine_share == 0.05
