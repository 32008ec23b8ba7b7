"""Deterministic synthetic raw weather CSVs in the pipeline's input contract.

For benchmarks and tests that need more rows than the bundled Seattle data:
`stations` x `days` rows with the columns `station,date,precipitation,
temp_max,temp_min,wind,weather` (dates `yyyy-MM-dd`), written in chunks of
whole stations, several stations per file.

The weather is simple but not noise, so a model has something to learn:
  * temperature follows the day of the year (a sinusoid with a per-station
    mean and amplitude) plus an AR(1) anomaly;
  * wet/dry days follow a two-state Markov chain per station (a wet day makes
    a wet tomorrow likelier, more so in winter), so "rain tomorrow" depends on
    today; about 55% of days are dry, with precipitation exactly 0.0;
  * wet days are cooler, windier and have a smaller daily temperature range;
  * `weather` is one of rain/drizzle/snow/sun/fog and agrees with the values.

With `bad_fraction > 0` extra rows are appended, each breaking the contract
in exactly one way (see `BAD_ROW_KINDS`); the curation job quarantines every
one of them and the valid rows stay exactly as without them.

Usage:
  python -m components.synthetic_weather --output-dir DIR --stations 10 --days 1000
"""
import argparse
import datetime
import math
import os
import sys
from typing import List, Optional

import numpy as np
import pandas as pd

COLUMNS = ("station", "date", "precipitation", "temp_max", "temp_min", "wind", "weather")
WEATHER_CATEGORIES = ("drizzle", "fog", "rain", "snow", "sun")
# Each bad row breaks one rule; the curation job's quarantine reason for it.
BAD_ROW_KINDS = {
    "negative_precipitation": "negative precipitation",
    "unparseable_date": "unparseable date",
    "non_numeric_wind": "non-numeric value in wind",
    "duplicate": "duplicate (station, date)",
}
START_DATE = datetime.date(2012, 1, 1)
DEFAULT_ROWS_PER_FILE = 250_000
FILE_PATTERN = "weather-{index:05d}.csv"

_YEAR_DAYS = 365.25


def bad_row_count(stations: int, days: int, bad_fraction: float) -> int:
    """How many bad rows `generate` appends to the stations x days valid ones."""
    if not 0.0 <= bad_fraction < 1.0:
        raise ValueError(f"bad_fraction must be in [0, 1); got {bad_fraction}.")
    return int(round(stations * days * bad_fraction))


def bad_row_kinds(count: int) -> List[str]:
    """The kind of each of `count` bad rows: the kinds in turn."""
    kinds = list(BAD_ROW_KINDS)
    return [kinds[i % len(kinds)] for i in range(count)]


def station_names(stations: int) -> List[str]:
    """Station ids `st0000`, `st0001`, ... (sortable)."""
    return [f"st{index:04d}" for index in range(stations)]


def simulate(stations: int, days: int, seed: int = 0) -> pd.DataFrame:
    """The valid rows, one per station and day, station-major, typed columns.

    Args:
      stations: number of stations (>= 1).
      days: consecutive days per station, from START_DATE (>= 1).
      seed: numpy seed; the same arguments give the same frame.

    Returns:
      A DataFrame with COLUMNS; `date` as `datetime.date`, the observations as
      floats rounded to 0.1.
    """
    if stations < 1 or days < 1:
        raise ValueError(f"Need at least one station and one day; got {stations} x {days}.")
    rng = np.random.default_rng(seed)
    shape = (stations, days)
    day_of_year = (np.arange(days) + START_DATE.timetuple().tm_yday - 1) % _YEAR_DAYS
    # Peaks in mid-July; winter (mid-January) has the highest rain persistence.
    summer = np.sin(2 * np.pi * (day_of_year - 105) / _YEAR_DAYS)
    wet = _wet_days(rng, stations, days, summer)

    mean_temp = rng.normal(11.0, 4.0, (stations, 1))
    amplitude = rng.uniform(5.0, 11.0, (stations, 1))
    anomaly = _ar1(rng, shape, coefficient=0.7, scale=2.0)
    temp_mid = mean_temp + amplitude * summer + anomaly - 2.0 * wet
    temp_range = np.clip(rng.normal(np.where(wet, 4.5, 9.0), 1.8), 0.5, None)
    temp_max = np.round(temp_mid + temp_range / 2, 1)
    temp_min = np.minimum(np.round(temp_mid - temp_range / 2, 1), temp_max)

    amount = rng.gamma(0.8, 6.0, shape) * (1.0 - 0.3 * summer)
    precipitation = np.where(wet, np.maximum(np.round(amount, 1), 0.1), 0.0)
    wind = np.round(rng.gamma(4.0, 0.8, shape) + 1.5 * wet, 1)

    weather = _weather(wet, precipitation, temp_max, temp_max - temp_min, wind)
    dates = [START_DATE + datetime.timedelta(days=d) for d in range(days)]
    return pd.DataFrame({
        "station": np.repeat(station_names(stations), days),
        "date": np.tile(np.array(dates, dtype=object), stations),
        "precipitation": precipitation.ravel(),
        "temp_max": temp_max.ravel(),
        "temp_min": temp_min.ravel(),
        "wind": wind.ravel(),
        "weather": weather.ravel(),
    }, columns=list(COLUMNS))


def _wet_days(rng, stations: int, days: int, summer: np.ndarray) -> np.ndarray:
    """Markov chain per station: P(wet | dry yesterday), P(wet | wet yesterday)."""
    to_wet = rng.uniform(0.22, 0.32, stations)
    stay_wet = rng.uniform(0.62, 0.72, stations)
    season = 1.0 - 0.35 * summer  # wetter winters, drier summers
    draws = rng.random((stations, days))
    wet = np.empty((stations, days), dtype=bool)
    stationary = to_wet / (1.0 - stay_wet + to_wet)
    wet[:, 0] = draws[:, 0] < stationary
    for day in range(1, days):
        probability = np.where(wet[:, day - 1], stay_wet, to_wet) * season[day]
        wet[:, day] = draws[:, day] < np.minimum(probability, 0.95)
    return wet


def _ar1(rng, shape, coefficient: float, scale: float) -> np.ndarray:
    """Per-station AR(1) series with stationary standard deviation `scale`."""
    noise = rng.normal(0.0, scale * math.sqrt(1 - coefficient ** 2), shape)
    series = np.empty(shape)
    series[:, 0] = rng.normal(0.0, scale, shape[0])
    for day in range(1, shape[1]):
        series[:, day] = coefficient * series[:, day - 1] + noise[:, day]
    return series


def _weather(wet, precipitation, temp_max, temp_range, wind) -> np.ndarray:
    wet_kind = np.where(temp_max <= 1.0, "snow", np.where(precipitation < 1.0, "drizzle", "rain"))
    # Calm days with little warming (low cloud, inversion) are foggy.
    dry_kind = np.where((wind < 2.5) & (temp_range < 7.5), "fog", "sun")
    return np.where(wet, wet_kind, dry_kind)


def _bad_rows(valid: pd.DataFrame, count: int, rng) -> pd.DataFrame:
    """`count` rows, each a copy of a valid row broken as its kind says."""
    picked = valid.iloc[np.sort(rng.choice(len(valid), size=count, replace=count > len(valid)))]
    bad = _as_text(picked.reset_index(drop=True))
    for index, kind in enumerate(bad_row_kinds(count)):
        if kind == "negative_precipitation":
            bad.at[index, "precipitation"] = f"{-(float(bad.at[index, 'precipitation']) + 0.5):.1f}"
        elif kind == "unparseable_date":
            bad.at[index, "date"] = "not-a-date"
        elif kind == "non_numeric_wind":
            bad.at[index, "wind"] = "n/a"
        # A duplicate stays an exact copy: it is appended after its original.
    return bad


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    text = pd.DataFrame({
        "station": frame["station"],
        "date": [d.isoformat() for d in frame["date"]],
        "weather": frame["weather"],
    })
    for column in ("precipitation", "temp_max", "temp_min", "wind"):
        text[column] = frame[column].map("{:.1f}".format)
    return text[list(COLUMNS)]


def generate(
    output_dir: str,
    stations: int,
    days: int,
    seed: int = 0,
    bad_fraction: float = 0.0,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
) -> List[str]:
    """Writes stations x days valid rows (+ bad rows) as CSV files.

    Args:
      output_dir: created if missing; existing files of the same names are
        overwritten.
      stations: number of stations.
      days: consecutive days per station from START_DATE.
      seed: numpy seed; same arguments, same bytes.
      bad_fraction: bad rows to append, as a fraction of the valid rows
        (`bad_row_count` says how many); kinds in turn per `BAD_ROW_KINDS`.
      rows_per_file: whole stations are grouped into files of about this many
        valid rows (at least one station per file).

    Returns:
      The written file paths, sorted. Bad rows go to the end of the file that
      holds their station, so a duplicate always follows its original.
    """
    count = bad_row_count(stations, days, bad_fraction)
    valid = simulate(stations, days, seed)
    bad = _bad_rows(valid, count, np.random.default_rng([seed, 1])) if count else None
    os.makedirs(output_dir, exist_ok=True)
    per_file = max(1, rows_per_file // days)
    names = station_names(stations)
    paths = []
    for index, first in enumerate(range(0, stations, per_file)):
        chunk_stations = names[first:first + per_file]
        path = os.path.join(output_dir, FILE_PATTERN.format(index=index))
        chunk = valid.iloc[first * days:(first + len(chunk_stations)) * days]
        chunk.to_csv(path, index=False, float_format="%.1f", lineterminator="\n")
        if bad is not None:
            extra = bad[bad["station"].isin(chunk_stations)]
            extra.to_csv(path, mode="a", header=False, index=False, lineterminator="\n")
        paths.append(path)
    return sorted(paths)


def parse_flags(argv: Optional[List[str]]) -> argparse.Namespace:
    """Command-line flags of the generator."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad-fraction", type=float, default=0.0,
                        help="extra contract-breaking rows, as a fraction of the valid rows")
    parser.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    flags = parse_flags(argv)
    paths = generate(flags.output_dir, flags.stations, flags.days, seed=flags.seed,
                     bad_fraction=flags.bad_fraction, rows_per_file=flags.rows_per_file)
    bad = bad_row_count(flags.stations, flags.days, flags.bad_fraction)
    print(f"Wrote {flags.stations * flags.days} valid rows ({flags.stations} stations x "
          f"{flags.days} days) and {bad} bad rows to {len(paths)} file(s) in {flags.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
