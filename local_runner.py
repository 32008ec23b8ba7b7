"""Runs the whole path locally: raw CSV -> Spark curation -> TFX pipeline.

Usage (defaults run the bundled Seattle data into ./runs/):
  python local_runner.py [--raw-data 'my/*.csv' --station my_station] ...

Spark curation only writes a new span when the raw data changed; the TFX
pipeline runs with LocalDagRunner, Beam's DirectRunner and SQLite ML Metadata
under the pipeline root, with caching on, then a summary is printed.
Exit codes: 0 ran (blessed or not), 1 data rejected (curation error or
anomalies), 2 any other pipeline failure.
"""
import argparse
import os
import sys
from typing import List, Optional

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RUNS_DIR = os.path.join(REPO_ROOT, "runs")
SCHEMA_PATH = os.path.join(REPO_ROOT, "schema", "schema.pbtxt")
METADATA_FILE = "metadata.sqlite"
REPORTS_DIR = "reports"


def parse_flags(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from pipeline.runner_settings import add_shared_flags

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_argument_group("data")
    group.add_argument("--raw-data", action="append", default=None,
                       help="raw weather CSV path or glob (repeatable); default: bundled Seattle data")
    group.add_argument("--station", default=None,
                       help="station id for CSVs without a station column (default for the bundled data: seattle)")
    group.add_argument("--spark-master", default="local[*]")
    group = parser.add_argument_group("locations")
    group.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR,
                       help="default parent of data/, pipeline/ and serving/")
    group.add_argument("--data-dir", default=None, help="curated data output (default <runs-dir>/data)")
    group.add_argument("--pipeline-root", default=None, help="default <runs-dir>/pipeline")
    group.add_argument("--serving-base", default=None, help="default <runs-dir>/serving")
    add_shared_flags(parser, default_beam_workers=0)
    flags = parser.parse_args(argv)
    runs_dir = os.path.abspath(flags.runs_dir)
    flags.data_dir = os.path.abspath(flags.data_dir or os.path.join(runs_dir, "data"))
    flags.pipeline_root = os.path.abspath(flags.pipeline_root or os.path.join(runs_dir, "pipeline"))
    flags.serving_base = os.path.abspath(flags.serving_base or os.path.join(runs_dir, "serving"))
    if flags.raw_data is None:
        from vega_datasets import local_data

        flags.raw_data = [local_data.seattle_weather.filepath]
        flags.station = flags.station or "seattle"
    return flags


def curate(flags: argparse.Namespace):
    """Runs Spark curation unless these exact raw files are curated already."""
    from components.spark_curation.job import run_curation

    result = run_curation(
        flags.raw_data, flags.data_dir, station=flags.station, master=flags.spark_master
    )
    if result.skipped:
        print(f"Curation: raw data unchanged, already curated as span {result.span} ({result.span_dir})")
    else:
        reasons = ", ".join(f"{k}: {v}" for k, v in result.quarantine_reasons.items()) or "none"
        print(
            f"Curation: {result.rows_in} rows in, {result.rows_written} written to span "
            f"{result.span} ({result.span_dir}); {result.rows_quarantined} quarantined ({reasons})"
        )
    return result


def run_pipeline(flags: argparse.Namespace) -> int:
    """Runs the TFX pipeline and prints its summary; returns the exit code."""
    from tfx import v1 as tfx

    from components.data_validation.component import DataAnomaliesError
    from components.spark_curation.job import CURATED_DIR
    from pipeline.pipeline import create_pipeline
    from pipeline.report import write_report
    from pipeline.run_summary import collect_run_summary, format_run_summary
    from pipeline.runner_settings import pipeline_config_from_flags

    config = pipeline_config_from_flags(
        flags,
        pipeline_root=flags.pipeline_root,
        curated_root=os.path.join(flags.data_dir, CURATED_DIR),
        schema_path=SCHEMA_PATH,
        serving_base=flags.serving_base,
    )
    connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(flags.pipeline_root, METADATA_FILE)
    )
    exit_code = 0
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config, connection_config))
    except DataAnomaliesError as error:
        print(f"Pipeline stopped: {error}", file=sys.stderr)
        exit_code = 1
    except Exception as error:  # reported with the summary, then re-signalled by the exit code
        print(f"Pipeline failed: {type(error).__name__}: {error}", file=sys.stderr)
        exit_code = 2
    summary = collect_run_summary(connection_config, config.pipeline_name)
    if summary is not None:
        print()
        print(format_run_summary(summary))
        report = write_report(summary, os.path.join(flags.pipeline_root, REPORTS_DIR))
        print(f"\nReport: {report}")
    return exit_code


def main(argv: Optional[List[str]] = None) -> int:
    flags = parse_flags(argv)
    from components.spark_curation.job import CurationError

    try:
        curate(flags)
    except CurationError as error:
        print(f"Curation failed: {error}", file=sys.stderr)
        return 1
    return run_pipeline(flags)


if __name__ == "__main__":
    sys.exit(main())
