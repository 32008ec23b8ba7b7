"""Spark curation: raw weather CSVs -> validated, feature-engineered Parquet spans.

Runs as a function (`run_curation`), as a module
(`python -m components.spark_curation.job --input ... --output-dir ...`) and
as a script under `spark-submit components/spark_curation/job.py ...`.

Every input row ends up either in the curated span (with a label) or in the
quarantine with a reason, or is counted as having no next day to label.
Fatal problems raise CurationError before anything is written; a span
directory is renamed into place complete and is never overwritten.
"""
import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import shutil
import sys
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Union

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from components.spark_curation import cluster, inputs, transform
from components.spark_curation.contract import (
    LINE_NUMBER,
    REASON,
    SOURCE_FILE,
    CurationError,
    curated_columns,
)
from components.spark_curation.spans import (  # re-exported: the job's public API
    CURATED_DIR,
    MANIFEST_FILE,
    QUARANTINE_DIR,
    SPAN_DIR_PATTERN,
    check_span_free,
    curated_span_pattern,
    find_span_for_inputs,
    latest_span,
    publish,
    span_dir,
    staging_dir,
)
from models import features

__all__ = [
    "CURATED_DIR", "QUARANTINE_DIR", "SPAN_DIR_PATTERN", "MANIFEST_FILE",
    "CurationError", "CurationResult", "curated_span_pattern", "find_span_for_inputs",
    "latest_span", "run_curation", "main",
]

_ROWS_PER_OUTPUT_FILE = 1_000_000
# Set for the duration of a run, also on a caller's session: dates must parse
# strictly (null, not an exception or a legacy-lenient guess) to be quarantined.
_SQL_SETTINGS = {
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.sql.ansi.enabled": "false",
}


@dataclasses.dataclass
class CurationResult:
    """What one run did. Counts are zero when `skipped` (nothing was read)."""

    span: int
    skipped: bool
    rows_in: int
    rows_written: int
    rows_quarantined: int
    quarantine_reasons: Dict[str, int]
    span_dir: str
    quarantine_dir: Optional[str]
    input_files: List[str]

    @property
    def rows_unlabelled(self) -> int:
        """Valid rows not written because their next day is absent."""
        return self.rows_in - self.rows_written - self.rows_quarantined

    def summary(self) -> str:
        """One paragraph for people: counts, span, reasons and where it went."""
        if self.skipped:
            return (f"Inputs ({len(self.input_files)} file(s)) already curated as span "
                    f"{self.span} at {self.span_dir}; nothing written.")
        reasons = "; ".join(f"{k}: {v}" for k, v in sorted(self.quarantine_reasons.items()))
        quarantine = f" into {self.quarantine_dir}" if self.quarantine_dir else ""
        return (f"Read {self.rows_in} rows from {len(self.input_files)} file(s); wrote "
                f"{self.rows_written} labelled rows as span {self.span} to {self.span_dir}; "
                f"quarantined {self.rows_quarantined} ({reasons or 'none'}){quarantine}; "
                f"{self.rows_unlabelled} valid rows had no next day to label.")


def run_curation(
    input_paths: Union[str, Sequence[str]],
    output_dir: str,
    *,
    station: Optional[str] = None,
    span: Optional[int] = None,
    master: Optional[str] = "local[*]",
    spark: Optional[SparkSession] = None,
    spark_conf: Optional[Mapping[str, str]] = None,
) -> CurationResult:
    """Curates raw CSVs into `<output_dir>/curated/span-<N>/` (and quarantine).

    Args:
      input_paths: a path or glob, or a list of them.
      output_dir: root holding `curated/` and `quarantine/`.
      station: station id for files without a `station` column.
      span: explicit span number; default one above the latest curated span.
      master: Spark master for a session this call creates; None leaves it to
        spark-submit's configuration.
      spark: an existing SparkSession to use; it is not stopped.
      spark_conf: Spark conf entries for a session this call creates (e.g.
        `cluster.kubernetes_spark_conf(...)`); run-time placeholders such as
        `${env:POD_IP}` are resolved first (`cluster.resolve_conf`). Ignored
        when `spark` is given.

    Returns:
      A CurationResult; `skipped` is True when the same inputs were already
      curated (then nothing is read or written).

    Raises:
      CurationError: no matching input, an unreadable or empty file, a missing
        column, an existing explicit span, or no row to write. Nothing is
        written in that case.
    """
    files = inputs.resolve_inputs(input_paths)
    headers = inputs.read_headers(files, station)
    digests = {path: inputs.file_sha256(path) for path in files}
    fingerprint = inputs.inputs_fingerprint(digests, station)
    already = find_span_for_inputs(output_dir, fingerprint)
    if already is not None:
        return CurationResult(already, True, 0, 0, 0, {}, span_dir(output_dir, already), None, files)
    span = span if span is not None else (latest_span(output_dir) or 0) + 1
    check_span_free(output_dir, span)

    with _session(spark, master, spark_conf) as session, _sql_settings(session):
        return _curate(session, headers, digests, fingerprint, station, output_dir, span)


@contextlib.contextmanager
def _session(spark: Optional[SparkSession], master: Optional[str],
             spark_conf: Optional[Mapping[str, str]] = None) -> Iterator[SparkSession]:
    """The caller's session, or one created (and stopped afterwards) for this run."""
    if spark is not None:
        yield spark
        return
    # getOrCreate hands back a session that is already running; only stop ours.
    created = SparkSession.getActiveSession() is None
    builder = SparkSession.builder.appName("rain-tomorrow-curation")
    if master:
        builder = builder.master(master)
    for key, value in cluster.resolve_conf(spark_conf or {}, os.environ).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    try:
        yield session
    finally:
        if created:
            session.stop()


@contextlib.contextmanager
def _sql_settings(spark: SparkSession) -> Iterator[None]:
    previous = {key: spark.conf.get(key, None) for key in _SQL_SETTINGS}
    for key, value in _SQL_SETTINGS.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _curate(spark, headers, digests, fingerprint, station, output_dir, span) -> CurationResult:
    checked = transform.validate(transform.read_raw(spark, headers, station)).cache()
    curated = transform.engineer(checked).cache()
    try:
        reasons, rows_in = _count_reasons(checked)
        rows_quarantined = sum(reasons.values())
        files = list(headers)
        if rows_quarantined == rows_in:
            raise CurationError(
                f"All {rows_in} rows of {', '.join(files)} failed validation ({reasons}); "
                "nothing written.")
        rows_written = curated.count()
        if rows_written == 0:
            raise CurationError(
                f"No valid row of {', '.join(files)} has a valid next day to label; "
                "nothing written.")
        result = CurationResult(span, False, rows_in, rows_written, rows_quarantined, reasons,
                                span_dir(output_dir, span), None, files)
        _write_outputs(curated, transform.quarantine_rows(checked), result,
                       _manifest(result, spark, digests, fingerprint, station), output_dir)
        return result
    finally:
        curated.unpersist()
        checked.unpersist()


def _count_reasons(checked: DataFrame):
    """({reason kind: rows}, total rows) in one pass; valid rows have no reason."""
    counts = checked.groupBy(transform.reason_kind().alias(REASON)).count().collect()
    reasons = {row[REASON]: row["count"] for row in counts if row[REASON] is not None}
    return reasons, sum(row["count"] for row in counts)


def _manifest(result: CurationResult, spark, digests, fingerprint, station) -> dict:
    return {
        "span": result.span,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "spark_version": spark.version,
        "input_fingerprint": fingerprint,
        "station_default": station,
        "input_files": [{"path": path, "sha256": digest} for path, digest in digests.items()],
        "rows_in": result.rows_in,
        "rows_written": result.rows_written,
        "rows_quarantined": result.rows_quarantined,
        "rows_unlabelled": result.rows_unlabelled,
        "quarantine_reasons": result.quarantine_reasons,
        "columns": [{"name": name, "type": kind} for name, kind in curated_columns()],
    }


def _write_outputs(curated, quarantined, result: CurationResult, manifest: dict, output_dir: str) -> None:
    """Writes the quarantine span, then publishes the curated span last.

    The curated span is what ExampleGen and re-runs look for, so it appears
    only once everything else is in place; if anything fails before that, the
    quarantine span written for it is removed again.
    """
    with staging_dir(os.path.join(output_dir, CURATED_DIR)) as staging:
        _write_parquet(curated, staging, result.rows_written,
                       (features.STATION_KEY, features.DATE_KEY))
        quarantine_dir = None
        try:
            if result.rows_quarantined:
                quarantine_dir = _write_quarantine(quarantined, output_dir, result)
            _write_manifest(staging, dict(manifest, quarantine_dir=quarantine_dir))
            publish(staging, result.span_dir)
        except BaseException:
            if quarantine_dir:
                shutil.rmtree(quarantine_dir, ignore_errors=True)
            raise
    result.quarantine_dir = quarantine_dir


def _write_quarantine(quarantined: DataFrame, output_dir: str, result: CurationResult) -> str:
    target = span_dir(output_dir, result.span, QUARANTINE_DIR)
    with staging_dir(os.path.join(output_dir, QUARANTINE_DIR)) as staging:
        _write_parquet(quarantined, staging, result.rows_quarantined,
                       (SOURCE_FILE, LINE_NUMBER))
        publish(staging, target)
    return target


def _write_parquet(frame: DataFrame, path: str, rows: int, sort_by: Sequence[str]) -> None:
    """A few Parquet files (one per ~1M rows), each sorted for readable output."""
    files = max(1, math.ceil(rows / _ROWS_PER_OUTPUT_FILE))
    frame.coalesce(files).sortWithinPartitions(*sort_by).write.mode("errorifexists").parquet(path)


def _write_manifest(directory: str, manifest: dict) -> None:
    with open(os.path.join(directory, MANIFEST_FILE), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)


def parse_flags(argv: Optional[List[str]]) -> argparse.Namespace:
    """Command-line flags of the job."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, nargs="+", action="extend",
                        help="raw CSV path(s) or glob(s); repeatable")
    parser.add_argument("--output-dir", required=True,
                        help="root of curated/ and quarantine/")
    parser.add_argument("--station", default=None,
                        help="station id for CSVs without a station column")
    parser.add_argument("--span", type=int, default=None,
                        help="explicit span number (default: latest + 1)")
    parser.add_argument("--master", "--spark-master", dest="master", default=None,
                        help="Spark master, e.g. local[2], spark://host:7077, "
                             "k8s://https://kubernetes.default.svc (default: spark-submit's, "
                             "else local[*])")
    parser.add_argument("--spark-conf", default="", type=_conf_flag,
                        help="JSON object of extra Spark conf entries for the session, e.g. "
                             "the SparkCuration task's spark_conf (see cluster.py)")
    return parser.parse_args(argv)


def _conf_flag(text: str) -> Dict[str, str]:
    try:
        return cluster.parse_conf_json(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(argv: Optional[List[str]] = None) -> int:
    """CLI entry point; returns the process exit code (1 on CurationError)."""
    flags = parse_flags(argv)
    try:
        result = run_curation(flags.input, flags.output_dir, station=flags.station,
                              span=flags.span, master=flags.master, spark_conf=flags.spark_conf)
    except CurationError as error:
        print(f"Curation failed: {error}", file=sys.stderr)
        return 1
    except Py4JJavaError as error:
        # A Spark failure (e.g. a task failed on every retry after executors
        # were lost): the staging directory is gone and no span was published.
        cause = str(error.java_exception).splitlines()[0]
        print(f"Curation failed: the Spark job failed; no span was published.\n{cause}",
              file=sys.stderr)
        return 1
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
