"""The model's engineered features, computed from raw days without Spark.

The same definitions as `components/spark_curation/transform.py`
(`_derived_columns`), for serving: lags and rolling means use *calendar*
days of the same station (a missing day gives a null lag and a shorter
mean, never a neighbouring row), nothing looks past the row's own date, and
the day-of-year terms are sin/cos(2*pi*dayofyear/365.25). The label looks one
day ahead and exists only when the next calendar day is present.
`tests/test_serving_features.py` runs the real Spark job and checks this
module against it row for row.
"""
import math
from typing import Any, Dict, List, Optional, Sequence

from models import features
from serving.observations import Observation, normalise_weather

TEMP_RANGE = "temp_range"
WEATHER = "weather"
DAY_OF_YEAR_SIN = "day_of_year_sin"
DAY_OF_YEAR_COS = "day_of_year_cos"
_YEAR_DAYS = 365.25


class DuplicateDay(ValueError):
    """Two observations of the same station share a date."""


def feature_rows(station: str, observations: Sequence[Observation]) -> List[Dict[str, Any]]:
    """One row per observed day, in date order, with every curated column but the label.

    Args:
      station: the station id (already trimmed).
      observations: the station's days, any order, each checked by
        `observations.check`.

    Returns:
      Dicts keyed like the curated Parquet: station, date (datetime.date),
      month, the observations, weather, temp_range, lags (None when that day
      is absent), rolling means and the day-of-year terms.

    Raises:
      DuplicateDay: a date occurs twice.
    """
    by_day = _index_by_day(observations)
    return [_row(station, by_day, day) for day in sorted(by_day)]


def curated_rows(station: str, observations: Sequence[Observation]) -> List[Dict[str, Any]]:
    """The rows the Spark job writes: feature rows with a label, i.e. whose next day exists."""
    by_day = _index_by_day(observations)
    rows = []
    for day in sorted(by_day):
        tomorrow = by_day.get(day + 1)
        if tomorrow is None:
            continue
        row = _row(station, by_day, day)
        row[features.LABEL_KEY] = int(tomorrow.precipitation > 0)
        rows.append(row)
    return rows


def model_input(row: Dict[str, Any]) -> Dict[str, Any]:
    """Only the keys of `features.MODEL_FEATURES` (what the SavedModel reads)."""
    return {key: row.get(key) for key in features.MODEL_FEATURES}


def _index_by_day(observations: Sequence[Observation]) -> Dict[int, Observation]:
    by_day: Dict[int, Observation] = {}
    for observation in observations:
        day = observation.date.toordinal()
        if day in by_day:
            raise DuplicateDay(f"{observation.date.isoformat()} occurs more than once")
        by_day[day] = observation
    return by_day


def _row(station: str, by_day: Dict[int, Observation], day: int) -> Dict[str, Any]:
    today = by_day[day]
    row: Dict[str, Any] = {
        features.STATION_KEY: station,
        features.DATE_KEY: today.date,
        features.MONTH_KEY: today.date.month,
    }
    for name in features.OBSERVATIONS:
        row[name] = getattr(today, name)
    row[WEATHER] = normalise_weather(today.weather)
    row[TEMP_RANGE] = today.temp_max - today.temp_min
    for name in features.OBSERVATIONS:
        for days in features.LAG_DAYS:
            row[features.lag_name(name, days)] = _value(by_day.get(day - days), name)
        for days in features.ROLLING_WINDOW_DAYS:
            window = [by_day.get(d) for d in range(day - days + 1, day + 1)]
            row[features.rolling_mean_name(name, days)] = _mean(
                [getattr(o, name) for o in window if o is not None])
    # Spark evaluates (2*pi * dayofyear) / 365.25 left to right; same order here.
    angle = 2 * math.pi * today.date.timetuple().tm_yday / _YEAR_DAYS
    row[DAY_OF_YEAR_SIN] = math.sin(angle)
    row[DAY_OF_YEAR_COS] = math.cos(angle)
    return row


def _value(observation: Optional[Observation], name: str) -> Optional[float]:
    return None if observation is None else getattr(observation, name)


def _mean(values: List[float]) -> float:
    # Summed in date order like Spark's window aggregate; today is always present.
    total = 0.0
    for value in values:
        total += value
    return total / len(values)
