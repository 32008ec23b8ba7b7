"""What the local runner adds to MLflow after a pipeline run.

The pusher's run (components/experiment_tracking/pusher.py) holds what the
pipeline knows; the runner knows the rest: each component's duration and
status, row counts (curation and the statistics), anomalies found, the exit
code and the HTML report. They go into the pusher's run of this pipeline run
when there is one (its id is the PushedModel's `mlflow_run_id`), and
otherwise into a run of their own, so a run that never reached the pusher
is tracked too: FAILED when the data was rejected or the pipeline failed,
FINISHED (tag outcome=cached) when the pusher's earlier result was reused.
"""
import dataclasses
import os
from typing import Optional

from absl import logging

from components.experiment_tracking import tracking

EXIT_DATA_REJECTED = 1  # local_runner.py's exit codes
EXIT_FAILED = 3
REPORT_ARTIFACTS = "report"


@dataclasses.dataclass
class RunnerLogging:
    """Where the runner logged: the run id, whether it made the run, any error."""

    run_id: Optional[str] = None
    created: bool = False
    error: str = ""

    def describe(self) -> str:
        if self.error:
            return f"MLflow: FAILED to log the runner's metrics and report: {self.error}"
        if self.created:
            return f"MLflow: run {self.run_id} (this run did not reach the pusher's MLflow run)"
        return f"MLflow: runner metrics and report added to run {self.run_id}"


def log_pipeline_run(tracking_uri: str, summary, report_path: Optional[str], exit_code: int,
                     curation=None, pipeline_name: str = "",
                     pipeline_run_id: str = "") -> Optional[RunnerLogging]:
    """Logs durations, row counts, anomalies and the report; None when tracking is off.

    Args:
      tracking_uri: the MLflow URI the pusher used.
      summary: pipeline.run_summary.RunSummary of this run (None: no component ran).
      report_path: the HTML report (pipeline/report.py), logged as an artifact.
      exit_code: the runner's exit code (1 data rejected, 3 failed).
      curation: components.spark_curation.job's result (row counts), if any.
      pipeline_name, pipeline_run_id: for a run without a summary (curation
        rejected the data before any component ran).
    """
    if not tracking.enabled(tracking_uri):
        return None
    result = RunnerLogging()
    try:
        pusher_run = _pusher_run_id(summary)
        if pusher_run:
            run = tracking.Run(tracking_uri, tracking.client(tracking_uri), pusher_run, "")
        else:
            outcome, status = _outcome(summary, exit_code)
            pipeline_name = getattr(summary, "pipeline_name", "") or pipeline_name or "default"
            run_id = getattr(summary, "run_id", "") or pipeline_run_id or ""
            run = tracking.start_run(tracking_uri, pipeline_name, f"{pipeline_name} {run_id}".strip(),
                                     tags={tracking.TAG_PIPELINE_RUN_ID: run_id,
                                           tracking.TAG_PIPELINE_NAME: pipeline_name,
                                           tracking.TAG_SOURCE: "runner",
                                           tracking.TAG_OUTCOME: outcome,
                                           tracking.TAG_PUSHED: "false",
                                           tracking.TAG_REASON: _reason(summary, exit_code)})
            result.created = True
        result.run_id = run.run_id
        run.log_metrics(runner_metrics(summary, exit_code, curation))
        run.set_tags({f"component.{c.node_id}": c.status for c in getattr(summary, "components", [])})
        if report_path and os.path.exists(report_path):
            run.log_file(report_path, REPORT_ARTIFACTS)
        if result.created:
            run.end(status)
    except Exception as error:  # reported by the runner, never fails the run
        result.error = f"{tracking.redact(tracking_uri)}: {type(error).__name__}: {error}"
        logging.error("MLflow logging after the run failed: %s", result.error)
    return result


def runner_metrics(summary, exit_code: int, curation=None) -> dict:
    metrics = {"exit_code": exit_code}
    for component in getattr(summary, "components", []) or []:
        metrics[tracking.metric_name("duration_seconds", component.node_id)] = component.seconds
    if curation is not None:
        for name in ("rows_in", "rows_written", "rows_quarantined"):
            value = getattr(curation, name, None)
            if value is not None:
                metrics[tracking.metric_name("rows", "curation_" + name[len("rows_"):])] = value
    if summary is not None:
        anomalies = getattr(summary, "anomalies", None)
        if anomalies is not None:
            metrics["anomalies"] = len(anomalies)
        for split, count in statistics_rows(getattr(summary, "statistics_uri", None),
                                            getattr(summary, "statistics_splits", [])).items():
            metrics[tracking.metric_name("rows", split)] = count
    return metrics


def statistics_rows(statistics_uri: Optional[str], splits) -> dict:
    """{split: examples} from StatisticsGen's FeatureStats.pb files."""
    if not statistics_uri:
        return {}
    from tensorflow_metadata.proto.v0 import statistics_pb2
    from tfx.dsl.io import fileio

    rows = {}
    for split in splits or []:
        path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
        if not fileio.exists(path):
            continue
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        with fileio.open(path, "rb") as f:
            stats.ParseFromString(f.read())
        rows[split] = sum(d.num_examples for d in stats.datasets)
    return rows


def _pusher_run_id(summary) -> Optional[str]:
    """The pusher's MLflow run of this pipeline run (not a cached, earlier one)."""
    if summary is None or not getattr(summary, "mlflow_run_id", ""):
        return None
    if summary.status_of("Pusher") == "CACHED":
        return None
    return summary.mlflow_run_id


def _outcome(summary, exit_code: int):
    if exit_code == EXIT_DATA_REJECTED:
        return "data_rejected", "FAILED"
    if exit_code != 0:
        return "failed", "FAILED"
    if summary is not None and summary.status_of("Pusher") == "CACHED":
        return "cached", "FINISHED"
    return "not_pushed", "FINISHED"


def _reason(summary, exit_code: int) -> str:
    if exit_code == EXIT_DATA_REJECTED:
        return "data rejected (curation error, anomalies or drift)"
    if exit_code != 0:
        return "pipeline failed"
    if summary is not None and summary.status_of("Pusher") == "CACHED":
        return "unchanged model, the pusher's earlier result was reused (cache)"
    return getattr(summary, "push_reason", "") or "the pusher did not run"
