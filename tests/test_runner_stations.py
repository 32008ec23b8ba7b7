"""local_runner's station flags (issue #12.3) and quarantine ceiling.

The pairing itself is `components.spark_curation.inputs.pair_stations`
(tested with real Spark in tests/test_spark_curation.py); here: the runner's
flags reach it, bad combinations are usage errors before any work, and the
pairs and the ceiling reach `run_curation` (a fake bound to its signature).
"""
import os
from unittest import mock

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


def test_paired_stations_and_the_ceiling_reach_the_curation_job(tmp_path, monkeypatch):
    flags = local_runner.parse_flags([
        "--runs-dir", str(tmp_path), "--raw-data", "raw/north.csv", "--station", "KNOR",
        "--raw-data", "raw/south.csv", "--station", "KSOU", "--max-quarantine-share", "0.2"])
    fake = mock.create_autospec(job.run_curation, return_value=mock.Mock(
        skipped=False, rows_in=4, rows_written=2, span=1, span_dir="d", rows_quarantined=0,
        quarantine_reasons={}))
    monkeypatch.setattr(job, "run_curation", fake)
    local_runner.curate(flags)
    (raw_inputs, data_dir), kwargs = fake.call_args
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
