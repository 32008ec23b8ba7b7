"""Runs the whole path locally: raw CSV -> Spark curation -> TFX pipeline.

Usage (defaults run the bundled Seattle data into ./runs/):
  python local_runner.py [--raw-data 'my/*.csv' --station my_station] ...
  python local_runner.py --raw-data north.csv --station KNOR --raw-data south.csv --station KSOU ...

Flags are checked first (types, ranges, writable locations); then the run
takes an exclusive lock on its data, pipeline and serving directories (one
run at a time), cleans up after dead runs (executions left RUNNING in ML
Metadata are marked FAILED; unloadable version directories in the serving
base are moved aside to hidden `.rejected-*` names), runs Spark curation (which only
writes a new span when the raw data changed), and runs the TFX pipeline with
LocalDagRunner, Beam's DirectRunner and SQLite ML Metadata under the
pipeline root, with caching on. The summary of this run (by its own run id)
is printed and written as an HTML report.

Console: one line per step as it starts and ends (status, seconds), then the
summary; TensorFlow/absl/Beam output, Keras and Spark's console output go to
`<pipeline-root>/logs/<run>.log` (its path is printed). --verbose prints
everything on the console instead.

Exit codes (docs/reliability.md):
  0 ran (blessed or not)          1 data rejected (curation error, anomalies, drift)
  2 usage error (bad flag or unwritable location; nothing was done)
  3 any other failure             4 another run holds the lock (nothing was done)
Errors are one line without a traceback unless --verbose.
"""
import argparse
import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import traceback
from typing import Dict, Iterator, List, Optional

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RUNS_DIR = os.path.join(REPO_ROOT, "runs")
SCHEMA_PATH = os.path.join(REPO_ROOT, "schema", "schema.pbtxt")
METADATA_FILE = "metadata.sqlite"
REPORTS_DIR = "reports"
LOGS_DIR = "logs"
LOCK_FILE = ".run.lock"

EXIT_OK = 0
EXIT_DATA_REJECTED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_LOCKED = 4


# The summary lines of the run in progress, for pipeline.up_to_date's record.
_LAST_SUMMARY: List[str] = []


class RunLockedError(RuntimeError):
    """Another run holds the lock of a directory this run needs."""


def parse_flags(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parses and validates the flags; a bad one exits 2 naming it (argparse)."""
    from components.spark_curation.inputs import (
        StationMappingError, add_station_flags, pair_stations)
    from pipeline.runner_settings import AUTO, add_shared_flags, check_shared_flags, unwritable_reason

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_argument_group("data")
    group.add_argument("--raw-data", action="append", default=None,
                       help="raw weather CSV path or glob (repeatable); default: bundled Seattle data")
    add_station_flags(group, "--raw-data")  # default for the bundled data: seattle
    group.add_argument("--spark-master", default="local[*]")
    group = parser.add_argument_group("locations")
    group.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR,
                       help="default parent of data/, pipeline/ and serving/")
    group.add_argument("--data-dir", default=None, help="curated data output (default <runs-dir>/data)")
    group.add_argument("--pipeline-root", default=None, help="default <runs-dir>/pipeline")
    group.add_argument("--serving-base", default=None, help="default <runs-dir>/serving")
    add_shared_flags(parser, default_beam_workers=AUTO)
    parser.add_argument("--transform-statistics", action=argparse.BooleanOptionalAction,
                        default=False,
                        help="Transform also computes TFX's pre-/post-transform statistics "
                             "(default off: two TFDV passes, seconds of every run; the "
                             "data-exploration notebook computes what it shows itself)")
    parser.add_argument("--force", action="store_true",
                        help="run even when nothing changed since the last successful run "
                             "(default: print that run's summary; TFX's cache still applies, "
                             "--no-cache turns it off too)")
    parser.add_argument("--verbose", action="store_true",
                        help="print everything on the console: TensorFlow, Beam, Spark and Keras "
                             "output and the tracebacks of errors (default: one line per step "
                             "and per error, the rest in a log file under <pipeline-root>/logs/)")
    flags = parser.parse_args(argv)
    runs_dir = os.path.abspath(flags.runs_dir)
    if flags.mlflow_tracking_uri is None:  # MLflow without a server, beside the runs
        from components.experiment_tracking.tracking import default_local_uri

        flags.mlflow_tracking_uri = default_local_uri(runs_dir)
    checks = []
    for name, sub in (("data_dir", "data"), ("pipeline_root", "pipeline"), ("serving_base", "serving")):
        given = getattr(flags, name)
        setattr(flags, name, os.path.abspath(given or os.path.join(runs_dir, sub)))
        checks.append(("--" + name.replace("_", "-") if given else "--runs-dir", getattr(flags, name)))
    # Writable before anything runs (Spark, training): a usage error naming the flag.
    for flag, path in checks:
        reason = unwritable_reason(path)
        if reason:
            parser.error(f"argument {flag}: {path} is not writable: {reason}")
    if flags.raw_data is None:
        from vega_datasets import local_data

        flags.raw_data = [local_data.seattle_weather.filepath]
        if not flags.station_from_filename:
            flags.station = flags.station or ["seattle"]
    check_shared_flags(parser, flags)
    try:  # a usage error (exit 2) before any work: "3 --station values for 2 --raw-data values"
        flags.raw_inputs = pair_stations(flags.raw_data, flags.station, flags.station_from_filename)
    except StationMappingError as error:
        parser.error(str(error))
    return flags


# --- one run at a time --------------------------------------------------------


def _lock_dirs(flags: argparse.Namespace) -> List[str]:
    """Every directory a run writes, each locked (deduplicated, sorted)."""
    return sorted({flags.data_dir, flags.pipeline_root, flags.serving_base})


def read_lock_holder(lock_path: str) -> Dict:
    """What the holder of `lock_path` wrote about itself ({} if nothing yet)."""
    try:
        with open(lock_path) as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


def describe_holder(holder: Dict) -> str:
    if not holder:
        return "another run (it has not recorded its pid yet)"
    return (f"run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, started {holder.get('started_at', '?')})")


@contextlib.contextmanager
def run_lock(directories: List[str], record: Dict) -> Iterator[None]:
    """Exclusive, non-blocking fcntl locks on `<dir>/.run.lock` of each directory.

    The kernel releases them when the process ends, however it ends, so a
    killed run never leaves a stale lock. The holder writes `record` (pid,
    start time, run id) into each lock file for the message another run
    prints.

    Raises:
      RunLockedError: a lock is held by another process; nothing is kept.
    """
    held = []
    try:
        for directory in directories:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, LOCK_FILE)
            handle = open(path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise RunLockedError(
                    f"{directory} is in use by {describe_holder(read_lock_holder(path))}; "
                    f"one run at a time per runs directory (lock file {path}). "
                    "Wait for it to finish, or use another --runs-dir.") from None
            held.append(handle)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(record))
            handle.flush()
        yield
    finally:
        for handle in held:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            handle.close()  # closing releases the flock


# --- the console ---------------------------------------------------------------

# The console of the run in progress (set by main); None: the current sys streams.
_console = None


def _say(text: str = "") -> None:
    """A line of the runner's own output (progress, summary) on the console."""
    if _console is not None:
        _console.line(text)
    else:
        print(text)


def _complain(text: str) -> None:
    """An error line on the console's stderr."""
    if _console is not None:
        _console.error(text)
    else:
        print(text, file=sys.stderr)


def _active_console():
    from pipeline.console import default_console

    return _console or default_console()


def log_path_for(flags: argparse.Namespace, run_id: str) -> str:
    """`<pipeline-root>/logs/<run id, file-name safe>.log`."""
    stamp = run_id.replace(":", "").replace("-", "")
    return os.path.join(flags.pipeline_root, LOGS_DIR, f"run-{stamp}.log")


# --- the run ------------------------------------------------------------------


def curation_call(flags: argparse.Namespace):
    """(args, kwargs) of this run's `components.spark_curation.job.run_curation`."""
    return ((flags.raw_inputs, flags.data_dir),
            {"master": flags.spark_master, "max_quarantine_share": flags.max_quarantine_share,
             "verbose": flags.verbose})


def curate(flags: argparse.Namespace, meanwhile=None):
    """Runs Spark curation unless these exact raw files are curated already.

    The curation runs in a child process (`components.spark_curation.child`);
    `meanwhile()` runs here while it does (the pipeline's imports).
    """
    from components.spark_curation.child import run_curation_meanwhile
    from pipeline.console import step

    args, kwargs = curation_call(flags)
    with step(_active_console(), "SparkCuration") as status:
        result = run_curation_meanwhile(args, kwargs, meanwhile)
        status["status"] = "CACHED" if result.skipped else "COMPLETE"
    if result.skipped:
        _say(f"Curation: raw data unchanged, already curated as span {result.span} ({result.span_dir})")
    else:
        reasons = ", ".join(f"{k}: {v}" for k, v in result.quarantine_reasons.items()) or "none"
        _say(
            f"Curation: {result.rows_in} rows in, {result.rows_written} written to span "
            f"{result.span} ({result.span_dir}); {result.rows_quarantined} quarantined ({reasons})"
        )
    return result


# --- clean-up after dead runs ---------------------------------------------------

REJECTED_PREFIX = ".rejected-"
# A version missing these cannot be loaded; TF Serving would still try it as
# the newest version, so it is moved aside.
_UNLOADABLE = ("missing saved_model.pb", "missing variables")


def fail_abandoned_executions(flags: argparse.Namespace, run_id: str) -> List[str]:
    """Executions a dead run left NEW/RUNNING in ML Metadata, now marked FAILED."""
    path = os.path.join(flags.pipeline_root, METADATA_FILE)
    if not os.path.exists(path) or not _may_have_unfinished_executions(path):
        return []
    from pipeline import artifact_lookup  # imports TFX and TensorFlow: seconds

    store = artifact_lookup.open_store(flags.pipeline_root)
    found = artifact_lookup.fail_unfinished_executions(
        store, flags.pipeline_name, flags.pipeline_root,
        note=f"left unfinished by a run that died; marked FAILED by run {run_id}")
    notes = []
    for item in found:
        outputs = ", ".join(item["outputs"]) or "none on disk"
        notes.append(
            f"execution {item['execution_id']} ({item['node_id'] or '?'}) of run "
            f"{item['run_id'] or '?'} was left {item['state']} by a run that died: marked FAILED; "
            f"its unfinished outputs: {outputs}")
    return notes


def _may_have_unfinished_executions(path: str) -> bool:
    """False only when ML Metadata's SQLite file has no NEW (1) or RUNNING (2) execution.

    A read-only look at MLMD's `Execution` table (states from
    ml_metadata's Execution.State), so a clean store costs no TFX import;
    anything unexpected (another schema, a locked file) answers True and the
    full check runs.
    """
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM Execution WHERE last_known_state IN (1, 2)").fetchone()
    except sqlite3.Error:
        return True
    return count > 0


def _may_have_incomplete_versions(model_dir: str) -> bool:
    """False only when every integer version directory has the files of a complete push.

    A look with `os` alone (saved_model.pb, variables/variables.index,
    push_metadata.json), so a clean serving directory costs no TensorFlow
    import; anything else runs `serving.model_dir.incomplete_reason`, the rule.
    """
    for name in os.listdir(model_dir):
        path = os.path.join(model_dir, name)
        if name.isdigit() and not all(
                os.path.isfile(os.path.join(path, *parts)) for parts in
                (("saved_model.pb",), ("variables", "variables.index"), ("push_metadata.json",))):
            return True
    return False


def move_aside_broken_versions(flags: argparse.Namespace) -> List[str]:
    """Integer version directories TF Serving could not load, renamed to hidden names.

    A version without saved_model.pb (or its variables) is half-written or
    stray; TF Serving would pick it as the newest version. It is renamed to
    `.rejected-<version>-<UTC timestamp>` (TF Serving ignores non-integer
    names) and kept for inspection. A loadable version without this
    pipeline's push_metadata.json is reported and left in place.
    """
    model_dir = os.path.join(flags.serving_base, flags.model_name)
    if not os.path.isdir(model_dir) or not _may_have_incomplete_versions(model_dir):
        return []  # nothing to check; and TensorFlow (imported below) is not needed yet
    from serving import model_dir as serving_dir

    notes = []
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for version in serving_dir.existing_versions(model_dir):
        reason = serving_dir.incomplete_reason(model_dir, version)
        if reason is None:
            continue
        source = os.path.join(model_dir, str(version))
        if not reason.startswith(_UNLOADABLE):
            notes.append(f"serving version {source} was not pushed by this pipeline ({reason}); "
                         "left in place, TF Serving may serve it")
            continue
        target = os.path.join(model_dir, f"{REJECTED_PREFIX}{version}-{stamp}")
        os.rename(source, target)
        notes.append(f"serving version {source} is incomplete ({reason}): moved aside to "
                     f"{target} so TF Serving never loads it")
    return notes


def clean_up_at_start(flags: argparse.Namespace, run_id: str) -> List[str]:
    """Runs under the lock, before curation; prints and returns what it did."""
    notes = fail_abandoned_executions(flags, run_id) + move_aside_broken_versions(flags)
    for note in notes:
        _say(f"Clean-up: {note}")
    return notes


def new_run_id() -> str:
    """A pipeline run id as LocalDagRunner makes them (ISO time), chosen here
    so the summary can read exactly this run back from ML Metadata."""
    return datetime.datetime.now().isoformat()


def _runner(run_id: str):
    from tfx import v1 as tfx
    from tfx.dsl.compiler import constants
    from tfx.orchestration.portable import runtime_parameter_utils

    class OwnRunIdLocalDagRunner(tfx.orchestration.LocalDagRunner):
        """LocalDagRunner running under a run id the caller knows."""

        def run_with_ir(self, pipeline, run_options=None, **kwargs):
            runtime_parameter_utils.substitute_runtime_parameter(
                pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
            return super().run_with_ir(pipeline, run_options=run_options, **kwargs)

    return OwnRunIdLocalDagRunner()


def run_pipeline(flags: argparse.Namespace, run_id: Optional[str] = None,
                 cleanup: Optional[List[str]] = None, curation=None) -> int:
    """Runs the TFX pipeline and prints the summary of this run; returns the exit code."""
    from tfx import v1 as tfx

    from components.data_validation.component import DataAnomaliesError
    from components.data_validation.drift import history_root_for as drift_history_root_for
    from components.spark_curation.job import CURATED_DIR
    from pipeline.console import report_components
    from pipeline.pipeline import create_pipeline
    from pipeline.report import write_report
    from pipeline.run_summary import collect_run_summary, format_run_summary
    from pipeline.runner_settings import pipeline_config_from_flags

    run_id = run_id or new_run_id()
    config = pipeline_config_from_flags(
        flags,
        pipeline_root=flags.pipeline_root,
        curated_root=os.path.join(flags.data_dir, CURATED_DIR),
        schema_path=SCHEMA_PATH,
        serving_base=flags.serving_base,
        drift_history_root=drift_history_root_for(flags.data_dir),
    )
    connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(flags.pipeline_root, METADATA_FILE)
    )
    exit_code = EXIT_OK
    try:
        with report_components(_active_console()):
            _runner(run_id).run(create_pipeline(
                config, connection_config,
                transform_statistics=getattr(flags, "transform_statistics", False)))
    except DataAnomaliesError as error:
        _complain(f"Pipeline stopped: {error}")
        exit_code = EXIT_DATA_REJECTED
    except Exception as error:  # reported with the summary, then re-signalled by the exit code
        _complain(f"Pipeline failed: {type(error).__name__}: {error}")
        if flags.verbose:
            traceback.print_exc()
        elif _console is not None:  # quiet: the traceback goes to the log, one line to the console
            traceback.print_exc()
        exit_code = EXIT_FAILED
    summary = collect_run_summary(connection_config, config.pipeline_name, run_id=run_id)
    if summary is None:
        _say(f"\nRun {run_id}: no component ran.")
        _track_run(flags, None, None, exit_code, curation, run_id)
        return exit_code
    summary.cleanup = list(cleanup or [])
    _say()
    # The step lines above gave each component's status and seconds (so does the report).
    text = format_run_summary(summary, components=False)
    _say(text)
    report = write_report(summary, os.path.join(flags.pipeline_root, REPORTS_DIR))
    _say(f"\nReport: {report}")
    _track_run(flags, summary, report, exit_code, curation, run_id)
    _LAST_SUMMARY[:] = [*text.splitlines(), "", f"Report: {report}"]
    return exit_code


def _up_to_date_key(flags: argparse.Namespace, flag_values: dict) -> str:
    """`pipeline.up_to_date.run_key` of this run's inputs and the state on disk now."""
    from components.spark_curation.spans import CURATED_DIR, MANIFEST_FILE
    from pipeline import up_to_date

    return up_to_date.run_key(
        flag_values, REPO_ROOT, [raw.pattern for raw in flags.raw_inputs],
        os.path.join(flags.data_dir, CURATED_DIR),
        os.path.join(flags.serving_base, flags.model_name), MANIFEST_FILE)


def _run(flags: argparse.Namespace, run_id: str) -> int:
    from pipeline import up_to_date

    cleanup = clean_up_at_start(flags, run_id)
    # An unchanged re-run would only hit caches: say so without importing TFX.
    flag_values = None if flags.no_cache or cleanup else up_to_date.flag_values(flags)
    if flag_values is not None and not flags.force:
        previous = up_to_date.previous_run(flags.pipeline_root, _up_to_date_key(flags, flag_values))
        if previous is not None:
            _say(f"Up to date: raw data, code, schema, flags, curated spans and serving versions "
                 f"are unchanged since run {previous['run_id']} (finished {previous['finished_at']}); "
                 "nothing ran (--no-cache runs everything again). That run's summary:")
            for line in previous["summary"]:
                _say(line)
            return int(previous["exit_code"])
    up_to_date.forget(flags.pipeline_root)
    _LAST_SUMMARY.clear()
    exit_code = _run_steps(flags, run_id, cleanup)
    if flag_values is not None and exit_code == EXIT_OK and _LAST_SUMMARY:
        up_to_date.record_run(
            flags.pipeline_root, _up_to_date_key(flags, flag_values), run_id, exit_code,
            list(_LAST_SUMMARY),
            datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    return exit_code


def _import_pipeline_modules() -> None:
    """What `run_pipeline` and the components import (TensorFlow, TFX, MLflow): ~5-8 s
    of one core, done while the curation's JVM runs in its own process."""
    from tfx import v1 as tfx  # noqa: F401

    import pipeline.pipeline  # noqa: F401  (every component's module)
    import pipeline.run_summary  # noqa: F401
    from components.experiment_tracking.tracking import import_mlflow

    import_mlflow()


def _run_steps(flags: argparse.Namespace, run_id: str, cleanup: List[str]) -> int:
    """Curation, then the pipeline; the exit code."""
    from components.spark_curation.contract import CurationError

    # TensorFlow/TFX are imported here while the curation runs in a child
    # process. (In a background thread of this process, beside pyspark's,
    # that import once hung: every thread waiting on a lock.)
    try:
        curation = curate(flags, meanwhile=_import_pipeline_modules)
    except CurationError as error:
        _complain(f"Curation failed: {error}")
        _track_run(flags, None, None, EXIT_DATA_REJECTED, None, run_id)
        return EXIT_DATA_REJECTED
    return run_pipeline(flags, run_id, cleanup, curation=curation)


def _track_run(flags: argparse.Namespace, summary, report: Optional[str], exit_code: int,
               curation, run_id: str) -> None:
    """Durations, row counts, anomalies and the report into this run's MLflow run
    (components/experiment_tracking/runner.py); one line saying where."""
    from components.experiment_tracking.runner import log_pipeline_run
    from pipeline.runner_settings import mlflow_uri_flag

    logged = log_pipeline_run(mlflow_uri_flag(getattr(flags, "mlflow_tracking_uri", None)),
                              summary, report, exit_code, curation,
                              pipeline_name=flags.pipeline_name, pipeline_run_id=run_id)
    # The summary's own MLflow line names the pusher's run; say more only when
    # the runner had to start a run of its own or could not log.
    if logged is not None and (logged.error or logged.created):
        (_complain if logged.error else _say)(logged.describe())


def _run_quietly(flags: argparse.Namespace, run_id: str) -> int:
    """`_run` with library output in the run's log file; the runner's lines on the console."""
    global _console
    from pipeline.console import quiet_output

    log_path = log_path_for(flags, run_id)
    print(f"Log: {log_path} (TensorFlow, Beam, Spark and Keras output; --verbose prints it here)",
          flush=True)
    with quiet_output(log_path) as console:
        _console = console
        try:
            return _run(flags, run_id)
        except BaseException as error:
            # The traceback stays in the log; main prints the one-line error.
            if not isinstance(error, (KeyboardInterrupt, SystemExit)):
                traceback.print_exc()
                if getattr(error, "child_traceback", None):  # a failure in the curation process
                    print(f"In the curation process:\n{error.child_traceback}", file=sys.stderr)
            raise
        finally:
            _console = None


def main(argv: Optional[List[str]] = None) -> int:
    try:
        flags = parse_flags(argv)
    except SystemExit as exit_:  # argparse: usage errors exit 2, --help 0
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    run_id = new_run_id()
    record = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
              "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "argv": list(sys.argv[1:] if argv is None else argv)}
    try:
        with run_lock(_lock_dirs(flags), record):
            print(f"Run {run_id} (pid {record['pid']})", flush=True)
            if flags.verbose:
                return _run(flags, run_id)
            return _run_quietly(flags, run_id)
    except RunLockedError as error:
        print(f"Not started: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # anything not handled above: one line unless --verbose
        print(f"Failed: {type(error).__name__}: {error}", file=sys.stderr)
        if flags.verbose:
            traceback.print_exc()
        else:
            print("(run again with --verbose for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
