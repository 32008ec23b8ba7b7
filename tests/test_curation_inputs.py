"""Pure parts of the curation inputs: stations per file, bounds shared with serving.

No Spark here; the Spark runs of the same rules are in tests/test_spark_curation.py.
"""
import hashlib
import json

import pytest

from components.spark_curation import contract, inputs, job
from components.spark_curation.inputs import RawInput, StationMappingError
from serving import observations as obs

RAW = ["north.csv", "raw/south*.csv", "east.csv"]


def test_no_station_leaves_every_file_to_its_column():
    assert inputs.pair_stations(RAW, None) == [RawInput(p) for p in RAW]
    assert inputs.pair_stations(RAW, []) == [RawInput(p) for p in RAW]


def test_one_station_is_a_default_for_every_file():
    assert inputs.pair_stations(RAW, ["x"]) == [RawInput(p, "x") for p in RAW]
    assert inputs.pair_stations(RAW, "x") == [RawInput(p, "x") for p in RAW]


def test_as_many_stations_as_raw_data_pair_in_order():
    assert inputs.pair_stations(RAW, ["n", " s ", "e"]) == [
        RawInput("north.csv", "n", paired=True), RawInput("raw/south*.csv", "s", paired=True),
        RawInput("east.csv", "e", paired=True)]


@pytest.mark.parametrize("stations, message", [
    (["a", "b"], "2 --station values for 3 --raw-data values"),
    (["a", "b", "c", "d"], "4 --station values for 3 --raw-data values"),
    (["a", " ", "c"], "--station value 2 of 3 is blank"),
])
def test_other_station_counts_are_usage_errors(stations, message):
    with pytest.raises(StationMappingError, match=message) as error:
        inputs.pair_stations(RAW, stations)
    # A usage error for command lines, a CurationError for run_curation's callers.
    assert isinstance(error.value, ValueError) and isinstance(error.value, contract.CurationError)


def test_station_from_filename():
    assert inputs.pair_stations(RAW, None, True) == [RawInput(p, from_filename=True) for p in RAW]
    with pytest.raises(StationMappingError, match="exclude each other"):
        inputs.pair_stations(RAW, ["x"], True)
    assert inputs.station_from_filename("/data/raw/KSEA.csv") == "KSEA"
    assert inputs.station_from_filename("KSEA.csv.gz") == "KSEA"
    assert inputs.station_from_filename("st.paul.csv") == "st.paul"


def test_one_file_two_stations_is_refused(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("date\n")
    raw = inputs.pair_stations([str(path), str(tmp_path / "*.csv")], ["x", "y"])
    with pytest.raises(contract.CurationError, match="matched by more than one --raw-data value"):
        inputs.resolve_stations(raw)
    same = inputs.pair_stations([str(path), str(tmp_path / "*.csv")], ["x", "x"])
    assert inputs.resolve_stations(same) == {str(path): inputs.StationSource("x", "paired")}


def test_fingerprint_of_one_station_for_all_is_unchanged():
    # Spans curated before stations per file existed must still be recognised.
    digests = {"/a.csv": "1" * 64, "/b.csv": "2" * 64}
    before = hashlib.sha256(json.dumps({"contents": ["1" * 64, "2" * 64], "station": "x"},
                                       sort_keys=True).encode()).hexdigest()
    assert inputs.inputs_fingerprint(digests, {"/a.csv": "x", "/b.csv": "x"}) == before
    assert inputs.inputs_fingerprint(digests, "x") == before
    pairs = {"/a.csv": "x", "/b.csv": "y"}
    assert inputs.inputs_fingerprint(digests, pairs) != inputs.inputs_fingerprint(digests, "x")
    assert inputs.inputs_fingerprint(digests, pairs) != inputs.inputs_fingerprint(
        digests, {"/a.csv": "y", "/b.csv": "x"})


# ---------------------------------------------------------------- job flags


def test_cli_flags_pair_stations_and_check_the_ceiling(capsys):
    flags = job.parse_flags(["--input", "a.csv", "b.csv", "--station", "n", "--station", "s",
                             "--output-dir", "out"])
    assert flags.inputs == [RawInput("a.csv", "n", paired=True), RawInput("b.csv", "s", paired=True)]
    assert flags.max_quarantine_share == job.DEFAULT_MAX_QUARANTINE_SHARE == 0.05
    assert flags.verbose is None
    for bad in (["--max-quarantine-share", "nan"], ["--max-quarantine-share", "-0.1"],
                ["--station", "x", "--station-from-filename"]):
        with pytest.raises(SystemExit) as exit_:
            job.parse_flags(["--input", "a.csv", "--output-dir", "out", *bad])
        assert exit_.value.code == 2
    assert "--max-quarantine-share" in capsys.readouterr().err


# ---------------------------------------------------------------- Spark session settings (#11)


def test_session_is_sized_to_the_input_and_quiet_unless_verbose(monkeypatch):
    quiet = job.session_defaults(48_000)
    assert quiet["spark.sql.shuffle.partitions"] == "1"
    assert quiet["spark.sql.adaptive.enabled"] == "true"
    assert quiet["spark.sql.adaptive.coalescePartitions.enabled"] == "true"
    assert quiet["spark.ui.showConsoleProgress"] == "false"
    log4j = quiet["spark.driver.extraJavaOptions"].split("file:", 1)[1]
    with open(log4j) as f:
        assert "rootLogger.level = error" in f.read()
    assert job.session_defaults(39 * 2**20)["spark.sql.shuffle.partitions"] == "3"
    assert job.session_defaults(10 * 2**40)["spark.sql.shuffle.partitions"] == "200"
    loud = job.session_defaults(48_000, verbose=True)
    assert "spark.ui.showConsoleProgress" not in loud and "spark.driver.extraJavaOptions" not in loud
    monkeypatch.setenv(job.VERBOSE_ENV, "1")
    assert job._verbose(None) is True and job._verbose(False) is False
    monkeypatch.delenv(job.VERBOSE_ENV)
    assert job._verbose(None) is False


# ---------------------------------------------------------------- serving uses the same bounds (#12.5)


@pytest.mark.parametrize("row, field, reason", [
    ({"precipitation": "600"}, "precipitation", "precipitation above 500 mm/day"),
    ({"wind": "80.5"}, "wind", "wind above 75 m/s"),
    ({"temp_max": "61"}, "temp_max", "impossible temperature"),
])
def test_serving_refuses_what_curation_quarantines(row, field, reason):
    good = {"date": "2021-01-01", "precipitation": "500", "temp_max": "11", "temp_min": "6",
            "wind": "75"}
    assert obs.from_text(good).precipitation == 500.0  # the maxima themselves are valid
    with pytest.raises(obs.InvalidObservation) as raised:
        obs.from_text(dict(good, **row))
    assert (raised.value.field, raised.value.reason) == (field, reason)
