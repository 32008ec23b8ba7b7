"""Raw daily observations as the input contract defines them, parsed and checked.

The rules are the Spark job's (`components/spark_curation/contract.py`):
the same number pattern, date formats, physical bounds
(`contract.OBSERVATION_BOUNDS`, which schema/schema.pbtxt's domains also
come from) and reason texts, in the same order, so a day the
curation job would quarantine is refused here with the same reason. Pure
Python: the prediction service, the demo and the parity test use it without
Spark.
"""
import dataclasses
import datetime
import math
import re
from typing import Optional

from components.spark_curation import contract

# Spark's F.trim removes ASCII spaces only, not tabs or newlines.
_SPACE = " "
_NUMBER = re.compile(contract.NUMBER_PATTERN)
# "yyyy/MM/dd" or "yyyy-MM-dd" (contract.DATE_FORMATS), one separator throughout.
_DATE = re.compile(r"^([0-9]{4})([/-])([0-9]{2})\2([0-9]{2})$")


@dataclasses.dataclass(frozen=True)
class Observation:
    """One station-day of the raw input contract (units in the README).

    Attributes:
      date: the day observed.
      precipitation: mm per day, within contract.OBSERVATION_BOUNDS (0-500).
      temp_max: deg C, within contract.TEMPERATURE_RANGE_C.
      temp_min: deg C, within the same range and <= temp_max.
      wind: m/s, within contract.OBSERVATION_BOUNDS (0-75).
      weather: free-text category, or None.
    """

    date: datetime.date
    precipitation: float
    temp_max: float
    temp_min: float
    wind: float
    weather: Optional[str] = None


class InvalidObservation(ValueError):
    """A raw value breaks the contract; `field` names the offending column."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_number(text: str, field: str) -> float:
    """A finite number in plain decimal or scientific notation, as Spark reads it.

    Raises:
      InvalidObservation: blank ("missing value in ...") or not a number
        ("non-numeric value in ...").
    """
    trimmed = (text or "").strip(_SPACE)
    if not trimmed:
        raise InvalidObservation(field, contract.REASON_MISSING.format(column=field))
    value = float(trimmed) if _NUMBER.match(trimmed) else math.nan
    if not math.isfinite(value):  # "1e999" matches the pattern but overflows
        raise InvalidObservation(field, contract.REASON_NON_NUMERIC.format(column=field))
    return value


def parse_date(text: str, field: str = "date") -> datetime.date:
    """A date in one of the contract's two formats.

    Raises:
      InvalidObservation: blank or unparseable.
    """
    trimmed = (text or "").strip(_SPACE)
    if not trimmed:
        raise InvalidObservation(field, contract.REASON_MISSING.format(column=field))
    match = _DATE.match(trimmed)
    try:
        if not match:
            raise ValueError(trimmed)
        return datetime.date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
    except ValueError:
        raise InvalidObservation(field, contract.REASON_BAD_DATE) from None


def normalise_weather(text: Optional[str]) -> Optional[str]:
    """Lower-cased, trimmed category; blank becomes None (as in the Spark job)."""
    if text is None:
        return None
    value = text.strip(_SPACE).lower()
    return value or None


def check(observation: Observation) -> Observation:
    """Applies the contract's range rules; returns the day with its weather normalised.

    Raises:
      InvalidObservation: the first rule broken, in the Spark job's order,
        naming the field.
    """
    for field in ("precipitation", "temp_max", "temp_min", "wind"):
        value = getattr(observation, field)
        if value is None or not math.isfinite(value):
            raise InvalidObservation(field, contract.REASON_NON_NUMERIC.format(column=field))
    bounds = contract.OBSERVATION_BOUNDS
    if observation.precipitation < bounds["precipitation"][0]:
        raise InvalidObservation("precipitation", contract.REASON_NEGATIVE_PRECIPITATION)
    if observation.wind < bounds["wind"][0]:
        raise InvalidObservation("wind", contract.REASON_NEGATIVE_WIND)
    for field in ("precipitation", "wind"):
        if getattr(observation, field) > bounds[field][1]:
            raise InvalidObservation(field, contract.above_maximum_reason(field))
    low, high = contract.TEMPERATURE_RANGE_C
    for field in ("temp_max", "temp_min"):
        if not low <= getattr(observation, field) <= high:
            raise InvalidObservation(field, contract.REASON_IMPOSSIBLE_TEMPERATURE)
    if observation.temp_min > observation.temp_max:
        raise InvalidObservation("temp_min", contract.REASON_IMPOSSIBLE_TEMPERATURE)
    return dataclasses.replace(observation, weather=normalise_weather(observation.weather))


def from_text(row: dict) -> Observation:
    """An Observation from a raw CSV row of strings (keys = contract columns).

    Raises:
      InvalidObservation: a missing, non-numeric or out-of-range value.
    """
    date = parse_date(row.get("date"))
    values = {
        field: parse_number(row.get(field), field)
        for field in ("precipitation", "temp_max", "temp_min", "wind")
    }
    return check(Observation(date=date, weather=row.get("weather"), **values))
