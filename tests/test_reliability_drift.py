"""Drift gate (issue #12, item 1): a span is compared with the previous span.

Fast tests: the graph wiring, the comparators on the bundled Seattle data
(computed with TFDV from the raw columns), the gate stopping on drift rows.
Slow test: the real Spark curation writes 2012-2013 as span 1, 2014-2015 as
span 2 and 2014-2015 with +15 degC on temp_max/temp_min as span 3; the real
pipeline nodes up to the AnomalyGate (create_pipeline's, run by
LocalDagRunner with SQLite ML Metadata) run after each curation.
"""
import os

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from components.data_validation import drift
from pipeline import node_ids
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(REPO, "schema", "schema.pbtxt")
SCHEMA = tfdv.load_schema_text(SCHEMA_PATH)
RAW_COLUMNS = ["precipitation", "temp_max", "temp_min", "wind", "weather"]


def _seattle():
    from vega_datasets import local_data

    frame = pd.read_csv(local_data.seattle_weather.filepath)
    frame["year"] = frame["date"].str[:4].astype(int)
    return frame


def _heated(frame):
    hot = frame.copy()
    hot["temp_max"] += 15.0
    hot["temp_min"] += 15.0
    return hot


def _stats(frame):
    return tfdv.generate_statistics_from_dataframe(frame[RAW_COLUMNS].reset_index(drop=True))


def _config(**overrides):
    values = dict(pipeline_root="/root", curated_root="/data/curated",
                  schema_path=SCHEMA_PATH, serving_base="/serving")
    values.update(overrides)
    return PipelineConfig(**values)


def test_drift_node_feeds_the_gate_when_a_metadata_store_is_given():
    pipeline = create_pipeline(_config(drift_metadata_path="/root/metadata.sqlite"))
    nodes = {c.id: c for c in pipeline.components}
    validator = nodes[node_ids.DRIFT_VALIDATOR]
    assert validator.exec_properties["metadata_path"] == "/root/metadata.sqlite"
    assert validator.inputs["statistics"].producer_component_id == node_ids.STATISTICS_GEN
    gate = nodes[node_ids.ANOMALY_GATE]
    assert gate.inputs["drift_anomalies"].producer_component_id == node_ids.DRIFT_VALIDATOR
    assert gate.inputs["anomalies"].producer_component_id == node_ids.EXAMPLE_VALIDATOR


def test_no_drift_node_without_a_metadata_store():
    pipeline = create_pipeline(_config())
    assert node_ids.DRIFT_VALIDATOR not in {c.id for c in pipeline.components}


def test_schema_declares_the_comparators():
    declared = drift.drift_features(SCHEMA)
    for name in ("precipitation", "temp_max", "temp_min", "wind", "temp_range"):
        assert declared[name].startswith("jensen_shannon_divergence"), name
    assert declared["weather"].startswith("infinity_norm")
    # Skew (serving vs training) uses the same thresholds.
    for feature in SCHEMA.feature:
        if feature.HasField("drift_comparator"):
            assert feature.skew_comparator == feature.drift_comparator, feature.name


def test_year_to_year_variation_passes_and_plus_15_degrees_is_stopped():
    seattle = _seattle()
    early = _stats(seattle[seattle.year <= 2013])
    late = seattle[seattle.year >= 2014]

    ordinary = drift.drift_anomalies(_stats(late), early, SCHEMA)
    assert dict(ordinary.anomaly_info) == {}
    # Every declared comparator was measured, well below its threshold.
    measured = drift.drift_measurements(ordinary)
    assert set(measured) == {"precipitation", "temp_max", "temp_min", "wind", "weather"}
    assert all(value > 0 for value in measured.values())

    heated = drift.drift_anomalies(_stats(_heated(late)), early, SCHEMA)
    assert set(heated.anomaly_info) == {"temp_max", "temp_min"}
    distances = drift.drift_measurements(heated)
    assert distances["temp_max"] > 0.5 and distances["temp_min"] > 0.5
    assert "Jensen-Shannon" in heated.anomaly_info["temp_max"].description
    assert f"{distances['temp_max']:.6g}"[:4] in heated.anomaly_info["temp_max"].description


def test_gate_stops_on_drift_rows(tmp_path):
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.types import artifact_utils, standard_artifacts

    from components.data_validation.component import AnomalyGate, DataAnomaliesError

    def artifact(name, anomalies):
        directory = tmp_path / name / "Split-train"
        directory.mkdir(parents=True)
        (directory / "SchemaDiff.pb").write_bytes(anomalies.SerializeToString())
        result = standard_artifacts.ExampleAnomalies()
        result.uri = str(tmp_path / name)
        result.split_names = artifact_utils.encode_split_names(["train"])
        return result

    drifted = anomalies_pb2.Anomalies()
    info = drifted.anomaly_info["temp_max"]
    info.description = "The Jensen-Shannon divergence between current and previous is 0.57."
    info.reason.add(type=anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH)
    gate = AnomalyGate.EXECUTOR_SPEC.executor_class._FUNCTION
    clean = artifact("schema", anomalies_pb2.Anomalies())

    gate(anomalies=clean)  # nothing to report, no drift input: passes
    gate(anomalies=clean, drift_anomalies=artifact("none", anomalies_pb2.Anomalies()))
    with pytest.raises(DataAnomaliesError,
                       match=r"(?s)1 anomalies.*temp_max.*JENSEN_SHANNON.*0\.57"):
        gate(anomalies=clean, drift_anomalies=artifact("drift", drifted))


# --- slow: real curation, real nodes, real ML Metadata -----------------------


def _validation_pipeline(runs_dir):
    """create_pipeline's nodes up to the AnomalyGate (Transform and later left out)."""
    from tfx import v1 as tfx

    from components.spark_curation.job import CURATED_DIR

    metadata_path = os.path.join(runs_dir, "pipeline", "metadata.sqlite")
    config = _config(pipeline_root=os.path.join(runs_dir, "pipeline"),
                     curated_root=os.path.join(runs_dir, "data", CURATED_DIR),
                     serving_base=os.path.join(runs_dir, "serving"),
                     drift_metadata_path=metadata_path)
    full = create_pipeline(config)
    keep = {node_ids.EXAMPLE_GEN, node_ids.STATISTICS_GEN, node_ids.SCHEMA_GEN,
            node_ids.EXAMPLE_VALIDATOR, node_ids.DRIFT_VALIDATOR, node_ids.ANOMALY_GATE}
    components = [c for c in full.components if c.id in keep]
    for component in components:  # Transform (left out) lists the gate upstream
        component._downstream_nodes = {n for n in component.downstream_nodes if n.id in keep}
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
        components=components, enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])


def _run(runs_dir):
    from tfx import v1 as tfx

    from components.data_validation.component import DataAnomaliesError
    from pipeline.run_summary import collect_run_summary, format_run_summary

    error = None
    try:
        tfx.orchestration.LocalDagRunner().run(_validation_pipeline(runs_dir))
    except DataAnomaliesError as raised:
        error = raised
    summary = collect_run_summary(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(runs_dir, "pipeline", "metadata.sqlite")), "rain-tomorrow")
    return error, summary, format_run_summary(summary)


@pytest.mark.slow
def test_drift_between_curated_spans_stops_only_the_heated_span(tmp_path):
    from pyspark.sql import SparkSession

    from components.spark_curation.job import run_curation

    seattle = _seattle()
    raw = tmp_path / "raw"
    raw.mkdir()
    parts = {
        "2012-2013.csv": seattle[seattle.year <= 2013],
        "2014-2015.csv": seattle[seattle.year >= 2014],
        "2014-2015-heated.csv": _heated(seattle[seattle.year >= 2014]),
    }
    for name, frame in parts.items():
        frame.drop(columns="year").to_csv(raw / name, index=False)
    runs_dir = str(tmp_path / "runs")
    data_dir = os.path.join(runs_dir, "data")
    spark = (SparkSession.builder.master("local[2]").appName("test-drift")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    results = []
    try:
        for name in parts:
            curated = run_curation(str(raw / name), data_dir, station="seattle", spark=spark)
            results.append((curated.span,) + _run(runs_dir))
    finally:
        spark.stop()

    (span1, error1, summary1, text1), (span2, error2, summary2, text2), \
        (span3, error3, summary3, text3) = results
    assert (span1, span2, span3) == (1, 2, 3)

    assert error1 is None and summary1.anomalies == []
    assert "span 1 is the first span: nothing to compare with" in summary1.drift_note
    assert "Drift: span 1 is the first span" in text1

    assert error2 is None, error2
    assert summary2.anomalies == []
    assert summary2.drift_note.startswith("span 2 compared with span 1")
    assert "temp_max" in summary2.drift_note

    assert error3 is not None
    assert summary3.status_of(node_ids.ANOMALY_GATE) == "FAILED"
    drifted = {(a.split, a.feature) for a in summary3.anomalies}
    assert {("train", "temp_max"), ("train", "temp_min")} <= drifted
    assert {a.feature for a in summary3.anomalies} == {"temp_max", "temp_min"}
    assert "span 3 compared with span 2" in summary3.drift_note
    message = str(error3)
    assert "temp_max" in message and "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in message
    assert "Jensen-Shannon divergence between current and previous is 0." in message
    assert "temp_max: COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in text3


def test_serving_skew_uses_the_same_thresholds():
    seattle = _seattle()
    training = _stats(seattle[seattle.year <= 2013])
    late = seattle[seattle.year >= 2014]
    assert dict(drift.skew_anomalies(training, _stats(late), SCHEMA).anomaly_info) == {}
    skewed = drift.skew_anomalies(training, _stats(_heated(late)), SCHEMA)
    assert set(skewed.anomaly_info) == {"temp_max", "temp_min"}
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    assert all(info.reason[0].type == anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
               for info in skewed.anomaly_info.values())
