"""Train/serve parity: `serving.features` equals the Spark job's curated rows.

The fast tests check the definitions by hand on a few days with a gap. The
slow ones run the real curation job (`components.spark_curation.job`) on the
bundled Seattle data and on synthetic stations with gaps and contract-breaking
rows, compute the same rows with the serving module from the raw CSV text,
and compare every column of every row.
"""
import csv
import datetime
import glob
import math
import os
import random

import pandas as pd
import pytest

from components.spark_curation.contract import curated_columns
from models import features
from serving import features as serving_features
from serving import observations as obs

D = datetime.date


def day(date, precipitation, temp_max=10.0, temp_min=0.0, wind=2.0, weather=None):
    return obs.Observation(date, precipitation, temp_max, temp_min, wind, weather)


def test_lags_means_and_day_of_year_follow_calendar_days_across_a_gap():
    # 2020-03-04 is missing: the 5th has no lag1, and its means skip the gap.
    days = [day(D(2020, 3, 1), 1.0), day(D(2020, 3, 2), 0.0), day(D(2020, 3, 3), 3.0),
            day(D(2020, 3, 5), 0.0, temp_max=8.0, temp_min=1.0, weather=" Rain")]
    rows = serving_features.feature_rows("a", list(reversed(days)))

    assert [r["date"] for r in rows] == [d.date for d in days]
    fifth = rows[-1]
    assert fifth["precipitation_lag1"] is None
    assert fifth["precipitation_lag2"] == 3.0
    assert fifth["precipitation_mean_3d"] == pytest.approx((3.0 + 0.0) / 2)
    assert fifth["precipitation_mean_7d"] == pytest.approx((1 + 0 + 3 + 0) / 4)
    assert fifth["temp_range"] == 7.0
    assert fifth["weather"] == "rain"
    assert fifth["month"] == 3
    # 2020-03-05 is day 65 of a leap year.
    assert fifth["day_of_year_sin"] == pytest.approx(math.sin(2 * math.pi * 65 / 365.25))
    assert rows[0]["precipitation_lag1"] is None and rows[0]["precipitation_mean_7d"] == 1.0


def test_curated_rows_label_next_calendar_day_and_drop_rows_without_one():
    days = [day(D(2020, 3, 1), 1.0), day(D(2020, 3, 2), 0.0), day(D(2020, 3, 3), 3.0),
            day(D(2020, 3, 5), 0.0)]
    rows = serving_features.curated_rows("a", days)
    # 03-03's next day is missing and 03-05 is the last: neither is labelled.
    assert [(r["date"], r[features.LABEL_KEY]) for r in rows] == [
        (D(2020, 3, 1), 0), (D(2020, 3, 2), 1)]


def test_duplicate_day_is_refused():
    with pytest.raises(serving_features.DuplicateDay, match="2020-03-01"):
        serving_features.feature_rows("a", [day(D(2020, 3, 1), 1.0), day(D(2020, 3, 1), 2.0)])


@pytest.mark.parametrize("row, field, reason", [
    ({"precipitation": "abc"}, "precipitation", "non-numeric value in precipitation"),
    ({"wind": "Infinity"}, "wind", "non-numeric value in wind"),
    ({"temp_max": ""}, "temp_max", "missing value in temp_max"),
    ({"precipitation": "-1"}, "precipitation", "negative precipitation"),
    ({"temp_min": "12"}, "temp_min", "impossible temperature"),
    ({"date": "2021-13-01"}, "date", "unparseable date"),
    ({"date": "2021/01-01"}, "date", "unparseable date"),
])
def test_contract_rules_name_the_field_and_the_spark_reason(row, field, reason):
    good = {"date": "2021-01-01", "precipitation": "0", "temp_max": "11", "temp_min": "6",
            "wind": "3", "weather": "sun"}
    assert obs.from_text(good).date == D(2021, 1, 1)
    with pytest.raises(obs.InvalidObservation) as raised:
        obs.from_text(dict(good, **row))
    assert (raised.value.field, raised.value.reason) == (field, reason)


# ------------------------------------------------------------ parity with Spark


def serving_side_curation(paths, station=None):
    """What the curation job writes, computed by the serving modules from the CSV text.

    Rows that break the contract are skipped (the job quarantines them); of
    repeated (station, date) pairs the first in file and line order wins.
    """
    by_station = {}
    for path in sorted(paths):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                name = (row.get("station") or station or "").strip(" ")
                try:
                    observation = obs.from_text(row)
                except obs.InvalidObservation:
                    continue
                by_station.setdefault(name, {}).setdefault(observation.date, observation)
    rows = []
    for name, days in by_station.items():
        rows += serving_features.curated_rows(name, list(days.values()))
    return pd.DataFrame(rows)


def spark_curation(spark, paths, output_dir, station=None):
    from components.spark_curation import job

    result = job.run_curation(paths, output_dir, station=station, spark=spark)
    files = sorted(glob.glob(os.path.join(result.span_dir, "*.parquet")))
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return result, frame


def assert_same_rows(spark_rows, serving_rows):
    """Every curated column of every (station, date) row equal; nulls in the same places."""
    names = [name for name, _ in curated_columns()]
    assert set(serving_rows.columns) == set(names)
    key = [features.STATION_KEY, features.DATE_KEY]
    left = spark_rows.sort_values(key).reset_index(drop=True)
    right = serving_rows[names].sort_values(key).reset_index(drop=True)
    assert len(left) == len(right) > 0
    assert left[key].astype(str).values.tolist() == right[key].astype(str).values.tolist()
    for name, kind in curated_columns():
        if name in key:
            continue
        spark_nulls, serving_nulls = left[name].isna(), right[name].isna()
        assert spark_nulls.tolist() == serving_nulls.tolist(), name
        a, b = left[name][~spark_nulls].tolist(), right[name][~serving_nulls].tolist()
        if kind == "double":
            # Java's and C's libm may differ in the last bit of sin/cos.
            assert a == pytest.approx(b, rel=1e-12, abs=1e-12), name
        else:
            assert a == b, name


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("test-serving-features")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.mark.slow
def test_parity_with_the_spark_job_on_the_bundled_seattle_data(spark, tmp_path):
    from vega_datasets import local_data

    path = local_data.seattle_weather.filepath
    result, spark_rows = spark_curation(spark, path, str(tmp_path / "out"), station="seattle")
    assert result.rows_written == 1460
    assert_same_rows(spark_rows, serving_side_curation([path], station="seattle"))


@pytest.mark.slow
def test_parity_with_the_spark_job_on_synthetic_data_with_gaps_and_bad_rows(spark, tmp_path):
    from components import synthetic_weather

    raw_dir = tmp_path / "raw"
    paths = synthetic_weather.generate(str(raw_dir), stations=3, days=240, seed=7,
                                       bad_fraction=0.02, rows_per_file=240)
    # Punch gaps: drop single days and a run of three days, never the header.
    rng = random.Random(3)
    dropped = 0
    for path in paths:
        with open(path) as f:
            lines = f.read().splitlines(keepends=True)
        run_start = rng.randrange(20, 200)
        gone = set(rng.sample(range(1, 240), 25)) | {run_start, run_start + 1, run_start + 2}
        dropped += len(gone)
        with open(path, "w") as f:
            f.writelines(line for index, line in enumerate(lines) if index not in gone)

    result, spark_rows = spark_curation(spark, [str(p) for p in paths], str(tmp_path / "out"))
    assert result.rows_quarantined > 0
    serving_rows = serving_side_curation(paths)
    lag_nulls = serving_rows[features.lag_name("wind", 1)].isna().sum()
    assert lag_nulls >= dropped // 2, "the gaps should leave null lags behind"
    assert_same_rows(spark_rows, serving_rows)
