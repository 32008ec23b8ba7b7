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


# ------------------------------------------------------------ rows traced to station and date (#12.5)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example(station, date, **values):
    import tensorflow as tf

    feature = {"station": tf.train.Feature(bytes_list=tf.train.BytesList(value=[station.encode()])),
               "date": tf.train.Feature(bytes_list=tf.train.BytesList(value=[date.encode()]))}
    for name, value in values.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _write_examples(root, split, examples, shards=2):
    import tensorflow as tf

    split_dir = os.path.join(root, f"Split-{split}")
    os.makedirs(split_dir)
    for shard in range(shards):
        path = os.path.join(split_dir, f"data_tfrecord-{shard:05d}-of-{shards:05d}.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for example in examples[shard::shards]:
                writer.write(example.SerializeToString())


def _schema_artifact(root):
    import shutil

    from tfx.types import standard_artifacts

    os.makedirs(root)
    shutil.copy(os.path.join(REPO, "schema", "schema.pbtxt"), root)
    artifact = standard_artifacts.Schema()
    artifact.uri = str(root)
    return artifact


def _artifact(kind, uri, splits):
    from tfx.types import artifact_utils, standard_artifacts

    artifact = getattr(standard_artifacts, kind)()
    artifact.uri = str(uri)
    artifact.split_names = artifact_utils.encode_split_names(splits)
    return artifact


def test_out_of_domain_anomalies_name_the_rows_station_and_date(tmp_path):
    """#12.5: one 600 mm day among many stations stopped the run; the table named neither
    station nor date. Now each out-of-domain anomaly lists its rows."""
    from components.data_validation.component import AnomalyGate, DataAnomaliesError

    days = [_example(station, f"2015-06-{day:02d}", precipitation=float(day % 4),
                     precipitation_mean_3d=float(day % 4), weather="rain")
            for station in ("a", "b", "c") for day in range(1, 11)]
    days[13] = _example("b", "2015-06-04", precipitation=600.0, precipitation_mean_3d=200.0,
                        weather="rain")
    days[14] = _example("b", "2015-06-05", precipitation=0.0, precipitation_mean_3d=200.0,
                        weather="hail")
    days[26] = _example("c", "2015-06-07", precipitation=0.0, precipitation_mean_3d=501.0,
                        weather="rain")
    _write_examples(tmp_path / "examples", "train", days)

    anomalies = anomalies_pb2.Anomalies()
    for name, kind, text in (
            ("precipitation", anomalies_pb2.AnomalyInfo.FLOAT_TYPE_BIG_FLOAT, "Unexpectedly large value: 600."),
            ("precipitation_mean_3d", anomalies_pb2.AnomalyInfo.FLOAT_TYPE_BIG_FLOAT, "Unexpectedly large value: 501."),
            ("weather", anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES, "Examples contain values missing from the schema: hail (<1%)."),
            ("wind", anomalies_pb2.AnomalyInfo.FEATURE_TYPE_NOT_PRESENT, "Column is completely missing")):
        info = anomalies.anomaly_info[name]
        info.description = text
        info.reason.add(type=kind)
    _write_anomalies(tmp_path / "anomalies", "train", anomalies)

    gate_fn = AnomalyGate.EXECUTOR_SPEC.executor_class._FUNCTION
    with pytest.raises(DataAnomaliesError) as error:
        gate_fn(anomalies=_artifact("ExampleAnomalies", tmp_path / "anomalies", ["train"]),
                examples=_artifact("Examples", tmp_path / "examples", ["train"]),
                schema=_schema_artifact(tmp_path / "schema"))
    lines = {line.split()[1]: line for line in str(error.value).splitlines()[3:]}
    assert lines["precipitation"].endswith(
        "Unexpectedly large value: 600. Rows outside the domain: 1 row: b 2015-06-04 (600).")
    # Only values outside the domain are listed: b's 200 mm means (the 600 mm day
    # averaged) are within [0, 500], c's 501 mm is not.
    assert lines["precipitation_mean_3d"].endswith(
        "Unexpectedly large value: 501. Rows outside the domain: 1 row: c 2015-06-07 (501).")
    assert lines["weather"].endswith("Rows outside the domain: 1 row: b 2015-06-05 ('hail').")
    assert lines["wind"].split()[:3] == ["train", "wind", "FEATURE_TYPE_NOT_PRESENT"]
    assert "Rows outside" not in lines["wind"]
    # The table keeps its four columns and header.
    assert str(error.value).splitlines()[1].split() == ["split", "feature", "anomaly", "description"]


def test_tracing_lists_at_most_a_few_rows_and_counts_the_rest(tmp_path):
    from components.data_validation import anomalies as report
    from components.data_validation.component import load_schema

    _write_examples(tmp_path / "examples", "eval",
                    [_example("s", f"2015-01-{day:02d}", wind=80.0 + day) for day in range(1, 9)],
                    shards=1)
    row = report.AnomalyRow("eval", "wind", "FLOAT_TYPE_BIG_FLOAT", "Unexpectedly large value: 88.")
    schema = load_schema(str(_schema_artifact(tmp_path / "schema").uri))
    (traced,) = report.trace_rows([row], str(tmp_path / "examples"), schema, limit=2)
    assert traced.rows == "8 rows: s 2015-01-01 (81), s 2015-01-02 (82), and 6 more"


def test_tfdv_reports_an_out_of_domain_value_as_a_traced_anomaly_type(tmp_path):
    """The anomaly types traced are the ones TFDV really reports for the schema's domains."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    from components.data_validation import anomalies as report

    schema = tfdv.load_schema_text(os.path.join(REPO, "schema", "schema.pbtxt"))
    frame = pd.DataFrame({"precipitation": [0.0, 600.0], "wind": [-1.0, 3.0],
                          "weather": ["rain", "hail"]})
    found = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(frame), schema,
                                     environment="SERVING")
    _write_anomalies(tmp_path, "train", found)
    rows = {r.feature: r for r in report.load_anomaly_rows(str(tmp_path), ["train"])}
    assert all(report.is_domain_anomaly(rows[name]) for name in ("precipitation", "wind", "weather"))
    assert not report.is_domain_anomaly(rows["temp_max"])  # absent: not a domain anomaly
