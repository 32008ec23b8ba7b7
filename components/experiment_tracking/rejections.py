"""A task that rejects the data logs a FAILED MLflow run itself (Kubeflow).

Locally the runner logs a run for rejected data (components/experiment_tracking/
runner.py). On Kubeflow the runner only submits, and a run stopped by the
Spark curation task or the AnomalyGate never reaches the pusher, which starts
the MLflow run of a run that trains. So those two tasks, given the tracking
URI (the pipeline's `mlflow_tracking_uri` run parameter), log the rejection:
tags `outcome=data_rejected`, `run_source=<task>`, `reason=<first line of the
error>`, and the counts they know as metrics. Logging never hides the
rejection: an MLflow failure is logged as an error and the task still fails
with its own message.
"""
from typing import Mapping, Optional

from absl import logging

from components.experiment_tracking import tracking


def log_rejection(tracking_uri: str, pipeline_name: str, stage: str, reason: str,
                  metrics: Optional[Mapping[str, float]] = None) -> Optional[str]:
    """Logs a FAILED run for data `stage` rejected; its MLflow run id, or None (off/failed)."""
    if not tracking.enabled(tracking_uri):
        return None
    name = pipeline_name or "default"
    try:
        run = tracking.start_run(tracking_uri, name, f"{name} rejected by {stage}", tags={
            tracking.TAG_PIPELINE_NAME: name,
            tracking.TAG_SOURCE: stage,
            tracking.TAG_OUTCOME: "data_rejected",
            tracking.TAG_PUSHED: "false",
            tracking.TAG_REASON: (reason or "").strip().splitlines()[0] if reason else "",
        })
        run.log_metrics(dict(metrics or {}))
        run.end("FAILED")
        return run.run_id
    except Exception as error:  # never replaces the rejection's own error
        logging.error("MLflow: could not log the rejection by %s at %s: %s: %s", stage,
                      tracking.redact(tracking_uri), type(error).__name__, error)
        return None
