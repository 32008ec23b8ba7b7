"""Tests of the Spark curation job on hand-made CSVs and the bundled Seattle data.

One local[2] SparkSession serves the whole module; every expected value
below is worked out by hand from the CSV text next to it.
"""
import glob
import hashlib
import json
import math
import os
import re
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from components.spark_curation import inputs, job
from components.spark_curation.contract import (
    DAY_OF_YEAR_COS,
    DAY_OF_YEAR_SIN,
    TEMP_RANGE,
    WEATHER,
    curated_columns,
)
from models import features

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS = features.OBSERVATIONS
LABEL = features.LABEL_KEY

# Station a has a gap on 2020-03-04 and a day (02-29) before b's first day;
# dates mix both accepted formats.
TWO_STATIONS_CSV = """station,date,precipitation,temp_max,temp_min,wind,weather
a,2020/02/29,4,6,-2,8,snow
a,2020/03/01,1,10,0,2,rain
a,2020-03-02,0,12,2,4,sun
a,2020/03/03,3,14,4,6,rain
a,2020/03/05,0,8,1,1,
a,2020/03/06,2,9,3,3, Rain
a,2020/03/07,5,11,5,5,rain
b,2020/03/01,0,20,10,1,sun
b,2020-03-02,7,18,11,2,rain
b,2020/03/03,0,19,12,3,sun
"""

# No station column: the caller passes station="q". Line numbers count the
# header as line 1.
QUARANTINE_CSV = """date,precipitation,temp_max,temp_min,wind,weather
2021-01-01,0,10,5,3,sun
2021-01-02,1,11,6,3,rain
2021-13-01,1,11,6,3,rain
2021-01-03,,11,6,3,rain
2021-01-03,abc,11,6,3,rain
2021-01-03,-1,11,6,3,rain
2021-01-03,1,11,6,-2,rain
2021-01-03,1,5,6,3,rain
2021-01-03,1,75,6,3,rain
2021-01-02,9,11,6,3,rain
2021-01-03,1,11,6,3,rain,extra
2021-01-03,Infinity,11,6,3,rain
2021-01-03,2,12,7,4,rain
2021-01-04,0,12,7,4,sun
,0,12,7,4,sun
"""
# Sorted after the file above, so its 2021-01-04 row is the later duplicate.
QUARANTINE_LATER_CSV = """date,precipitation,temp_max,temp_min,wind
2021/01/04,5,12,7,4
2021/01/05,0,12,7,4
"""


def write(directory, name: str, text: str) -> str:
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def by_obs(name_of, values) -> dict:
    """{name_of(observation): value} for the observations in features order."""
    return {name_of(o): v for o, v in zip(OBS, values)}


def read_curated(span_dir: str) -> pd.DataFrame:
    frame = pq.read_table(span_dir).to_pandas()
    frame[features.DATE_KEY] = frame[features.DATE_KEY].astype(str)
    return frame.sort_values([features.STATION_KEY, features.DATE_KEY]).reset_index(drop=True)


def row(frame: pd.DataFrame, station: str, date: str) -> dict:
    match = frame[(frame[features.STATION_KEY] == station) & (frame[features.DATE_KEY] == date)]
    assert len(match) == 1, f"expected one row for {station} {date}, got {len(match)}"
    return match.iloc[0].to_dict()


def assert_row(actual: dict, expected: dict) -> None:
    for name, value in expected.items():
        if value is None:
            assert actual[name] is None or pd.isna(actual[name]), name
        elif isinstance(value, float):
            assert actual[name] == pytest.approx(value), name
        else:
            assert actual[name] == value, name


def leftovers(output_dir) -> list:
    """Staging directories anywhere under output_dir."""
    return [p for p in glob.glob(os.path.join(str(output_dir), "**", ".tmp-*"), recursive=True)]


def snapshot(directory) -> dict:
    """{relative path: (size, mtime)} of every file under directory."""
    result = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            result[os.path.relpath(path, directory)] = (os.path.getsize(path), os.path.getmtime(path))
    return result


@pytest.fixture(scope="session")
def spark():
    session = (
        SparkSession.builder.master("local[2]")
        .appName("test-spark-curation")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def two_stations(spark, tmp_path_factory):
    """(result, curated rows) of the two-station file."""
    directory = tmp_path_factory.mktemp("two_stations")
    path = write(directory, "stations.csv", TWO_STATIONS_CSV)
    result = job.run_curation(path, str(directory / "out"), spark=spark)
    return result, read_curated(result.span_dir)


# ---------------------------------------------------------------- contract


def test_curated_columns_cover_exactly_the_model_features_plus_keys():
    names = [name for name, _ in curated_columns()]
    assert len(names) == len(set(names))
    expected = set(features.MODEL_FEATURES) | {features.DATE_KEY, features.MONTH_KEY, LABEL}
    assert set(names) == expected


# ---------------------------------------------------------------- features


def test_counts_of_two_station_run(two_stations):
    result, curated = two_stations
    # Not written: a 03-03 (03-04 missing), a 03-07 and b 03-03 (last days).
    assert (result.rows_in, result.rows_written, result.rows_quarantined) == (10, 7, 0)
    assert result.rows_unlabelled == 3
    assert result.span == 1 and not result.skipped
    assert result.quarantine_dir is None
    assert len(curated) == 7


def test_features_after_a_gap_match_hand_computation(two_stations):
    _, curated = two_stations
    angle = 2 * math.pi * 65 / 365.25  # 2020-03-05 is day 31 + 29 + 5 of a leap year
    expected = {
        features.STATION_KEY: "a", features.MONTH_KEY: 3, WEATHER: None,
        **by_obs(str, (0.0, 8.0, 1.0, 1.0)),
        TEMP_RANGE: 7.0,
        # 03-04 is absent: lag 1 is null, not the 03-03 row.
        **by_obs(lambda o: features.lag_name(o, 1), (None,) * 4),
        **by_obs(lambda o: features.lag_name(o, 2), (3.0, 14.0, 4.0, 6.0)),
        # Calendar windows: [03-03, 03-05] holds 2 rows, [02-28, 03-05] holds 5.
        **by_obs(lambda o: features.rolling_mean_name(o, 3), (1.5, 11.0, 2.5, 3.5)),
        **by_obs(lambda o: features.rolling_mean_name(o, 7), (1.6, 10.0, 1.0, 4.2)),
        DAY_OF_YEAR_SIN: math.sin(angle), DAY_OF_YEAR_COS: math.cos(angle),
        LABEL: 1,  # 03-06 had 2 mm
    }
    assert_row(row(curated, "a", "2020-03-05"), expected)


def test_features_on_the_day_after_a_gap(two_stations):
    _, curated = two_stations
    expected = {
        WEATHER: "rain",  # " Rain" normalised
        TEMP_RANGE: 6.0,
        **by_obs(lambda o: features.lag_name(o, 1), (0.0, 8.0, 1.0, 1.0)),
        **by_obs(lambda o: features.lag_name(o, 2), (None,) * 4),
        **by_obs(lambda o: features.rolling_mean_name(o, 3), (1.0, 8.5, 2.0, 2.0)),
        **by_obs(lambda o: features.rolling_mean_name(o, 7), (10 / 6, 59 / 6, 8 / 6, 4.0)),
        LABEL: 1,
    }
    assert_row(row(curated, "a", "2020-03-06"), expected)


def test_labels_are_next_day_rain_per_station(two_stations):
    _, curated = two_stations
    labels = {(r[features.STATION_KEY], r[features.DATE_KEY]): r[LABEL]
              for r in curated.to_dict("records")}
    assert labels == {
        ("a", "2020-02-29"): 1, ("a", "2020-03-01"): 0, ("a", "2020-03-02"): 1,
        ("a", "2020-03-05"): 1, ("a", "2020-03-06"): 1,
        ("b", "2020-03-01"): 1, ("b", "2020-03-02"): 0,
    }


def test_lags_and_means_stay_within_a_station(two_stations):
    _, curated = two_stations
    # Station a has 02-29 and 03-01 too; none of it may leak into b.
    assert_row(row(curated, "b", "2020-03-01"), {
        **by_obs(lambda o: features.lag_name(o, 1), (None,) * 4),
        **by_obs(lambda o: features.rolling_mean_name(o, 7), (0.0, 20.0, 10.0, 1.0)),
    })
    assert_row(row(curated, "b", "2020-03-02"), {
        **by_obs(lambda o: features.lag_name(o, 1), (0.0, 20.0, 10.0, 1.0)),
        **by_obs(lambda o: features.lag_name(o, 2), (None,) * 4),
        **by_obs(lambda o: features.rolling_mean_name(o, 3), (3.5, 19.0, 10.5, 1.5)),
    })
    assert_row(row(curated, "a", "2020-03-01"), {
        **by_obs(lambda o: features.lag_name(o, 1), (4.0, 6.0, -2.0, 8.0)),
        **by_obs(lambda o: features.rolling_mean_name(o, 3), (2.5, 8.0, -1.0, 5.0)),
    })


def test_changing_a_future_day_changes_no_earlier_feature(spark, tmp_path, two_stations):
    _, original = two_stations
    perturbed_csv = TWO_STATIONS_CSV.replace("a,2020/03/06,2,9,3,3", "a,2020/03/06,0,30,-5,20")
    path = write(tmp_path, "stations.csv", perturbed_csv)
    perturbed = read_curated(job.run_curation(path, str(tmp_path / "out"), spark=spark).span_dir)

    earlier = lambda frame: frame[frame[features.DATE_KEY] < "2020-03-06"].reset_index(drop=True)
    before, after = earlier(original), earlier(perturbed)
    feature_columns = [name for name in before.columns if name != LABEL]
    pd.testing.assert_frame_equal(before[feature_columns], after[feature_columns])
    # Only the label of the day before the changed day follows it (2 mm -> 0 mm).
    changed = before[LABEL] != after[LABEL]
    assert before[changed][[features.STATION_KEY, features.DATE_KEY]].values.tolist() == [
        ["a", "2020-03-05"]]
    assert after[changed][LABEL].tolist() == [0]


def test_parquet_schema_has_the_contract_types(two_stations):
    result, _ = two_stations
    parquet_type = {"string": pa.string(), "date": pa.date32(), "bigint": pa.int64(),
                    "double": pa.float64()}
    files = glob.glob(os.path.join(result.span_dir, "*.parquet"))
    schema = pq.read_schema(files[0])
    assert [(f.name, f.type) for f in schema] == [
        (name, parquet_type[kind]) for name, kind in curated_columns()]


# ---------------------------------------------------------------- quarantine


def test_each_kind_of_bad_row_is_quarantined_with_its_reason(spark, tmp_path):
    first = write(tmp_path, "a_first.csv", QUARANTINE_CSV)
    later = write(tmp_path, "b_later.csv", QUARANTINE_LATER_CSV)
    output_dir = str(tmp_path / "out")
    result = job.run_curation(str(tmp_path / "*.csv"), output_dir, station="q", spark=spark,
                              max_quarantine_share=1.0)

    expected_reasons = {
        "unparseable date": 1, "missing value in date": 1,
        "missing value in precipitation": 1, "non-numeric value in precipitation": 2,
        "negative precipitation": 1, "negative wind": 1, "impossible temperature": 2,
        "duplicate (station, date)": 2, "malformed row (wrong number of fields)": 1,
    }
    assert result.quarantine_reasons == expected_reasons
    assert (result.rows_in, result.rows_quarantined, result.rows_written) == (17, 12, 4)
    assert result.input_files == [first, later]

    quarantine = pq.read_table(result.quarantine_dir).to_pandas()
    reasons = {(os.path.basename(r["source_file"]), r["line_number"]): r["reason"]
               for r in quarantine.to_dict("records")}
    assert reasons == {
        ("a_first.csv", 4): "unparseable date",
        ("a_first.csv", 5): "missing value in precipitation",
        ("a_first.csv", 6): "non-numeric value in precipitation",
        ("a_first.csv", 7): "negative precipitation",
        ("a_first.csv", 8): "negative wind",
        ("a_first.csv", 9): "impossible temperature",
        ("a_first.csv", 10): "impossible temperature",
        ("a_first.csv", 11): f"duplicate (station, date): first seen at {first}:3",
        ("a_first.csv", 12): "malformed row (wrong number of fields)",
        ("a_first.csv", 13): "non-numeric value in precipitation",
        ("a_first.csv", 16): "missing value in date",
        ("b_later.csv", 2): f"duplicate (station, date): first seen at {first}:15",
    }
    raw = quarantine.set_index("line_number")
    assert raw.loc[6, "precipitation"] == "abc" and raw.loc[10, "temp_max"] == "75"
    assert quarantine["station"].unique().tolist() == ["q"]
    assert all(pa.types.is_string(f.type) for f in pq.read_schema(
        glob.glob(os.path.join(result.quarantine_dir, "*.parquet"))[0]) if f.name != "line_number")

    curated = read_curated(result.span_dir)
    # First occurrences win: 01-02 keeps 1 mm (not 9), 01-04 keeps 0 mm (not 5).
    assert curated[features.DATE_KEY].tolist() == ["2021-01-01", "2021-01-02", "2021-01-03", "2021-01-04"]
    assert curated["precipitation"].tolist() == [0.0, 1.0, 2.0, 0.0]
    assert curated[LABEL].tolist() == [1, 1, 0, 0]
    with open(os.path.join(result.span_dir, job.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert manifest["quarantine_reasons"] == expected_reasons
    assert manifest["rows_unlabelled"] == 1


def test_all_rows_quarantined_is_fatal_and_writes_nothing(spark, tmp_path):
    path = write(tmp_path, "bad.csv", "date,precipitation,temp_max,temp_min,wind\n"
                 "2021-01-01,-1,10,5,3\n2021-01-02,1,10,5,-3\n")
    output_dir = tmp_path / "out"
    with pytest.raises(job.CurationError, match="All 2 rows .*bad.csv.* failed validation"):
        job.run_curation(path, str(output_dir), station="s", spark=spark)
    assert not os.path.exists(output_dir)


def test_failure_while_writing_leaves_no_span_and_no_staging(spark, tmp_path, monkeypatch):
    path = write(tmp_path, "q.csv", QUARANTINE_CSV)
    output_dir = tmp_path / "out"

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(job, "_write_manifest", fail)
    with pytest.raises(OSError, match="disk full"):
        job.run_curation(path, str(output_dir), station="q", spark=spark, max_quarantine_share=1.0)
    assert glob.glob(os.path.join(str(output_dir), "*", "span-*")) == []
    assert leftovers(output_dir) == []


# ---------------------------------------------------------------- fatal input errors


def test_missing_required_column_names_file_and_column(spark, tmp_path):
    path = write(tmp_path, "no_temp_min.csv",
                 "date,precipitation,temp_max,wind\n2021-01-01,0,10,3\n2021-01-02,0,10,3\n")
    output_dir = tmp_path / "out"
    with pytest.raises(job.CurationError) as error:
        job.run_curation(path, str(output_dir), station="s", spark=spark)
    assert path in str(error.value) and "missing required column(s): temp_min." in str(error.value)
    assert not os.path.exists(output_dir)


def test_missing_station_without_default_is_fatal(spark, tmp_path):
    path = write(tmp_path, "x.csv", "date,precipitation,temp_max,temp_min,wind\n2021-01-01,0,10,5,3\n")
    with pytest.raises(job.CurationError, match=r"x\.csv is missing required column\(s\): station"):
        job.run_curation(path, str(tmp_path / "out"), spark=spark)


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("date,precipitation,temp_max,temp_min,wind\n\n", "has a header but no data rows"),
    (b"\x1f\x8b\x08\x00\xff\xfe", "Cannot read input file"),
])
def test_empty_or_unreadable_file_is_fatal(spark, tmp_path, content, message):
    path = tmp_path / "raw.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(job.CurationError, match=message):
        job.run_curation(str(path), str(tmp_path / "out"), station="s", spark=spark)
    assert not os.path.exists(tmp_path / "out")


def test_no_matching_input_is_fatal(spark, tmp_path):
    pattern = str(tmp_path / "nothing-*.csv")
    with pytest.raises(job.CurationError, match=re.escape(f"'{pattern}' matches no file")):
        job.run_curation(pattern, str(tmp_path / "out"), spark=spark)


# ---------------------------------------------------------------- spans


def test_spans_are_never_duplicated_or_overwritten(spark, tmp_path):
    output_dir = str(tmp_path / "out")
    first = write(tmp_path, "one.csv", TWO_STATIONS_CSV)
    run = lambda path, **kwargs: job.run_curation(path, output_dir, spark=spark, **kwargs)

    result = run(first)
    assert (result.span, result.skipped) == (1, False)
    before = snapshot(output_dir)

    again = run(first)
    assert (again.span, again.skipped, again.rows_written) == (1, True, 0)
    assert snapshot(output_dir) == before
    assert "already curated as span 1" in again.summary()

    second = write(tmp_path, "two.csv", TWO_STATIONS_CSV.replace("b,2020-03-02,7", "b,2020-03-02,8"))
    assert run(second).span == 2
    assert job.latest_span(output_dir) == 2

    third = write(tmp_path, "three.csv", TWO_STATIONS_CSV.replace("b,2020-03-02,7", "b,2020-03-02,9"))
    with pytest.raises(job.CurationError, match="span 1 already exists in .*span-1; refusing to overwrite"):
        run(third, span=1)
    assert sorted(os.listdir(os.path.join(output_dir, job.CURATED_DIR))) == ["span-1", "span-2"]
    assert leftovers(output_dir) == []

    with open(os.path.join(output_dir, job.CURATED_DIR, "span-1", job.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert job.find_span_for_inputs(output_dir, manifest["input_fingerprint"]) == 1
    assert job.find_span_for_inputs(output_dir, "0" * 64) is None
    with open(first, "rb") as f:
        assert manifest["input_files"] == [{"path": first, "sha256": hashlib.sha256(f.read()).hexdigest()}]


def test_span_pattern_constants_find_the_parquet(two_stations):
    result, _ = two_stations
    output_dir = os.path.dirname(os.path.dirname(result.span_dir))
    pattern = os.path.join(output_dir, job.CURATED_DIR, job.curated_span_pattern().format(SPAN=1))
    assert len(glob.glob(pattern)) == 1
    assert job.SPAN_DIR_PATTERN.format(SPAN=1) == os.path.basename(result.span_dir)
    assert os.path.exists(os.path.join(result.span_dir, "_SUCCESS"))


# ---------------------------------------------------------------- Seattle data


def test_bundled_seattle_data(spark, tmp_path):
    from vega_datasets import local_data

    csv_path = local_data.seattle_weather.filepath
    result = job.run_curation(csv_path, str(tmp_path / "out"), station="seattle", spark=spark)
    assert (result.rows_in, result.rows_written, result.rows_quarantined) == (1461, 1460, 0)
    assert result.quarantine_dir is None
    assert not os.path.exists(tmp_path / "out" / job.QUARANTINE_DIR)

    raw = pd.read_csv(csv_path)
    raw["rain_next"] = (raw["precipitation"].shift(-1) > 0).astype("int64")
    raw = raw.iloc[:-1]  # the last day has no tomorrow
    curated = read_curated(result.span_dir)
    assert curated[features.DATE_KEY].tolist() == pd.to_datetime(raw["date"]).dt.strftime("%Y-%m-%d").tolist()
    required = [features.STATION_KEY, features.DATE_KEY, features.MONTH_KEY, *OBS, LABEL]
    assert not curated[required].isna().any().any()
    assert (curated["precipitation"] == 0.0).sum() == (raw["precipitation"] == 0).sum() > 0
    assert curated[LABEL].tolist() == raw["rain_next"].tolist()
    # The file has no gaps, so row-based pandas windows equal calendar windows.
    lag = curated[features.lag_name("temp_max", 1)]
    assert lag.iloc[1:].tolist() == pytest.approx(raw["temp_max"].iloc[:-1].tolist())
    expected_mean = raw["wind"].rolling(7, min_periods=1).mean()
    assert curated[features.rolling_mean_name("wind", 7)].tolist() == pytest.approx(expected_mean.tolist())

    schema = pq.read_schema(glob.glob(os.path.join(result.span_dir, "*.parquet"))[0])
    assert schema.field(features.DATE_KEY).type == pa.date32()
    assert schema.field(features.MONTH_KEY).type == pa.int64()
    assert schema.field(LABEL).type == pa.int64()


# ---------------------------------------------------------------- CLI


def test_cli_reports_a_missing_column_and_exits_non_zero(tmp_path, capsys):
    path = write(tmp_path, "raw.csv", "date,precipitation,temp_max,temp_min\n2021-01-01,0,10,5\n")
    code = job.main(["--input", path, "--output-dir", str(tmp_path / "out"), "--station", "s"])
    assert code != 0
    err = capsys.readouterr().err
    assert "Curation failed" in err and path in err and "missing required column(s): wind." in err


def test_cli_summary_and_callers_session_survives(spark, tmp_path, capsys):
    path = write(tmp_path, "raw.csv", TWO_STATIONS_CSV)
    code = job.main(["--input", path, "--output-dir", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "Read 10 rows" in out and "wrote 7 labelled rows as span 1" in out
    # main() found the running session through getOrCreate and must not stop it.
    assert spark.range(3).count() == 3


def test_job_file_runs_as_a_script():
    script = os.path.join(REPO_ROOT, "components", "spark_curation", "job.py")
    done = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--output-dir" in done.stdout


# ---------------------------------------------------------------- stations per file (#12.3)

# Two stations' files without a station column, overlapping in dates.
NORTH_CSV = """date,precipitation,temp_max,temp_min,wind
2022-01-01,0,5,1,3
2022-01-02,2,6,2,4
2022-01-03,0,7,3,5
2022-01-04,1,8,4,6
"""
SOUTH_CSV = """date,precipitation,temp_max,temp_min,wind
2022-01-01,4,15,11,1
2022-01-02,0,16,12,2
2022-01-03,3,17,13,3
2022-01-04,0,18,14,4
"""


@pytest.fixture
def station_files(tmp_path):
    return [write(tmp_path, "north.csv", NORTH_CSV), write(tmp_path, "south.csv", SOUTH_CSV)]


def test_one_station_for_two_files_stops_at_the_quarantine_ceiling(spark, tmp_path, station_files):
    # What #12.3 saw: one --station for both files, so every south row is a
    # duplicate of a north day. Before, half the data vanished into the
    # quarantine and the run went on; now the ceiling stops it, naming why.
    output_dir = tmp_path / "out"
    with pytest.raises(job.CurationError) as error:
        job.run_curation(station_files, str(output_dir), station="x", spark=spark)
    message = str(error.value)
    assert "4 of 8 rows (50.0%) failed validation, above the quarantine ceiling of 5.0%" in message
    assert f"duplicate (station, date): 4 (e.g. {station_files[1]}:2)" in message
    assert not os.path.exists(output_dir)


def test_stations_pair_with_raw_data_in_order(spark, tmp_path, station_files):
    output_dir = str(tmp_path / "out")
    paired = inputs.pair_stations(station_files, ["n1", "s1"])
    result = job.run_curation(paired, output_dir, spark=spark)
    assert (result.rows_in, result.rows_quarantined, result.rows_written) == (8, 0, 6)
    curated = read_curated(result.span_dir)
    assert row(curated, "n1", "2022-01-02")["temp_max"] == 6.0
    assert row(curated, "s1", "2022-01-02")["temp_max"] == 16.0
    assert row(curated, "s1", "2022-01-02")[features.lag_name("precipitation", 1)] == 4.0
    with open(os.path.join(result.span_dir, job.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert manifest["input_stations"] == dict(zip(station_files, ["n1", "s1"]))

    # The same files with the stations swapped are other data: a new span.
    swapped = job.run_curation(inputs.pair_stations(station_files, ["s1", "n1"]), output_dir,
                               spark=spark)
    assert (swapped.span, swapped.skipped) == (2, False)
    assert row(read_curated(swapped.span_dir), "n1", "2022-01-02")["temp_max"] == 16.0
    # The same mapping again is recognised.
    assert job.run_curation(paired, output_dir, spark=spark).skipped


def test_station_from_file_name(spark, tmp_path, station_files):
    result = job.run_curation(inputs.pair_stations([str(tmp_path / "*.csv")], None, True),
                              str(tmp_path / "out"), spark=spark)
    assert result.rows_quarantined == 0
    assert sorted(read_curated(result.span_dir)[features.STATION_KEY].unique()) == ["north", "south"]


def test_a_station_column_conflicts_with_a_paired_station(spark, tmp_path, station_files):
    with_column = write(tmp_path, "zz_with_column.csv", TWO_STATIONS_CSV)
    output_dir = tmp_path / "out"
    for stations, from_filename, named in ((["n", "s", "z"], False, "its paired --station"),
                                           (None, True, "--station-from-filename")):
        raw = inputs.pair_stations(station_files + [with_column], stations, from_filename)
        with pytest.raises(job.CurationError) as error:
            job.run_curation(raw, str(output_dir), spark=spark)
        assert f"Input file {with_column} has a station column, but {named}" in str(error.value)
        assert not os.path.exists(output_dir)
    # One --station for all stays a default: the file's own column wins.
    result = job.run_curation(station_files + [with_column], str(output_dir), station="x",
                              spark=spark, max_quarantine_share=1.0)
    assert set(read_curated(result.span_dir)[features.STATION_KEY]) == {"a", "b", "x"}


def test_cli_pairs_stations_and_checks_their_count(spark, tmp_path, station_files, capsys):
    output_dir = str(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_:
        job.main(["--input", *station_files, "--station", "a", "--station", "b", "--station", "c",
                  "--output-dir", output_dir])
    assert exit_.value.code == 2
    assert "3 --station values for 2 --raw-data values" in capsys.readouterr().err
    code = job.main(["--input", station_files[0], "--station", "n", "--input", station_files[1],
                     "--station", "s", "--output-dir", output_dir])
    assert code == 0, capsys.readouterr().err
    assert sorted(read_curated(job.span_dir(output_dir, 1))[features.STATION_KEY].unique()) == ["n", "s"]


# ---------------------------------------------------------------- quarantine ceiling (#12)


def ceiling_csv(bad_rows: int, good_rows: int = 18) -> str:
    lines = ["date,precipitation,temp_max,temp_min,wind"]
    lines += [f"2023-01-{day:02d},1,10,5,3" for day in range(1, good_rows + 1)]
    lines += ["2023-02-01,-1,10,5,3", "2023-02-02,1,10,5,x", "2023-02-03,-2,10,5,3"][:bad_rows]
    return "\n".join(lines) + "\n"


def test_quarantine_above_the_ceiling_stops_before_writing(spark, tmp_path):
    path = write(tmp_path, "raw.csv", ceiling_csv(3, 17))  # 3 of 20 rows: 15%
    output_dir = tmp_path / "out"
    with pytest.raises(job.CurationError) as error:
        job.run_curation(path, str(output_dir), station="s", spark=spark, max_quarantine_share=0.1)
    assert str(error.value) == (
        "3 of 20 rows (15.0%) failed validation, above the quarantine ceiling of 10.0% "
        "(--max-quarantine-share); nothing written. Top reasons: negative precipitation: 2 "
        f"(e.g. {path}:19); non-numeric value in wind: 1 (e.g. {path}:20).")
    assert not os.path.exists(output_dir)
    # Exactly at the ceiling is allowed: 2 of 20 rows = 10%.
    path = write(tmp_path, "raw.csv", ceiling_csv(2, 18))
    result = job.run_curation(path, str(output_dir), station="s", spark=spark, max_quarantine_share=0.1)
    assert (result.rows_quarantined, result.rows_in, result.span) == (2, 20, 1)


def test_cli_quarantine_ceiling(spark, tmp_path, capsys):
    path = write(tmp_path, "raw.csv", ceiling_csv(2, 18))  # 10%: above the default 5%
    output_dir = str(tmp_path / "out")
    assert job.main(["--input", path, "--station", "s", "--output-dir", output_dir]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Curation failed: 2 of 20 rows (10.0%) failed validation, above the "
                          "quarantine ceiling of 5.0%")
    assert not os.path.exists(output_dir)
    with pytest.raises(SystemExit) as exit_:
        job.main(["--input", path, "--output-dir", output_dir, "--max-quarantine-share", "1.5"])
    assert exit_.value.code == 2 and "must be within [0, 1]" in capsys.readouterr().err
    assert job.main(["--input", path, "--station", "s", "--output-dir", output_dir,
                     "--max-quarantine-share", "0.1"]) == 0


# ---------------------------------------------------------------- physical bounds = schema domains (#12.5)


def test_values_beyond_the_schema_domains_are_quarantined_not_curated(spark, tmp_path):
    """#12.5: a 600 mm day passed curation and then stopped the whole run at the schema gate."""
    import tensorflow_data_validation as tfdv

    lines = ["station,date,precipitation,temp_max,temp_min,wind"]
    lines += [f"s,2023-03-{day:02d},{day % 3},{10 + day % 5},{day % 4},{day % 6}"
              for day in range(1, 32)]
    lines += ["s,2023-04-01,600,10,5,3",      # line 33: above the schema's 500 mm
              "s,2023-04-02,500,10,5,75",     # line 34: at the maxima, kept
              "s,2023-04-03,1,10,5,3",
              "s,2023-04-04,1,10,5,80.5",     # line 36: above the schema's 75 m/s
              "s,2023-04-05,0,10,5,3"]
    path = write(tmp_path, "raw.csv", "\n".join(lines) + "\n")
    result = job.run_curation(path, str(tmp_path / "out"), spark=spark, max_quarantine_share=0.1)

    quarantine = pq.read_table(result.quarantine_dir).to_pandas()
    assert sorted(zip(quarantine["line_number"], quarantine["reason"])) == [
        (33, "precipitation above 500 mm/day"), (36, "wind above 75 m/s")]
    curated = read_curated(result.span_dir)
    assert_row(row(curated, "s", "2023-04-02"), {"precipitation": 500.0, "wind": 75.0, LABEL: 1})

    # The curated span passes the schema gate's check (TFDV against schema.pbtxt) ...
    schema = tfdv.load_schema_text(os.path.join(REPO_ROOT, "schema", "schema.pbtxt"))

    def anomalies(frame):
        frame = frame.astype({features.DATE_KEY: str})
        stats = tfdv.generate_statistics_from_dataframe(frame)
        found = tfdv.validate_statistics(stats, schema, environment="TRAINING")
        return {name: [r.type for r in info.reason] for name, info in found.anomaly_info.items()}

    assert anomalies(curated) == {}
    # ... where the 600 mm row, had it been curated, would have stopped the run.
    old = curated.copy()
    old.loc[old[features.DATE_KEY] == "2023-04-02", "precipitation"] = 600.0
    assert set(anomalies(old)) == {"precipitation"}
