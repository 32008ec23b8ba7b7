"""DriftValidator: the new span's statistics against the previous span's.

TFX 1.16's ExampleValidator calls `tfdv.validate_statistics(stats, schema)`
only: it has no input for a previous span's statistics, so the drift
comparators declared in schema/schema.pbtxt (Jensen-Shannon divergence for
numeric features, L-infinity distance for the `weather` category) are never
evaluated there. This component evaluates them:

  * inputs: this run's StatisticsGen output and the curated schema;
  * the previous span's statistics are found in ML Metadata (the newest
    StatisticsGen output computed on the highest span below this one,
    `pipeline.artifact_lookup.previous_span_statistics`);
  * output: ExampleAnomalies in ExampleValidator's layout holding only the
    drift findings (schema anomalies stay ExampleValidator's), which the
    AnomalyGate reads beside ExampleValidator's, so drift stops the run
    before Transform exactly like a schema anomaly.

The first span has nothing to compare with: the output is empty and its
`drift_note` custom property says so (the run summary prints it).
"""
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from components.data_validation.anomalies import ANOMALIES_FILE

STATISTICS_KEY = "statistics"
SCHEMA_KEY = "schema"
ANOMALIES_KEY = "anomalies"
METADATA_PATH_KEY = "metadata_path"
STATISTICS_NODE_KEY = "statistics_node_id"
STATS_FILE = "FeatureStats.pb"

# Custom properties of the output artifact.
DRIFT_NOTE = "drift_note"
DRIFT_SPAN = "drift_span"
DRIFT_PREVIOUS_SPAN = "drift_previous_span"  # -1: nothing compared

_COMPARATOR_TYPES = frozenset(
    value for name, value in anomalies_pb2.AnomalyInfo.Type.items()
    if name.startswith("COMPARATOR_"))


def drift_features(schema: schema_pb2.Schema) -> Dict[str, str]:
    """{feature: "jensen_shannon_divergence <= t" | "infinity_norm <= t"} declared."""
    result = {}
    for feature in schema.feature:
        comparator = feature.drift_comparator
        if comparator.HasField("jensen_shannon_divergence"):
            result[feature.name] = (
                f"jensen_shannon_divergence <= {comparator.jensen_shannon_divergence.threshold:g}")
        elif comparator.HasField("infinity_norm"):
            result[feature.name] = f"infinity_norm <= {comparator.infinity_norm.threshold:g}"
    return result


def drift_anomalies(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> anomalies_pb2.Anomalies:
    """TFDV's drift comparison, keeping only the comparator findings.

    Schema checks (domains, presence, types) are ExampleValidator's job; they
    are dropped here so that each anomaly is reported once.
    """
    import tensorflow_data_validation as tfdv

    return _comparator_findings(
        tfdv.validate_statistics(current, schema, previous_statistics=previous))


def skew_anomalies(
    training: statistics_pb2.DatasetFeatureStatisticsList,
    serving: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> anomalies_pb2.Anomalies:
    """Training/serving skew with the schema's skew comparators (same thresholds as drift).

    For the prediction service: statistics of logged requests against the
    training statistics of the served model.
    """
    import tensorflow_data_validation as tfdv

    return _comparator_findings(
        tfdv.validate_statistics(training, schema, serving_statistics=serving))


def _comparator_findings(anomalies: anomalies_pb2.Anomalies) -> anomalies_pb2.Anomalies:
    """Only the drift/skew comparator findings of a TFDV validation."""
    for feature in list(anomalies.anomaly_info):
        info = anomalies.anomaly_info[feature]
        drift_reasons = [r for r in info.reason if r.type in _COMPARATOR_TYPES]
        if not drift_reasons:
            del anomalies.anomaly_info[feature]
            continue
        del info.reason[:]
        info.reason.extend(drift_reasons)
        info.description = " ".join(r.description for r in drift_reasons)
        info.short_description = drift_reasons[0].short_description
    anomalies.ClearField("dataset_anomaly_info")
    anomalies.ClearField("data_missing")
    return anomalies


def drift_measurements(anomalies: anomalies_pb2.Anomalies) -> Dict[str, float]:
    """{feature: measured distance} of every comparison TFDV made (drifted or not)."""
    result = {}
    for info in anomalies.drift_skew_info:
        for measurement in info.drift_measurements:
            result[".".join(info.path.step)] = measurement.value
    return result


def _read_stats(uri: str, split: str) -> Optional[statistics_pb2.DatasetFeatureStatisticsList]:
    path = os.path.join(uri, f"Split-{split}", STATS_FILE)
    if not fileio.exists(path):
        return None
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with fileio.open(path, "rb") as f:
        stats.ParseFromString(f.read())
    return stats


def find_previous_statistics(metadata_path: str, pipeline_name: str, statistics_id: int,
                             statistics_node_id: str):
    """(current span, previous span, previous statistics uri, note); uri None if nothing to compare."""
    from pipeline import artifact_lookup

    if not metadata_path or not os.path.exists(metadata_path):
        return None, None, None, (
            f"no ML Metadata store at {metadata_path or '(none given)'}: drift not checked")
    store = artifact_lookup.open_store(os.path.dirname(metadata_path))
    span, previous_span, previous = artifact_lookup.previous_span_statistics(
        store, pipeline_name, statistics_id, statistics_node_id)
    if span is None:
        return None, None, None, (
            "the statistics' span is not recorded in ML Metadata: drift not checked")
    if previous is None:
        return span, None, None, (
            f"span {span} is the first span: nothing to compare with, drift not checked")
    return span, previous_span, previous.uri, None


class DriftValidatorSpec(ComponentSpec):
    PARAMETERS = {
        METADATA_PATH_KEY: ExecutionParameter(type=str),
        STATISTICS_NODE_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {
        ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }


class Executor(base_executor.BaseExecutor):
    """Writes the drift anomalies of each split (empty when nothing drifted)."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        schema_artifact = artifact_utils.get_single_instance(input_dict[SCHEMA_KEY])
        output = artifact_utils.get_single_instance(output_dict[ANOMALIES_KEY])
        splits = artifact_utils.decode_split_names(statistics.split_names)
        output.split_names = artifact_utils.encode_split_names(splits)
        schema = io_utils.SchemaReader().read(
            io_utils.get_only_uri_in_dir(schema_artifact.uri))
        pipeline_name = self._context.pipeline_info.id if self._context else ""

        span, previous_span, previous_uri, note = find_previous_statistics(
            exec_properties.get(METADATA_PATH_KEY) or "", pipeline_name, statistics.id,
            exec_properties[STATISTICS_NODE_KEY])
        output.set_int_custom_property(DRIFT_SPAN, -1 if span is None else span)
        output.set_int_custom_property(
            DRIFT_PREVIOUS_SPAN, -1 if previous_span is None else previous_span)
        compared = []
        for split in splits:
            anomalies = anomalies_pb2.Anomalies()
            current = _read_stats(statistics.uri, split)
            previous = _read_stats(previous_uri, split) if previous_uri else None
            if current is not None and previous is not None:
                anomalies = drift_anomalies(current, previous, schema)
                distances = ", ".join(
                    f"{k} {v:.3f}" for k, v in sorted(drift_measurements(anomalies).items()))
                compared.append(f"{split}: {distances or 'no comparator declared'}")
            split_dir = os.path.join(output.uri, f"Split-{split}")
            fileio.makedirs(split_dir)
            io_utils.write_bytes_file(
                os.path.join(split_dir, ANOMALIES_FILE), anomalies.SerializeToString())
        if note is None:
            note = (f"span {span} compared with span {previous_span}"
                    + (f" ({'; '.join(compared)})" if compared else
                       ": no split in common, drift not checked"))
        output.set_string_custom_property(DRIFT_NOTE, note)
        logging.info("Drift: %s", note)


class DriftValidator(base_component.BaseComponent):
    """Compares this run's statistics with the previous span's (schema comparators)."""

    SPEC_CLASS = DriftValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, statistics, schema, metadata_path: str,
                 statistics_node_id: str = "StatisticsGen"):
        """Args:
          statistics: StatisticsGen's output channel (the new span).
          schema: the curated schema channel (declares the comparators).
          metadata_path: the SQLite ML Metadata file holding earlier runs.
          statistics_node_id: node id of the StatisticsGen whose earlier
            outputs are the previous spans' statistics.
        """
        super().__init__(spec=DriftValidatorSpec(
            statistics=statistics,
            schema=schema,
            metadata_path=metadata_path,
            statistics_node_id=statistics_node_id,
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
        ))
