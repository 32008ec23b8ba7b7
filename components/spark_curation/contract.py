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

# Physical plausibility limits of one day's observation, inclusive: the single
# definition behind the curation checks, the prediction service's checks
# (serving/observations.py) and the domains of schema/schema.pbtxt
# (`feature_domains()`; tests/test_schema.py proves the schema file agrees).
# Precipitation in mm/day (the world record is about 1,825 mm; 500 mm is far
# beyond any station this pipeline has seen, so a larger value is taken to be
# a unit or entry error), temperatures in degrees C, wind in m/s (daily mean).
TEMPERATURE_RANGE_C = (-90.0, 60.0)
OBSERVATION_BOUNDS = {
    PRECIPITATION: (0.0, 500.0),
    TEMP_MAX: TEMPERATURE_RANGE_C,
    TEMP_MIN: TEMPERATURE_RANGE_C,
    WIND: (0.0, 75.0),
}
OBSERVATION_UNITS = {PRECIPITATION: "mm/day", TEMP_MAX: "degC", TEMP_MIN: "degC", WIND: "m/s"}
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
# Above the observation's maximum in OBSERVATION_BOUNDS, e.g.
# "precipitation above 500 mm/day" (precipitation and wind; temperatures
# outside their range are an "impossible temperature").
REASON_ABOVE_MAXIMUM = "{column} above {maximum:g} {unit}"
REASON_IMPOSSIBLE_TEMPERATURE = "impossible temperature"
# Duplicates get ": first seen at <file>:<line>" appended; counts use this prefix.
REASON_DUPLICATE = "duplicate (station, date)"


class CurationError(RuntimeError):
    """A fatal input problem or an overwrite refused; nothing was written."""


def above_maximum_reason(column: str) -> str:
    """The quarantine reason of a `column` value above its physical maximum."""
    return REASON_ABOVE_MAXIMUM.format(
        column=column, maximum=OBSERVATION_BOUNDS[column][1], unit=OBSERVATION_UNITS[column])


def feature_domains() -> dict:
    """{curated numeric column: (min, max)} implied by the physical bounds.

    Every value the job writes lies inside its column's domain: lags copy an
    observation, rolling means average it, `temp_range` = temp_max - temp_min
    with temp_min <= temp_max, the day-of-year terms are a sine and a cosine,
    `month` a month and the label a class. schema/schema.pbtxt declares exactly
    these domains (float_domain / int_domain), checked by tests/test_schema.py,
    so a row curation accepts never fails the schema gate on a domain.
    """
    domains = {features.MONTH_KEY: (1, 12)}
    for observation in features.OBSERVATIONS:
        domains[observation] = OBSERVATION_BOUNDS[observation]
    low, high = TEMPERATURE_RANGE_C
    domains[TEMP_RANGE] = (0.0, high - low)
    for observation in features.OBSERVATIONS:
        for days in features.LAG_DAYS:
            domains[features.lag_name(observation, days)] = OBSERVATION_BOUNDS[observation]
        for days in features.ROLLING_WINDOW_DAYS:
            domains[features.rolling_mean_name(observation, days)] = OBSERVATION_BOUNDS[observation]
    domains[DAY_OF_YEAR_SIN] = (-1.0, 1.0)
    domains[DAY_OF_YEAR_COS] = (-1.0, 1.0)
    domains[features.LABEL_KEY] = (0, 1)
    return domains


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
