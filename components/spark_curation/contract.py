"""The raw input contract, the curated columns and the quarantine reasons.

Feature names come from `models.features`; the few curated columns that
module names only inside its feature dict are spelled here once, and the
tests check that the curated columns and `features.MODEL_FEATURES` agree.
"""
from models import features

# Unpacked rather than re-spelled: if the observations change, this fails loudly.
PRECIPITATION, TEMP_MAX, TEMP_MIN, WIND = features.OBSERVATIONS
WEATHER = "weather"
TEMP_RANGE = "temp_range"
DAY_OF_YEAR_SIN = "day_of_year_sin"
DAY_OF_YEAR_COS = "day_of_year_cos"

REQUIRED_COLUMNS = (features.DATE_KEY,) + features.OBSERVATIONS
OPTIONAL_COLUMNS = (features.STATION_KEY, WEATHER)
RAW_COLUMNS = (features.STATION_KEY,) + REQUIRED_COLUMNS + (WEATHER,)

DATE_FORMATS = ("yyyy/MM/dd", "yyyy-MM-dd")
TEMPERATURE_RANGE_C = (-90.0, 60.0)
# Plain decimal or scientific notation only: Spark's string-to-double cast
# would also accept "Infinity", "NaN", "1d" and hex floats.
NUMBER_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"

# Lineage columns every raw row carries into the quarantine.
SOURCE_FILE = "source_file"
LINE_NUMBER = "line_number"
REASON = "reason"

# Quarantine reasons, in the order they are checked (the first failing one wins).
REASON_MALFORMED = "malformed row (wrong number of fields)"
REASON_MISSING = "missing value in {column}"
REASON_BAD_DATE = "unparseable date"
REASON_NON_NUMERIC = "non-numeric value in {column}"
REASON_NEGATIVE_PRECIPITATION = "negative precipitation"
REASON_NEGATIVE_WIND = "negative wind"
REASON_IMPOSSIBLE_TEMPERATURE = "impossible temperature"
# Duplicates get ": first seen at <file>:<line>" appended; counts use this prefix.
REASON_DUPLICATE = "duplicate (station, date)"


class CurationError(RuntimeError):
    """A fatal input problem or an overwrite refused; nothing was written."""


def curated_columns() -> list:
    """(name, Spark type name) of every curated column, in output order."""
    columns = [
        (features.STATION_KEY, "string"),
        (features.DATE_KEY, "date"),
        (features.MONTH_KEY, "bigint"),
    ]
    columns += [(observation, "double") for observation in features.OBSERVATIONS]
    columns += [(WEATHER, "string"), (TEMP_RANGE, "double")]
    columns += [
        (features.lag_name(observation, days), "double")
        for observation in features.OBSERVATIONS
        for days in features.LAG_DAYS
    ]
    columns += [
        (features.rolling_mean_name(observation, days), "double")
        for observation in features.OBSERVATIONS
        for days in features.ROLLING_WINDOW_DAYS
    ]
    columns += [(DAY_OF_YEAR_SIN, "double"), (DAY_OF_YEAR_COS, "double")]
    columns.append((features.LABEL_KEY, "bigint"))
    return columns
