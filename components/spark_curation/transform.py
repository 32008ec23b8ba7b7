"""The Spark side: read raw CSVs as strings, validate, engineer features.

Every value is read as a string and parsed here, because a Spark read with a
wrong dateFormat or an inferred schema turns bad values into silent nulls.
"""
import datetime
import math
from typing import Dict, List, Mapping, Optional, Union

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from components.spark_curation import contract as c
from models import features

_CORRUPT = "_corrupt_record"
FILE_INDEX = "_file_index"  # the file's position in sorted path order
_FILE_INDEX = FILE_INDEX
_DAY = "_day"
_EPOCH = datetime.date(1970, 1, 1)


def read_raw(spark: SparkSession, headers: Dict[str, List[str]],
             stations: Union[None, str, Mapping[str, Optional[str]]]) -> DataFrame:
    """All rows of all files, raw string columns plus lineage.

    Args:
      spark: the session to read with.
      headers: {file: header} as checked by `inputs.read_headers`, in file order.
      stations: {file: station id for its rows} (`inputs.file_stations`), used
        for files without a station column; or one id for all such files.

    Returns:
      Columns `contract.RAW_COLUMNS`, `source_file`, `line_number`, a file
      index and the corrupt-record text (non-null for malformed rows).
    """
    if not isinstance(stations, Mapping):
        stations = {path: stations for path in headers}
    frames = [
        _read_file(spark, path, header, stations.get(path), index)
        for index, (path, header) in enumerate(headers.items())
    ]
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _read_file(spark, path: str, header: List[str], station: Optional[str], index: int) -> DataFrame:
    schema = T.StructType(
        [T.StructField(name, T.StringType()) for name in header]
        + [T.StructField(_CORRUPT, T.StringType())]
    )
    frame = spark.read.csv(
        path, header=True, schema=schema, mode="PERMISSIVE",
        columnNameOfCorruptRecord=_CORRUPT, encoding="UTF-8",
    )
    if features.STATION_KEY not in header:
        frame = frame.withColumn(features.STATION_KEY, F.lit(station).cast("string"))
    if c.WEATHER not in header:
        frame = frame.withColumn(c.WEATHER, F.lit(None).cast("string"))
    # A single file is split into partitions in offset order, so the increasing
    # id follows the file and its rank is the record's position (header = line 1).
    order = Window.partitionBy(c.SOURCE_FILE).orderBy("_order")
    return (
        frame.withColumn(c.SOURCE_FILE, F.lit(path))
        .withColumn(_FILE_INDEX, F.lit(index))
        .withColumn("_order", F.monotonically_increasing_id())
        .withColumn(c.LINE_NUMBER, (F.row_number().over(order) + 1).cast("long"))
        .select(*c.RAW_COLUMNS, c.SOURCE_FILE, c.LINE_NUMBER, _FILE_INDEX, _CORRUPT)
    )


def validate(raw: DataFrame) -> DataFrame:
    """Adds parsed columns (`_<name>`) and `reason`, null for valid rows.

    Only rows valid otherwise compete as duplicates, so a malformed row never
    displaces a good one for the same (station, date).
    """
    typed = raw.withColumn("_" + features.STATION_KEY, F.trim(F.col(features.STATION_KEY)))
    typed = typed.withColumn("_" + features.DATE_KEY, _parse_date(F.col(features.DATE_KEY)))
    for observation in features.OBSERVATIONS:
        typed = typed.withColumn("_" + observation, _parse_number(F.col(observation)))
    typed = typed.withColumn(c.REASON, _first_failure(_checks()))
    return _mark_duplicates(typed)


def _parse_date(column: Column) -> Column:
    trimmed = F.trim(column)
    return F.coalesce(*[F.to_date(trimmed, fmt) for fmt in c.DATE_FORMATS])


def _parse_number(column: Column) -> Column:
    trimmed = F.trim(column)
    value = trimmed.cast("double")
    finite = ~F.isnan(value) & (F.abs(value) < float("inf"))  # "1e999" overflows
    return F.when(trimmed.rlike(c.NUMBER_PATTERN) & finite, value)


def _blank(name: str) -> Column:
    return F.col(name).isNull() | (F.trim(F.col(name)) == "")


def _checks() -> list:
    """(condition, reason) pairs in priority order; conditions see parsed columns."""
    checks = [
        (F.col(_CORRUPT).isNotNull(), c.REASON_MALFORMED),
        (_blank(features.STATION_KEY), c.REASON_MISSING.format(column=features.STATION_KEY)),
        (_blank(features.DATE_KEY), c.REASON_MISSING.format(column=features.DATE_KEY)),
        (F.col("_" + features.DATE_KEY).isNull(), c.REASON_BAD_DATE),
    ]
    for observation in features.OBSERVATIONS:
        checks.append((_blank(observation), c.REASON_MISSING.format(column=observation)))
        checks.append((F.col("_" + observation).isNull(),
                       c.REASON_NON_NUMERIC.format(column=observation)))
    low, high = c.TEMPERATURE_RANGE_C
    temp_max, temp_min = F.col("_" + c.TEMP_MAX), F.col("_" + c.TEMP_MIN)
    checks += [
        (F.col("_" + c.PRECIPITATION) < c.OBSERVATION_BOUNDS[c.PRECIPITATION][0],
         c.REASON_NEGATIVE_PRECIPITATION),
        (F.col("_" + c.WIND) < c.OBSERVATION_BOUNDS[c.WIND][0], c.REASON_NEGATIVE_WIND),
    ]
    checks += [
        (F.col("_" + name) > c.OBSERVATION_BOUNDS[name][1], c.above_maximum_reason(name))
        for name in (c.PRECIPITATION, c.WIND)
    ]
    checks.append(
        (~temp_max.between(low, high) | ~temp_min.between(low, high) | (temp_min > temp_max),
         c.REASON_IMPOSSIBLE_TEMPERATURE))
    return checks


def _first_failure(checks: list) -> Column:
    reason = F.lit(None).cast("string")
    for condition, text in reversed(checks):
        reason = F.when(condition, F.lit(text)).otherwise(reason)
    return reason


def _mark_duplicates(typed: DataFrame) -> DataFrame:
    valid = F.col(c.REASON).isNull()
    order = Window.partitionBy("_" + features.STATION_KEY, "_" + features.DATE_KEY).orderBy(
        _FILE_INDEX, c.LINE_NUMBER)
    first_seen = F.first(F.concat_ws(":", c.SOURCE_FILE, c.LINE_NUMBER)).over(order)
    duplicate_reason = F.concat(F.lit(c.REASON_DUPLICATE + ": first seen at "), first_seen)
    marked = typed.where(valid).withColumn(
        c.REASON, F.when(F.row_number().over(order) > 1, duplicate_reason))
    return marked.unionByName(typed.where(~valid))


def reason_kind() -> Column:
    """The reason without a duplicate's location, for counting."""
    reason = F.col(c.REASON)
    return F.when(reason.startswith(c.REASON_DUPLICATE), F.lit(c.REASON_DUPLICATE)).otherwise(reason)


def quarantine_rows(checked: DataFrame) -> DataFrame:
    """Failed rows with their raw string values, lineage and reason."""
    return checked.where(F.col(c.REASON).isNotNull()).select(
        *c.RAW_COLUMNS, c.SOURCE_FILE, c.LINE_NUMBER, c.REASON)


def engineer(checked: DataFrame) -> DataFrame:
    """Curated rows: valid rows with features and label, typed as `curated_columns()`.

    Lags and rolling means use calendar-day window frames over the same
    station, so a missing day yields null (lag) or a shorter mean, and no
    frame reaches past the row's own date. Only the label looks one day
    ahead; rows without a valid next day are dropped.
    """
    days = checked.where(F.col(c.REASON).isNull()).select(
        F.col("_" + features.STATION_KEY).alias(features.STATION_KEY),
        F.col("_" + features.DATE_KEY).alias(features.DATE_KEY),
        *[F.col("_" + o).alias(o) for o in features.OBSERVATIONS],
        _normalise_category(F.col(c.WEATHER)).alias(c.WEATHER),
        # From the parsed date: inside this select, `date` is still the raw string.
        F.datediff(F.col("_" + features.DATE_KEY), F.lit(_EPOCH)).alias(_DAY),
    )
    derived = _derived_columns(Window.partitionBy(features.STATION_KEY).orderBy(_DAY))
    labelled = days.select("*", *[expr.alias(name) for name, expr in derived.items()])
    labelled = labelled.where(F.col(features.LABEL_KEY).isNotNull())
    return labelled.select(*[F.col(name).cast(kind).alias(name) for name, kind in c.curated_columns()])


def _normalise_category(column: Column) -> Column:
    value = F.lower(F.trim(column))
    return F.when(value != "", value)


def _derived_columns(by_day: Window) -> Dict[str, Column]:
    """{name: expression} of everything computed from the valid rows."""
    date = F.col(features.DATE_KEY)
    derived = {
        features.MONTH_KEY: F.month(date),
        c.TEMP_RANGE: F.col(c.TEMP_MAX) - F.col(c.TEMP_MIN),
    }
    for observation in features.OBSERVATIONS:
        for days in features.LAG_DAYS:
            derived[features.lag_name(observation, days)] = F.first(observation).over(
                by_day.rangeBetween(-days, -days))
        for days in features.ROLLING_WINDOW_DAYS:
            derived[features.rolling_mean_name(observation, days)] = F.avg(observation).over(
                by_day.rangeBetween(-(days - 1), 0))
    angle = F.lit(2 * math.pi) * F.dayofyear(date) / F.lit(365.25)
    derived[c.DAY_OF_YEAR_SIN] = F.sin(angle)
    derived[c.DAY_OF_YEAR_COS] = F.cos(angle)
    tomorrow = F.first(c.PRECIPITATION).over(by_day.rangeBetween(1, 1))
    derived[features.LABEL_KEY] = F.when(tomorrow.isNotNull(), (tomorrow > 0).cast("long"))
    return derived
