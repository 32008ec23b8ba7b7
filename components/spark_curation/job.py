"""Spark curation: raw weather CSVs -> validated, feature-engineered Parquet spans.

Runs as a Python function (`run_curation`), as a module
(`python -m components.spark_curation.job ...`) and through
`spark-submit components/spark_curation/job.py ...` against any master.

Every input row ends up either in the curated span or in the quarantine with
a reason; fatal problems (no input, unreadable or empty file, missing column)
raise CurationError before anything is written. A span directory is renamed
into place complete, and an existing span is never overwritten.
"""
import argparse
import dataclasses
import datetime
import glob
import hashlib
import json
import math
import os
import shutil
import sys
import uuid
from typing import Dict, List, Optional, Sequence, Union

from models import features

CURATED_DIR = "curated"
QUARANTINE_DIR = "quarantine"
SPAN_PREFIX = "span-"
SPAN_DIR_PATTERN = SPAN_PREFIX + "{SPAN}"
MANIFEST_FILE = "_manifest.json"
_STAGING_PREFIX = ".tmp-"

REQUIRED_COLUMNS = (features.DATE_KEY,) + features.OBSERVATIONS
OPTIONAL_COLUMNS = (features.STATION_KEY, "weather")
DATE_FORMATS = ("yyyy/MM/dd", "yyyy-MM-dd")
TEMPERATURE_RANGE_C = (-90.0, 60.0)
_ROWS_PER_OUTPUT_FILE = 1_000_000

# Quarantine reasons, in the order they are checked (first failing one wins).
REASON_BAD_DATE = "unparseable date"
REASON_MISSING = "missing value in {column}"
REASON_NON_NUMERIC = "non-numeric value in {column}"
REASON_NEGATIVE_PRECIPITATION = "negative precipitation"
REASON_NEGATIVE_WIND = "negative wind"
REASON_IMPOSSIBLE_TEMPERATURE = "impossible temperature"
REASON_DUPLICATE = "duplicate (station, date)"


class CurationError(RuntimeError):
    """Fatal input problem: nothing was written."""


@dataclasses.dataclass
class CurationResult:
    """What one run of the job did."""

    span: int
    skipped: bool
    rows_in: int
    rows_written: int
    rows_quarantined: int
    quarantine_reasons: Dict[str, int]
    span_dir: str
    quarantine_dir: Optional[str]
    input_files: List[str]

    def describe(self) -> str:
        if self.skipped:
            return f"Inputs already curated as span {self.span} in {self.span_dir}; nothing written."
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.quarantine_reasons.items())) or "none"
        return (f"Read {self.rows_in} rows from {len(self.input_files)} file(s); wrote "
                f"{self.rows_written} labelled rows to span {self.span} at {self.span_dir}; "
                f"quarantined {self.rows_quarantined} ({reasons})"
                + (f" at {self.quarantine_dir}" if self.quarantine_dir else "") + ".")


# ---------------------------------------------------------------- inputs


def resolve_inputs(input_paths: Union[str, Sequence[str]]) -> List[str]:
    """Expands paths/globs (a comma-separated string is split) into sorted files."""
    patterns = [input_paths] if isinstance(input_paths, str) else list(input_paths)
    patterns = [p.strip() for pattern in patterns for p in pattern.split(",") if p.strip()]
    files = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matched = [m for m in matched if os.path.isfile(m)]
        if not matched:
            raise CurationError(f"Input '{pattern}' matches no file.")
        files.extend(matched)
    return sorted(set(os.path.abspath(f) for f in files))


def read_header(path: str) -> List[str]:
    """The CSV header of `path`, checked for readability and content."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = f.readline()
            first_row = f.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise CurationError(f"Cannot read input file {path}: {error}") from error
    if not header.strip():
        raise CurationError(f"Input file {path} is empty (no header).")
    if not first_row.strip():
        raise CurationError(f"Input file {path} has a header but no data rows.")
    return [c.strip() for c in header.strip().split(",")]


def check_columns(path: str, header: List[str], station: Optional[str]) -> None:
    """Raises CurationError naming the file and every missing required column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if features.STATION_KEY not in header and not station:
        missing.append(f"{features.STATION_KEY} (or pass station=...)")
    if missing:
        raise CurationError(
            f"Input file {path} is missing required column(s): {', '.join(missing)}. "
            f"Required: {', '.join(REQUIRED_COLUMNS)}; found: {', '.join(header)}.")


def fingerprint(files: List[str]) -> str:
    """sha256 over the files' contents, so unchanged raw data is recognised."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- spans


def existing_spans(output_dir: str) -> List[int]:
    """Span numbers present (complete) under `<output_dir>/curated`."""
    root = os.path.join(output_dir, CURATED_DIR)
    if not os.path.isdir(root):
        return []
    names = [n[len(SPAN_PREFIX):] for n in os.listdir(root) if n.startswith(SPAN_PREFIX)]
    return sorted(int(n) for n in names if n.isdigit())


def latest_span(output_dir: str) -> Optional[int]:
    spans = existing_spans(output_dir)
    return spans[-1] if spans else None


def span_dir(output_dir: str, span: int, kind: str = CURATED_DIR) -> str:
    return os.path.join(output_dir, kind, SPAN_DIR_PATTERN.format(SPAN=span))


def find_span_for_inputs(output_dir: str, input_fingerprint: str) -> Optional[int]:
    """The span already curated from inputs with this fingerprint, if any."""
    for span in existing_spans(output_dir):
        path = os.path.join(span_dir(output_dir, span), MANIFEST_FILE)
        if os.path.exists(path):
            with open(path) as f:
                if json.load(f).get("input_fingerprint") == input_fingerprint:
                    return span
    return None


# ---------------------------------------------------------------- Spark


def create_spark_session(master: str = "local[*]"):
    """A SparkSession configured for strict, reproducible date parsing."""
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(master)
        .appName("rain-tomorrow-curation")
        .config("spark.sql.legacy.timeParserPolicy", "CORRECTED")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )


def read_raw(spark, files: List[str], station: Optional[str]):
    """All files as string columns, plus source file and 1-based data line number."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    frames = []
    for path in files:
        header = read_header(path)
        check_columns(path, header, station)
        schema = T.StructType([T.StructField(c, T.StringType()) for c in header])
        frame = spark.read.csv(path, header=True, schema=schema, mode="PERMISSIVE")
        for column in OPTIONAL_COLUMNS:
            if column not in header:
                value = station if column == features.STATION_KEY else None
                frame = frame.withColumn(column, F.lit(value).cast("string"))
        # monotonically_increasing_id follows file order within a file, so the
        # row number over it is the data line number (header is line 1) and
        # "first occurrence" of a duplicate is well defined.
        order = Window.partitionBy("source_file").orderBy("_order")
        frame = (
            frame.select(*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
            .withColumn("source_file", F.lit(path))
            .withColumn("_order", F.monotonically_increasing_id())
            .withColumn("line_number", (F.row_number().over(order) + 1).cast("long"))
            .drop("_order")
        )
        frames.append(frame)
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _parse_date(column):
    from pyspark.sql import functions as F

    return F.coalesce(*[F.to_date(column, fmt) for fmt in DATE_FORMATS])


def validate(raw):
    """Adds typed columns and a `reason` (null for valid rows)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = raw.withColumn("station", F.trim(F.col("station")))
    frame = frame.withColumn("_date", _parse_date(F.trim(F.col("date"))))
    for column in features.OBSERVATIONS:
        frame = frame.withColumn(f"_{column}", F.trim(F.col(column)).cast("double"))
    checks = [(F.col("station").isNull() | (F.col("station") == ""), REASON_MISSING.format(column="station"))]
    checks.append((F.col("_date").isNull() & F.col("date").isNotNull() & (F.trim(F.col("date")) != ""),
                   REASON_BAD_DATE))
    checks.append((F.col("_date").isNull(), REASON_MISSING.format(column="date")))
    for column in features.OBSERVATIONS:
        blank = F.col(column).isNull() | (F.trim(F.col(column)) == "")
        checks.append((blank, REASON_MISSING.format(column=column)))
        checks.append((F.col(f"_{column}").isNull() | F.isnan(F.col(f"_{column}")),
                       REASON_NON_NUMERIC.format(column=column)))
    checks.append((F.col("_precipitation") < 0, REASON_NEGATIVE_PRECIPITATION))
    checks.append((F.col("_wind") < 0, REASON_NEGATIVE_WIND))
    low, high = TEMPERATURE_RANGE_C
    checks.append(((F.col("_temp_min") > F.col("_temp_max"))
                   | ~F.col("_temp_min").between(low, high)
                   | ~F.col("_temp_max").between(low, high), REASON_IMPOSSIBLE_TEMPERATURE))
    reason = F.lit(None).cast("string")
    for condition, text in reversed(checks):
        reason = F.when(condition, F.lit(text)).otherwise(reason)
    frame = frame.withColumn("reason", reason)

    order = Window.partitionBy("station", "_date").orderBy("source_file", "line_number")
    first = F.first(F.concat_ws(":", "source_file", "line_number")).over(order)
    rank = F.row_number().over(order)
    valid = F.col("reason").isNull()
    # Only rows that are otherwise valid compete for (station, date).
    ranked = frame.where(valid).withColumn("_rank", rank).withColumn("_first", first)
    ranked = ranked.withColumn(
        "reason",
        F.when(F.col("_rank") > 1, F.concat(F.lit(REASON_DUPLICATE + ": first seen at "), F.col("_first"))),
    ).drop("_rank", "_first")
    return ranked.unionByName(frame.where(~valid))


def engineer(valid):
    """Features and the label for valid rows; rows without a next day are dropped."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = valid.select(
        F.col("station"),
        F.col("_date").alias("date"),
        *[F.col(f"_{c}").alias(c) for c in features.OBSERVATIONS],
        F.col("weather"),
    ).withColumn("_day", F.datediff(F.col("date"), F.lit("1970-01-01")))
    by_day = Window.partitionBy("station").orderBy("_day")
    columns = [
        F.col("station").cast("string"),
        F.col("date").cast("date"),
        F.month("date").cast("long").alias(features.MONTH_KEY),
        *[F.col(c).cast("double") for c in features.OBSERVATIONS],
        F.when(F.trim(F.col("weather")) == "", None).otherwise(F.lower(F.trim(F.col("weather")))).alias("weather"),
        (F.col("temp_max") - F.col("temp_min")).cast("double").alias("temp_range"),
    ]
    for observation in features.OBSERVATIONS:
        for days in features.LAG_DAYS:
            # A calendar-day frame: a missing day gives null, not the previous row.
            window = by_day.rangeBetween(-days, -days)
            columns.append(F.first(observation).over(window).cast("double")
                           .alias(features.lag_name(observation, days)))
        for days in features.ROLLING_WINDOW_DAYS:
            window = by_day.rangeBetween(-(days - 1), 0)
            columns.append(F.avg(observation).over(window).cast("double")
                           .alias(features.rolling_mean_name(observation, days)))
    angle = 2 * math.pi * F.dayofyear("date") / 365.25
    columns.append(F.sin(angle).cast("double").alias("day_of_year_sin"))
    columns.append(F.cos(angle).cast("double").alias("day_of_year_cos"))
    tomorrow = F.first("precipitation").over(by_day.rangeBetween(1, 1))
    columns.append(F.when(tomorrow.isNull(), None).otherwise((tomorrow > 0).cast("long"))
                   .alias(features.LABEL_KEY))
    result = frame.select(*columns)
    return result.where(F.col(features.LABEL_KEY).isNotNull())


# ---------------------------------------------------------------- writing


def _write_parquet(frame, path: str, rows: int) -> None:
    files = max(1, math.ceil(rows / _ROWS_PER_OUTPUT_FILE))
    frame.coalesce(files).write.mode("errorifexists").parquet(path)


def _publish(staging: str, target: str) -> None:
    if os.path.exists(target):
        raise CurationError(f"Span directory {target} already exists; refusing to overwrite.")
    os.rename(staging, target)


def run_curation(
    input_paths: Union[str, Sequence[str]],
    output_dir: str,
    *,
    station: Optional[str] = None,
    span: Optional[int] = None,
    master: str = "local[*]",
    spark=None,
) -> CurationResult:
    """Curates raw CSVs into `<output_dir>/curated/span-<N>/` (and quarantine).

    Args:
      input_paths: a path, glob, comma-separated list, or a list of them.
      output_dir: root holding `curated/` and `quarantine/`.
      station: station id for files without a `station` column.
      span: explicit span number; default is one above the latest span.
      master: Spark master URL when no session is passed.
      spark: an existing SparkSession to use (not stopped afterwards).

    Returns:
      A CurationResult; `skipped` is True when these exact inputs were already
      curated (nothing is written then).

    Raises:
      CurationError: no input, an unreadable/empty file, a missing column, an
        existing explicit span, or no valid row at all. Nothing is written.
    """
    files = resolve_inputs(input_paths)
    for path in files:
        check_columns(path, read_header(path), station)
    input_fingerprint = fingerprint(files)
    already = find_span_for_inputs(output_dir, input_fingerprint)
    if already is not None:
        return CurationResult(already, True, 0, 0, 0, {}, span_dir(output_dir, already), None, files)
    if span is not None and span in existing_spans(output_dir):
        raise CurationError(
            f"Span {span} already exists in {span_dir(output_dir, span)}; refusing to overwrite.")
    span = span if span is not None else (latest_span(output_dir) or 0) + 1

    own_session = spark is None
    spark = spark or create_spark_session(master)
    try:
        return _curate(spark, files, output_dir, station, span, input_fingerprint)
    finally:
        if own_session:
            spark.stop()


def _curate(spark, files, output_dir, station, span, input_fingerprint) -> CurationResult:
    from pyspark.sql import functions as F

    checked = validate(read_raw(spark, files, station)).cache()
    rows_in = checked.count()
    bad = checked.where(F.col("reason").isNotNull())
    reasons = _merge_duplicate_reasons(bad)
    rows_quarantined = sum(reasons.values())
    if rows_quarantined == rows_in:
        raise CurationError(f"All {rows_in} rows of {', '.join(files)} failed validation: {reasons}.")
    curated = engineer(checked.where(F.col("reason").isNull())).cache()
    rows_written = curated.count()
    if rows_written == 0:
        raise CurationError(
            f"No row of {', '.join(files)} has a next day to label; nothing to write.")

    curated_root = os.path.join(output_dir, CURATED_DIR)
    os.makedirs(curated_root, exist_ok=True)
    staging = os.path.join(curated_root, f"{_STAGING_PREFIX}{span}-{uuid.uuid4().hex[:8]}")
    quarantine_target = None
    try:
        _write_parquet(curated, staging, rows_written)
        manifest = {
            "span": span,
            "input_fingerprint": input_fingerprint,
            "input_files": [{"path": p, "sha256": file_sha256(p)} for p in files],
            "rows_in": rows_in,
            "rows_written": rows_written,
            "rows_quarantined": rows_quarantined,
            "quarantine_reasons": reasons,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "spark_version": spark.version,
        }
        with open(os.path.join(staging, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
        if rows_quarantined:
            quarantine_target = _write_quarantine(bad, output_dir, span, rows_quarantined)
        try:
            _publish(staging, span_dir(output_dir, span))
        except BaseException:
            if quarantine_target:  # keep quarantine and span in step
                shutil.rmtree(quarantine_target, ignore_errors=True)
            raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
        checked.unpersist()
        curated.unpersist()
    return CurationResult(span, False, rows_in, rows_written, rows_quarantined, reasons,
                          span_dir(output_dir, span), quarantine_target, files)


def _merge_duplicate_reasons(bad) -> Dict[str, int]:
    """Counts per reason kind (duplicates carry where the first was seen)."""
    counts: Dict[str, int] = {}
    for row in bad.groupBy("reason").count().collect():
        kind = REASON_DUPLICATE if row["reason"].startswith(REASON_DUPLICATE) else row["reason"]
        counts[kind] = counts.get(kind, 0) + row["count"]
    return counts


def _write_quarantine(bad, output_dir: str, span: int, rows: int) -> str:
    root = os.path.join(output_dir, QUARANTINE_DIR)
    os.makedirs(root, exist_ok=True)
    target = span_dir(output_dir, span, QUARANTINE_DIR)
    staging = os.path.join(root, f"{_STAGING_PREFIX}{span}-{uuid.uuid4().hex[:8]}")
    raw_columns = list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    try:
        _write_parquet(bad.select(*raw_columns, "source_file", "line_number", "reason"), staging, rows)
        _publish(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return target


# ---------------------------------------------------------------- CLI


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, action="append",
                        help="raw CSV path or glob; repeatable or comma-separated")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--station", default=None)
    parser.add_argument("--span", type=int, default=None)
    parser.add_argument("--master", default="local[*]")
    flags = parser.parse_args(argv)
    try:
        result = run_curation(flags.input, flags.output_dir, station=flags.station,
                              span=flags.span, master=flags.master)
    except CurationError as error:
        print(f"Curation failed: {error}", file=sys.stderr)
        return 1
    print(result.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
