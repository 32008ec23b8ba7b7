"""AnomalyGate: stops the pipeline when data validation found anomalies.

ExampleValidator only records anomalies; nothing downstream reads them, so a
pipeline would happily train and push a model from broken data. The gate runs
between validation and Transform (Transform declares it as an upstream node)
and fails the run with a table of feature, anomaly and description. With
`drift_anomalies` (the DriftValidator's output, see drift.py) a span that
drifted from the previous one stops the run the same way.
"""
from tfx import v1 as tfx
from tfx.types import artifact_utils

from components.data_validation.anomalies import format_anomaly_table, load_anomaly_rows


class DataAnomaliesError(RuntimeError):
    """Raised when the validated data has anomalies against the schema."""


@tfx.dsl.components.component
def AnomalyGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    drift_anomalies: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies] = None,
) -> None:
    """Fails if any split of `anomalies` (or of `drift_anomalies`) has an anomaly."""
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
    if rows:
        raise DataAnomaliesError(
            f"Data validation found {len(rows)} anomalies in {', '.join(sources)}; "
            "stopping before Transform/Trainer/Pusher. Fix the data or review "
            "schema/schema.pbtxt.\n" + format_anomaly_table(rows)
        )
