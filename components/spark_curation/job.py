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
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Union

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from components.spark_curation import cluster, inputs, jvm_startup, transform
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
# Quarantine share above which a run stops before writing (a fraction, 0-1).
DEFAULT_MAX_QUARANTINE_SHARE = inputs.DEFAULT_MAX_QUARANTINE_SHARE
share_flag = inputs.share_flag  # argparse type of --max-quarantine-share
# How many reasons the quarantine-ceiling error lists.
_TOP_REASONS = 5
# Spark sizing for a session the job creates itself. Spark's default of 200
# shuffle partitions made the 1,461-row bundled run schedule 400- and 200-task
# stages; the job sizes them to the input instead: one partition per
# _BYTES_PER_SHUFFLE_PARTITION of raw CSV, at least one, at most
# _MAX_SHUFFLE_PARTITIONS; adaptive execution then coalesces small
# partitions further (also inside the cached DataFrames).
_BYTES_PER_SHUFFLE_PARTITION = 16 * 1024 * 1024
_MAX_SHUFFLE_PARTITIONS = 200
# Console noise: no progress bars, and log4j at ERROR from JVM start-up on
# (the hostname and native-hadoop WARNs), unless verbose.
VERBOSE_ENV = "SPARK_CURATION_VERBOSE"
# Written to a temporary file when needed (no package data to install): errors
# only, on stderr, so start-up WARNs (hostname resolves to a loopback address,
# no native-hadoop library, truncated plan strings) stay off the console.
_QUIET_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
# A logger configured for the class that initialises Spark's logging keeps
# Spark from lowering the console to WARN with "Setting default log level".
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
logger.submit.name = org.apache.spark.deploy.SparkSubmit
logger.submit.level = error
logger.context.name = org.apache.spark.SparkContext
logger.context.level = error
"""
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
    input_paths: Union[str, inputs.RawInput, Sequence[Union[str, inputs.RawInput]]],
    output_dir: str,
    *,
    station: Optional[str] = None,
    span: Optional[int] = None,
    master: Optional[str] = "local[*]",
    spark: Optional[SparkSession] = None,
    spark_conf: Optional[Mapping[str, str]] = None,
    max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE,
    verbose: Optional[bool] = None,
    build_class_archive: bool = False,
) -> CurationResult:
    """Curates raw CSVs into `<output_dir>/curated/span-<N>/` (and quarantine).

    Args:
      input_paths: a path or glob, or a list of them; or RawInputs from
        `inputs.pair_stations` (a station per path/glob, or from file names).
      output_dir: root holding `curated/` and `quarantine/`.
      station: station id for files without a `station` column (plain-string
        inputs only; a RawInput carries its own).
      span: explicit span number; default one above the latest curated span.
      master: Spark master for a session this call creates; None leaves it to
        spark-submit's configuration.
      spark: an existing SparkSession to use; it is not stopped.
      spark_conf: Spark conf entries for a session this call creates (e.g.
        `cluster.kubernetes_spark_conf(...)`); run-time placeholders such as
        `${env:POD_IP}` are resolved first (`cluster.resolve_conf`). Ignored
        when `spark` is given. Entries given here win over the job's own
        sizing and quiet settings (`session_defaults`).
      max_quarantine_share: the largest share of input rows (0-1) that may be
        quarantined; above it the run stops before writing anything. 1 turns
        the ceiling off.
      verbose: Spark's console progress bars and WARN logs for a session this
        call creates; None reads the environment variable
        SPARK_CURATION_VERBOSE (1/true/yes). Default quiet.
      build_class_archive: when this call launches the driver JVM, have it
        dump Spark's class-data-sharing archive and stop it afterwards
        (`jvm_startup`; its CLI builds the archive this way).

    Returns:
      A CurationResult; `skipped` is True when the same inputs were already
      curated (then nothing is read or written).

    Raises:
      CurationError: no matching input, an unreadable or empty file, a missing
        column, a station given twice for one file (paired or from its name,
        and in a station column), stations that cannot be paired with the
        inputs (`inputs.StationMappingError`), an existing explicit span, no
        row to write, or more rows quarantined than `max_quarantine_share`.
        Nothing is written in that case.
    """
    if not 0.0 <= max_quarantine_share <= 1.0:
        raise ValueError(f"max_quarantine_share must be within [0, 1]; got {max_quarantine_share}.")
    sources = inputs.resolve_stations(inputs.as_raw_inputs(input_paths, station))
    files = list(sources)
    headers = inputs.read_headers(sources)
    stations = inputs.file_stations(headers, sources)
    digests = {path: inputs.file_sha256(path) for path in files}
    fingerprint = inputs.inputs_fingerprint(
        digests, {path: source.station for path, source in sources.items()})
    already = find_span_for_inputs(output_dir, fingerprint)
    if already is not None:
        return CurationResult(already, True, 0, 0, 0, {}, span_dir(output_dir, already), None, files)
    span = span if span is not None else (latest_span(output_dir) or 0) + 1
    check_span_free(output_dir, span)

    input_bytes = sum(os.path.getsize(path) for path in files)
    defaults = session_defaults(input_bytes, _verbose(verbose))
    with _session(spark, master, spark_conf, defaults, input_bytes,
                  build_class_archive) as session, _sql_settings(session):
        return _curate(session, headers, stations, digests, fingerprint, station, output_dir,
                       span, max_quarantine_share)


def _verbose(verbose: Optional[bool]) -> bool:
    if verbose is not None:
        return verbose
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def shuffle_partitions(input_bytes: int) -> int:
    """Shuffle partitions for `input_bytes` of raw CSV (1 for the bundled 48 kB file)."""
    return max(1, min(_MAX_SHUFFLE_PARTITIONS, math.ceil(input_bytes / _BYTES_PER_SHUFFLE_PARTITION)))


def session_defaults(input_bytes: int, verbose: bool = False) -> Dict[str, str]:
    """Conf the job gives a session it creates, before the caller's `spark_conf`.

    Shuffle partitions sized to the input, adaptive query execution with
    partition coalescing (allowed to change cached plans, which is where the
    job's windows run), and, unless `verbose`, no console progress bars and a
    log4j configuration at ERROR for the driver JVM (effective only when this
    call starts the JVM; under spark-submit the submitter's logging applies).
    """
    conf = {
        "spark.sql.shuffle.partitions": str(shuffle_partitions(input_bytes)),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
    }
    if not verbose:
        conf["spark.ui.showConsoleProgress"] = "false"
        conf["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile=file:{quiet_log4j2_file()}")
    return conf


def quiet_log4j2_file() -> str:
    """Path of a log4j2 properties file at level ERROR (written once per content)."""
    digest = hashlib.sha256(_QUIET_LOG4J2.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"rain-curation-log4j2-{digest}.properties")
    if not os.path.exists(path):
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False,
                                         suffix=".tmp") as f:
            f.write(_QUIET_LOG4J2)
        os.replace(f.name, path)  # atomic: a concurrent run never reads half a file
    return path


@contextlib.contextmanager
def _session(spark: Optional[SparkSession], master: Optional[str],
             spark_conf: Optional[Mapping[str, str]] = None,
             defaults: Optional[Mapping[str, str]] = None, input_bytes: int = 0,
             build_class_archive: bool = False) -> Iterator[SparkSession]:
    """The caller's session, or one created (and stopped afterwards) for this run.

    `defaults` (see `session_defaults`) apply only to a session created here,
    under `spark_conf`; an already running session keeps its own settings.
    When this call launches the driver JVM (no gateway in this process, not
    under spark-submit), the JVM also gets `jvm_startup.java_options` (C1-only
    JIT for small inputs, the class-data-sharing archive if built); with
    `build_class_archive` it dumps that archive instead, and is stopped after
    the session so that it writes it.
    """
    if spark is not None:
        yield spark
        return
    # getOrCreate hands back a session that is already running; only stop ours.
    created = SparkSession.getActiveSession() is None
    builder = SparkSession.builder.appName("rain-tomorrow-curation")
    if master:
        builder = builder.master(master)
    conf = dict(defaults or {}) if created else {}
    conf.update(cluster.resolve_conf(spark_conf or {}, os.environ))
    build = None
    if _launches_jvm():
        options = jvm_startup.java_options(input_bytes)
        build = jvm_startup.start_build() if build_class_archive else None
        if build is not None:  # none exists yet, so `options` has no archive to use
            options.append(build.option)
        key = "spark.driver.extraJavaOptions"
        conf[key] = " ".join(filter(None, [conf.get(key, ""), *options]))
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    try:
        yield session
    finally:
        if created:
            session.stop()
        if build is not None:
            jvm_startup.stop_launched_jvm()  # the JVM writes the archive as it exits
            jvm_startup.finish(build)


def _launches_jvm() -> bool:
    """True when creating a session here starts a new driver JVM (its options apply)."""
    from pyspark import SparkContext

    return SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ


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


def _curate(spark, headers, stations, digests, fingerprint, station, output_dir, span,
            max_quarantine_share) -> CurationResult:
    checked = transform.validate(transform.read_raw(spark, headers, stations)).cache()
    curated = transform.engineer(checked).cache()
    try:
        reasons, examples, rows_in = _count_reasons(checked)
        rows_quarantined = sum(reasons.values())
        files = list(headers)
        if rows_quarantined == rows_in:
            raise CurationError(
                f"All {rows_in} rows of {', '.join(files)} failed validation ({reasons}); "
                "nothing written.")
        _check_quarantine_share(rows_quarantined, rows_in, reasons, examples, max_quarantine_share)
        rows_written = curated.count()
        if rows_written == 0:
            raise CurationError(
                f"No valid row of {', '.join(files)} has a valid next day to label; "
                "nothing written.")
        result = CurationResult(span, False, rows_in, rows_written, rows_quarantined, reasons,
                                span_dir(output_dir, span), None, files)
        _write_outputs(curated, transform.quarantine_rows(checked), result,
                       _manifest(result, spark, digests, fingerprint, station, stations),
                       output_dir)
        return result
    finally:
        curated.unpersist()
        checked.unpersist()


def _count_reasons(checked: DataFrame):
    """({reason kind: rows}, {reason kind: first file:line}, total rows) in one pass.

    Valid rows have no reason; the example of a reason is its first row in
    (file, line) order.
    """
    first = F.min(F.struct(transform.FILE_INDEX, LINE_NUMBER, SOURCE_FILE)).alias("first")
    counts = (checked.groupBy(transform.reason_kind().alias(REASON))
              .agg(F.count(F.lit(1)).alias("count"), first).collect())
    reasons = {row[REASON]: row["count"] for row in counts if row[REASON] is not None}
    examples = {row[REASON]: f"{row['first'][SOURCE_FILE]}:{row['first'][LINE_NUMBER]}"
                for row in counts if row[REASON] is not None}
    return reasons, examples, sum(row["count"] for row in counts)


def _check_quarantine_share(quarantined: int, rows_in: int, reasons: Mapping[str, int],
                            examples: Mapping[str, str], ceiling: float) -> None:
    """Raises CurationError when more than `ceiling` of the rows were quarantined."""
    share = quarantined / rows_in
    if share <= ceiling:
        return
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:_TOP_REASONS]
    listed = "; ".join(f"{reason}: {count} (e.g. {examples[reason]})" for reason, count in top)
    more = f"; and {len(reasons) - len(top)} more reason(s)" if len(reasons) > len(top) else ""
    raise CurationError(
        f"{quarantined} of {rows_in} rows ({share:.1%}) failed validation, above the "
        f"quarantine ceiling of {ceiling:.1%} (--max-quarantine-share); nothing written. "
        f"Top reasons: {listed}{more}.")


def _manifest(result: CurationResult, spark, digests, fingerprint, station, stations) -> dict:
    return {
        "span": result.span,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "spark_version": spark.version,
        "input_fingerprint": fingerprint,
        "station_default": station,
        # {file: station its rows were given; null: the file's station column}
        "input_stations": dict(stations),
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
    inputs.add_station_flags(parser, "--input")
    parser.add_argument("--verbose", action="store_true", default=None,
                        help="Spark's progress bars and WARN logs on the console (also: "
                             f"{VERBOSE_ENV}=1); default quiet")
    parser.add_argument("--span", type=int, default=None,
                        help="explicit span number (default: latest + 1)")
    parser.add_argument("--master", "--spark-master", dest="master", default=None,
                        help="Spark master, e.g. local[2], spark://host:7077, "
                             "k8s://https://kubernetes.default.svc (default: spark-submit's, "
                             "else local[*])")
    parser.add_argument("--spark-conf", default="", type=_conf_flag,
                        help="JSON object of extra Spark conf entries for the session, e.g. "
                             "the SparkCuration task's spark_conf (see cluster.py)")
    flags = parser.parse_args(argv)
    try:
        flags.inputs = inputs.pair_stations(flags.input, flags.station,
                                            flags.station_from_filename)
    except inputs.StationMappingError as error:
        parser.error(str(error))
    return flags


def _conf_flag(text: str) -> Dict[str, str]:
    try:
        return cluster.parse_conf_json(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def spark_failure(error: Py4JJavaError) -> str:
    """What a Spark failure (e.g. a task failed on every retry after executors were
    lost) means for the run: the staging directory is gone, no span was published."""
    cause = str(error.java_exception).splitlines()[0]
    return f"the Spark job failed; no span was published.\n{cause}"


def main(argv: Optional[List[str]] = None) -> int:
    """CLI entry point; returns the process exit code (1 on CurationError)."""
    flags = parse_flags(argv)
    try:
        result = run_curation(flags.inputs, flags.output_dir, span=flags.span,
                              master=flags.master, spark_conf=flags.spark_conf,
                              max_quarantine_share=flags.max_quarantine_share,
                              verbose=flags.verbose)
    except CurationError as error:
        print(f"Curation failed: {error}", file=sys.stderr)
        return 1
    except Py4JJavaError as error:
        print(f"Curation failed: {spark_failure(error)}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
