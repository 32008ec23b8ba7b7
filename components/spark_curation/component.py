"""SparkCuration: the Spark curation job as a pipeline task (Kubeflow).

On Kubeflow the raw CSVs are curated inside the pipeline, in the pipeline's
image, by Spark in local mode, or with `spark_master='k8s://...'` by
executor pods the task's driver starts (client mode; `spark_conf` carries
`cluster.kubernetes_spark_conf`'s entries as JSON); ExampleGen runs after this task (an
upstream-node edge, see `pipeline.pipeline.create_pipeline`'s
`data_preparation`) and reads the curated spans by path, so the task has no
output artifact. Raw data that was curated before is recognised by its sha256
and skipped, which makes the task cheap to repeat on a schedule.
"""
import hashlib
import os
from typing import List, Optional

from absl import logging
from tfx import v1 as tfx

from components.spark_curation.cluster import parse_conf_json
from components.spark_curation.inputs import DEFAULT_MAX_QUARANTINE_SHARE, pair_stations
from components.spark_curation.job import (
    MANIFEST_FILE, CurationError, CurationResult, latest_span, run_curation, span_dir)


def split_raw_data(raw_data: str) -> List[str]:
    """'a.csv, raw/*.csv' -> ['a.csv', 'raw/*.csv']: paths/globs, comma-separated."""
    return [path.strip() for path in raw_data.split(",") if path.strip()]


def curate(
    raw_data: str, output_dir: str, station: Optional[str], spark_master: str,
    spark_conf: str = "", max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE,
    station_from_filename: bool = False,
) -> CurationResult:
    """Runs the curation job for the component's string parameters.

    Args:
      raw_data: raw CSV path, glob, or a comma-separated list of them.
      output_dir: the data root that holds `curated/` and `quarantine/`.
      station: station id for CSVs without a station column; '' means none
        (a pipeline parameter cannot be None); a comma-separated list pairs
        one station with each comma-separated `raw_data` entry, in order
        (`inputs.pair_stations`; another count is a CurationError).
      spark_master: Spark master URL, e.g. 'local[*]', 'spark://host:7077' or
        'k8s://https://kubernetes.default.svc'.
      spark_conf: JSON object of Spark conf entries for the session ('' = none),
        e.g. `cluster.spark_conf_json(settings)`; placeholders such as
        `${hostname-ip}` are resolved in the task's pod.
      max_quarantine_share: the job's ceiling on the share of quarantined rows
        (0-1; 1 = none), as local_runner.py's --max-quarantine-share.
      station_from_filename: each file's station is its file name (as
        --station-from-filename); excludes `station`.

    Returns:
      The job's CurationResult.

    Raises:
      CurationError: the job's own message naming the file and the problem
        (no matching file, missing columns, more rows quarantined than
        `max_quarantine_share`, a station mapping that does not pair, ...).
    """
    paths, stations = split_raw_data(raw_data), split_raw_data(station or "")
    common = dict(master=spark_master, spark_conf=parse_conf_json(spark_conf),
                  max_quarantine_share=max_quarantine_share)
    if len(stations) > 1 or station_from_filename:  # one per raw-data entry / file
        result = run_curation(pair_stations(paths, stations, bool(station_from_filename)),
                              output_dir, **common)
    else:
        result = run_curation(paths, output_dir, station=station or None, **common)
    logging.info("Spark curation: %s", result.summary())
    return result


@tfx.dsl.components.component
def SparkCuration(
    raw_data: tfx.dsl.components.Parameter[str],
    output_dir: tfx.dsl.components.Parameter[str],
    station: tfx.dsl.components.Parameter[str] = "",
    spark_master: tfx.dsl.components.Parameter[str] = "local[*]",
    spark_conf: tfx.dsl.components.Parameter[str] = "",
    max_quarantine_share: tfx.dsl.components.Parameter[float] = DEFAULT_MAX_QUARANTINE_SHARE,
    station_from_filename: tfx.dsl.components.Parameter[int] = 0,
    mlflow_tracking_uri: tfx.dsl.components.Parameter[str] = "",
    pipeline_name: tfx.dsl.components.Parameter[str] = "",
) -> tfx.dsl.components.OutputDict(data_fingerprint=str):
    """Curates `raw_data` into a new span under `<output_dir>/curated/`.

    Returns the fingerprint of the data ExampleGen will read next (see
    `data_fingerprint`); on Kubeflow it is a parameter of ExampleGen's task,
    so that task's cache key changes exactly when the curated data does.
    Rejected data (a CurationError) is also an MLflow run when
    `mlflow_tracking_uri` is set (components/experiment_tracking/rejections.py).
    """
    try:
        curate(raw_data, output_dir, station, spark_master, spark_conf,
               max_quarantine_share=max_quarantine_share,
               station_from_filename=bool(station_from_filename))
    except CurationError as error:
        from components.experiment_tracking.rejections import log_rejection

        log_rejection(mlflow_tracking_uri, pipeline_name, "SparkCuration", str(error))
        raise
    return {"data_fingerprint": data_fingerprint(output_dir)}


def data_fingerprint(output_dir: str) -> str:
    """'span-<N>:<sha256 of its manifest>' for the latest curated span ('' if none).

    The manifest names every input file's sha256 and every count, so a span
    written again from other data gets another fingerprint.
    """
    span = latest_span(output_dir)
    if span is None:
        return ""
    with open(os.path.join(span_dir(output_dir, span), MANIFEST_FILE), "rb") as f:
        return f"span-{span}:{hashlib.sha256(f.read()).hexdigest()}"
