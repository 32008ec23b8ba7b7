"""DriftValidator: the new span's statistics against the previous span's.

TFX 1.16's ExampleValidator calls `tfdv.validate_statistics(stats, schema)`
only: it has no input for a previous span's statistics, so the drift
comparators declared in schema/schema.pbtxt (Jensen-Shannon divergence for
numeric features, L-infinity distance for the `weather` category) are never
evaluated there. This component evaluates them, the same way on both runners:

  * inputs: this run's StatisticsGen output, the curated schema, and the
    Examples StatisticsGen read, for their span: ExampleGen's driver (or,
    on the open-source KFP backend, our ExampleGen executor) records it as
    the Examples' `span` custom property, which reaches a Kubeflow task as
    artifact metadata. StatisticsGen's own `span` property is no help: it
    copies `examples.span`, the (unset, so 0) property, not the custom one;
  * the previous span's statistics come from a statistics history, a
    directory both runners can reach (`history_root`: beside the curated data,
    `<data dir>/drift_history` locally, on the data volume on Kubeflow):

        <history_root>/span-<N>/Split-<split>/FeatureStats.pb
        <history_root>/span-<N>/RECORDED.json     written last: the record is complete

    The previous span is the highest recorded span below this one, so a
    re-run of a span never compares it with itself. Every file is written
    to a temporary name and renamed into place, and a span without its
    RECORDED.json (a writer killed half-way) is never read;
  * after the comparison this span's statistics are recorded, unless they
    drifted: the history holds the spans the drift gate accepted, so a span
    after a rejected one is compared with the last accepted span, not with
    the rejected data;
  * output: ExampleAnomalies in ExampleValidator's layout holding only the
    drift findings (schema anomalies stay ExampleValidator's), which the
    AnomalyGate reads beside ExampleValidator's, so drift stops the run
    before Transform exactly like a schema anomaly.

The first span has nothing to compare with: the output is empty and its
`drift_note` custom property says so (the run summary prints it).
"""
import json
import os
import posixpath
import re
import uuid
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
EXAMPLES_KEY = "examples"
SCHEMA_KEY = "schema"
ANOMALIES_KEY = "anomalies"
HISTORY_ROOT_KEY = "history_root"
STATS_FILE = "FeatureStats.pb"
# The statistics history's directory beside the curated data (both runners).
HISTORY_DIR = "drift_history"
RECORDED_FILE = "RECORDED.json"
_SPAN_DIR = re.compile(r"^span-(\d+)$")

# Custom properties of the output artifact.
DRIFT_NOTE = "drift_note"
DRIFT_SPAN = "drift_span"
DRIFT_PREVIOUS_SPAN = "drift_previous_span"  # -1: nothing compared
DRIFT_RECORDED = "drift_recorded"  # 1: this span's statistics were added to the history
DRIFT_HISTORY = "drift_history"  # the history root read and written

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


def history_root_for(data_root: str) -> str:
    """The statistics history beside the curated data: `<data_root>/drift_history`."""
    return posixpath.join(data_root, HISTORY_DIR)


class StatisticsHistory:
    """Per-span statistics the drift gate accepted, under one directory.

    Layout: `<root>/span-<N>/Split-<split>/FeatureStats.pb` plus
    `<root>/span-<N>/RECORDED.json`, written last. Works on any file system
    TFX's fileio speaks (a local or mounted directory, gs://, s3://).
    """

    def __init__(self, root: str):
        if not root:
            raise ValueError("the statistics history needs a directory (history_root is empty)")
        self.root = root

    def span_dir(self, span: int) -> str:
        return os.path.join(self.root, f"span-{span}")

    def stats_path(self, span: int, split: str) -> str:
        return os.path.join(self.span_dir(span), f"Split-{split}", STATS_FILE)

    def spans(self) -> List[int]:
        """The completely recorded spans, ascending (a span without RECORDED.json is left out)."""
        if not fileio.exists(self.root):
            return []
        found = []
        for name in fileio.listdir(self.root):
            match = _SPAN_DIR.match(name.rstrip("/"))
            if match and fileio.exists(os.path.join(self.root, name.rstrip("/"), RECORDED_FILE)):
                found.append(int(match.group(1)))
        return sorted(found)

    def previous(self, span: int) -> Optional[int]:
        """The highest completely recorded span below `span`, None if there is none."""
        below = [s for s in self.spans() if s < span]
        return below[-1] if below else None

    def read(self, span: int, split: str) -> Optional[statistics_pb2.DatasetFeatureStatisticsList]:
        """A recorded span's statistics of one split; None if that split was not recorded."""
        try:
            return _read_stats(self.span_dir(span), split)
        except Exception as error:  # protobuf's DecodeError names no file
            raise ValueError(
                f"The drift history's record {self.stats_path(span, split)} cannot be read "
                f"({type(error).__name__}: {error}); remove span-{span} from {self.root} (the "
                "next span is then compared with the span before it) and run again.") from error

    def record(self, span: int, splits: Dict[str, bytes], source: str) -> str:
        """Records a span's serialized statistics per split; returns the span's directory.

        Each file goes to a temporary name in its final directory and is
        renamed into place; RECORDED.json comes last, so a reader never takes
        a span whose statistics are half-written. Recording a span again
        replaces its files the same way.
        """
        try:
            for split, data in splits.items():
                _write_atomically(self.stats_path(span, split), data)
            _write_atomically(os.path.join(self.span_dir(span), RECORDED_FILE), json.dumps(
                {"span": span, "splits": sorted(splits), "source": source}, indent=1).encode())
        except Exception as error:
            raise OSError(
                f"Could not record span {span}'s statistics in the drift history "
                f"{self.root}: {type(error).__name__}: {error}. Without the record the next span "
                "would have nothing to compare with; make the directory writable (on Kubeflow: "
                "the data volume, see deploy/pipeline-data) and run again.") from error
        return self.span_dir(span)


def _write_atomically(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fileio.makedirs(directory)
    staging = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        with fileio.open(staging, "wb") as f:
            f.write(data)
        fileio.rename(staging, path, overwrite=True)
    finally:
        if fileio.exists(staging):
            fileio.remove(staging)


def examples_span(examples: types.Artifact) -> Optional[int]:
    """The span ExampleGen recorded on its Examples; None if none is recorded.

    Locally an int custom property; on Kubeflow the same custom property
    parsed back from the artifact's metadata (a number in a struct value),
    which `get_custom_property` decodes.
    """
    if examples.has_custom_property("span"):
        value = examples.get_custom_property("span")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    if "span" in examples.mlmd_artifact.properties:
        return examples.mlmd_artifact.properties["span"].int_value
    return None


class DriftValidatorSpec(ComponentSpec):
    PARAMETERS = {
        HISTORY_ROOT_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
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
        history = StatisticsHistory(exec_properties.get(HISTORY_ROOT_KEY) or "")
        output.set_string_custom_property(DRIFT_HISTORY, history.root)

        span = examples_span(artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY]))
        previous_span = None if span is None else history.previous(span)
        note = None
        if span is None:
            note = "the examples carry no span: drift not checked"
        elif previous_span is None:
            note = (f"span {span} is the first span: nothing to compare with, drift not checked "
                    f"(no earlier span in {history.root})")
        output.set_int_custom_property(DRIFT_SPAN, -1 if span is None else span)
        output.set_int_custom_property(
            DRIFT_PREVIOUS_SPAN, -1 if previous_span is None else previous_span)

        compared, drifted, current_bytes = [], [], {}
        for split in splits:
            anomalies = anomalies_pb2.Anomalies()
            current = _read_stats(statistics.uri, split)
            if current is not None:
                current_bytes[split] = current.SerializeToString()
            previous = history.read(previous_span, split) if previous_span is not None else None
            if current is not None and previous is not None:
                anomalies = drift_anomalies(current, previous, schema)
                drifted.extend(f"{split}/{feature}" for feature in sorted(anomalies.anomaly_info))
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

        recorded = span is not None and not drifted and bool(current_bytes)
        if recorded:
            history.record(span, current_bytes, statistics.uri)
        elif drifted:
            note += (f"; drifted ({', '.join(drifted)}): span {span} not added to the history, "
                     "the next span is compared with the last accepted one")
        output.set_int_custom_property(DRIFT_RECORDED, int(recorded))
        output.set_string_custom_property(DRIFT_NOTE, note)
        logging.info("Drift: %s (history %s)", note, history.root)


class DriftValidator(base_component.BaseComponent):
    """Compares this run's statistics with the previous span's (schema comparators)."""

    SPEC_CLASS = DriftValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, statistics, schema, examples, history_root: str):
        """Args:
          statistics: StatisticsGen's output channel (the new span).
          schema: the curated schema channel (declares the comparators).
          examples: the Examples StatisticsGen read (their span; on Kubeflow
            the launcher downloads them into the task, as for the AnomalyGate).
          history_root: the statistics history's directory, the same for
            every run of the pipeline and reachable from the task (local
            disk, the Kubeflow data volume, or an object-store URI).
        """
        super().__init__(spec=DriftValidatorSpec(
            statistics=statistics,
            schema=schema,
            examples=examples,
            history_root=history_root,
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
        ))
