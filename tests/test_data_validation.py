"""Anomalies are read into rows, printed readably, and stop the gate."""
import os

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components.data_validation import anomalies as anomaly_report


def _write_anomalies(root, split, anomalies):
    split_dir = os.path.join(root, f"Split-{split}")
    os.makedirs(split_dir)
    with open(os.path.join(split_dir, anomaly_report.ANOMALIES_FILE), "wb") as f:
        f.write(anomalies.SerializeToString())


def _wind_out_of_range():
    result = anomalies_pb2.Anomalies()
    info = result.anomaly_info["wind"]
    info.description = "Unexpectedly large value: 300."
    info.short_description = "Out-of-range values"
    info.reason.add(type=anomalies_pb2.AnomalyInfo.FLOAT_TYPE_BIG_FLOAT)
    return result


def test_rows_name_split_feature_and_anomaly(tmp_path):
    _write_anomalies(tmp_path, "train", _wind_out_of_range())
    _write_anomalies(tmp_path, "eval", anomalies_pb2.Anomalies())

    rows = anomaly_report.load_anomaly_rows(str(tmp_path), ["train", "eval"])

    assert rows == [
        anomaly_report.AnomalyRow(
            "train", "wind", "FLOAT_TYPE_BIG_FLOAT", "Unexpectedly large value: 300."
        )
    ]
    table = anomaly_report.format_anomaly_table(rows)
    assert table.splitlines()[0].split() == ["split", "feature", "anomaly", "description"]
    assert "wind" in table.splitlines()[2] and "Unexpectedly large value: 300." in table


def test_no_anomalies_gives_no_rows(tmp_path):
    _write_anomalies(tmp_path, "train", anomalies_pb2.Anomalies())
    assert anomaly_report.load_anomaly_rows(str(tmp_path), ["train"]) == []


def test_gate_raises_with_table(tmp_path):
    from tfx.types import artifact_utils, standard_artifacts

    from components.data_validation.component import AnomalyGate, DataAnomaliesError

    _write_anomalies(tmp_path, "train", _wind_out_of_range())
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(["train"])
    gate_fn = AnomalyGate.EXECUTOR_SPEC.executor_class._FUNCTION
    with pytest.raises(DataAnomaliesError, match=r"(?s)1 anomalies.*wind.*FLOAT_TYPE_BIG_FLOAT"):
        gate_fn(anomalies=artifact)
