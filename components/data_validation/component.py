"""AnomalyGate: stops the pipeline when ExampleValidator found anomalies.

ExampleValidator only records anomalies; nothing downstream reads them, so a
pipeline would happily train and push a model from broken data. The gate runs
between validation and Transform (Transform declares it as an upstream node)
and fails the run with a table of feature, anomaly and description.
"""
from tfx import v1 as tfx
from tfx.types import artifact_utils

from components.data_validation.anomalies import format_anomaly_table, load_anomaly_rows


class DataAnomaliesError(RuntimeError):
    """Raised when the validated data has anomalies against the schema."""


@tfx.dsl.components.component
def AnomalyGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> None:
    """Fails if any split of `anomalies` has an anomaly."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    rows = load_anomaly_rows(anomalies.uri, splits)
    if rows:
        raise DataAnomaliesError(
            f"ExampleValidator found {len(rows)} anomalies in {anomalies.uri}; "
            "stopping before Transform/Trainer/Pusher. Fix the data or review "
            "schema/schema.pbtxt.\n" + format_anomaly_table(rows)
        )
