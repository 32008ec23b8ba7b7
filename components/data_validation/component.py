"""AnomalyGate: stops the pipeline when data validation found anomalies.

ExampleValidator only records anomalies; nothing downstream reads them, so a
pipeline would happily train and push a model from broken data. The gate runs
between validation and Transform (Transform declares it as an upstream node)
and fails the run with a table of feature, anomaly and description. With
`drift_anomalies` (the DriftValidator's output, see drift.py) a span that
drifted from the previous one stops the run the same way.

With `examples` (the validated ExampleGen output) and `schema`, an anomaly
about values outside a feature's domain also names the offending rows by
station and date (`anomalies.trace_rows`), so a single bad day among many
stations can be found and fixed.
"""
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.data_validation.anomalies import format_anomaly_table, load_anomaly_rows, trace_rows


class DataAnomaliesError(RuntimeError):
    """Raised when the validated data has anomalies against the schema."""


@tfx.dsl.components.component
def AnomalyGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    drift_anomalies: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies] = None,
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples] = None,
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema] = None,
    mlflow_tracking_uri: tfx.dsl.components.Parameter[str] = "",
    pipeline_name: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """Fails if any split of `anomalies` (or of `drift_anomalies`) has an anomaly.

    `examples` and `schema` (both, or neither) trace out-of-domain anomalies
    to the examples' station and date. With `mlflow_tracking_uri` a rejection
    is also an MLflow run (components/experiment_tracking/rejections.py).
    """
    rows = []
    sources = []
    for artifact in (anomalies, drift_anomalies):
        if artifact is None:
            continue
        splits = artifact_utils.decode_split_names(artifact.split_names)
        found = load_anomaly_rows(artifact.uri, splits)
        if found:
            sources.append(artifact.uri)
        rows.extend(found)
    if rows and examples is not None and schema is not None:
        rows = trace_rows(rows, examples.uri, load_schema(schema.uri))
    if rows:
        # Kubeflow: this run never reaches the pusher's MLflow run (locally "" here:
        # the runner logs rejected runs itself).
        from components.experiment_tracking.rejections import log_rejection

        log_rejection(mlflow_tracking_uri, pipeline_name, "AnomalyGate",
                      f"{len(rows)} data anomalies", {"anomalies": len(rows)})
        raise DataAnomaliesError(
            f"Data validation found {len(rows)} anomalies in {', '.join(sources)}; "
            "stopping before Transform/Trainer/Pusher. Fix the data or review "
            "schema/schema.pbtxt.\n" + format_anomaly_table(rows)
        )


def load_schema(schema_uri: str):
    """The Schema proto in a Schema artifact's directory (as drift.py reads it)."""
    return io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_uri))
