"""Drift gate (issue #12, item 1): a span is compared with the previous span.

Fast tests: the graph wiring, the comparators on the bundled Seattle data
(computed with TFDV from the raw columns), the gate stopping on drift rows,
the DriftValidator executor on its statistics history (the store both
runners use: first span, an ordinary span, a +15 degC span, re-runs,
half-written records). The same executor run through TFX's Kubeflow v2
entrypoint on the compiled KFP spec is in tests/test_kubeflow_runner.py.
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


def test_drift_node_feeds_the_gate_when_a_history_root_is_given():
    pipeline = create_pipeline(_config(drift_history_root="/data/drift_history"))
    nodes = {c.id: c for c in pipeline.components}
    validator = nodes[node_ids.DRIFT_VALIDATOR]
    assert validator.exec_properties["history_root"] == "/data/drift_history"
    assert validator.inputs["statistics"].producer_component_id == node_ids.STATISTICS_GEN
    assert validator.inputs["examples"].producer_component_id == node_ids.EXAMPLE_GEN
    gate = nodes[node_ids.ANOMALY_GATE]
    assert gate.inputs["drift_anomalies"].producer_component_id == node_ids.DRIFT_VALIDATOR
    assert gate.inputs["anomalies"].producer_component_id == node_ids.EXAMPLE_VALIDATOR


def test_history_root_is_beside_the_curated_data():
    assert drift.history_root_for("/mnt/data") == "/mnt/data/drift_history"
    assert drift.history_root_for("gs://bucket/data") == "gs://bucket/data/drift_history"


def test_local_runner_builds_the_drift_node_on_a_history_beside_its_curated_data(tmp_path, monkeypatch):
    """local_runner.run_pipeline's own config (captured as it reaches create_pipeline)."""
    import local_runner
    import pipeline.pipeline as pipeline_module

    class Captured(BaseException):
        pass

    def capture(config, *args, **kwargs):
        raise Captured(config)

    monkeypatch.setattr(pipeline_module, "create_pipeline", capture)
    flags = local_runner.parse_flags(["--runs-dir", str(tmp_path / "runs")])
    with pytest.raises(Captured) as captured:
        local_runner.run_pipeline(flags)
    config = captured.value.args[0]
    assert config.drift_history_root == os.path.join(flags.data_dir, "drift_history")
    assert node_ids.DRIFT_VALIDATOR in {c.id for c in create_pipeline(config).components}


def test_no_drift_node_without_a_history_root():
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


# --- the DriftValidator executor on its statistics history --------------------

_STATS_CACHE = {}


def _split_stats(name, frame):
    """Serialized statistics of a frame's train (even rows) and eval (odd rows) halves."""
    if name not in _STATS_CACHE:
        frame = frame.reset_index(drop=True)
        _STATS_CACHE[name] = {
            "train": _stats(frame.iloc[0::2]).SerializeToString(),
            "eval": _stats(frame.iloc[1::2]).SerializeToString(),
        }
    return _STATS_CACHE[name]


def _frames():
    seattle = _seattle()
    late = seattle[seattle.year >= 2014]
    return {"early": seattle[seattle.year <= 2013], "late": late, "heated": _heated(late)}


def _examples_artifact(directory, span):
    """ExampleGen's output as its driver records it: the span is a custom property."""
    from tfx.components.example_gen import driver as example_gen_driver
    from tfx.types import standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = str(directory)
    example_gen_driver.update_output_artifact(
        {"span": span, "version": None, "input_fingerprint": f"span {span}"}, examples.mlmd_artifact)
    return examples


def _statistics_artifact(directory, examples, stats_by_split):
    """A StatisticsGen output as TFX lays it out (its span property copied as StatisticsGen does)."""
    from tfx.types import artifact_utils, standard_artifacts

    for split, data in stats_by_split.items():
        (directory / f"Split-{split}").mkdir(parents=True)
        (directory / f"Split-{split}" / drift.STATS_FILE).write_bytes(data)
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(directory)
    artifact.split_names = artifact_utils.encode_split_names(sorted(stats_by_split))
    artifact.span = examples.span  # tfx/components/statistics_gen/executor.py: 0, not the span
    return artifact


class _History:
    """Runs the DriftValidator executor span after span against one history root."""

    def __init__(self, tmp_path):
        from tfx.types import standard_artifacts

        self.tmp_path = tmp_path
        self.root = str(tmp_path / "data" / drift.HISTORY_DIR)
        schema_dir = tmp_path / "schema"
        schema_dir.mkdir()
        (schema_dir / "schema.pbtxt").write_text(open(SCHEMA_PATH).read())
        self.schema = standard_artifacts.Schema()
        self.schema.uri = str(schema_dir)
        self.runs = 0

    def validate(self, span, stats_by_split):
        from tensorflow_metadata.proto.v0 import anomalies_pb2
        from tfx.types import standard_artifacts

        self.runs += 1
        examples = _examples_artifact(self.tmp_path / "ExampleGen" / str(self.runs), span)
        statistics = _statistics_artifact(
            self.tmp_path / "StatisticsGen" / str(self.runs), examples, stats_by_split)
        assert statistics.span == 0  # what StatisticsGen copies: the drift node reads the Examples
        output = standard_artifacts.ExampleAnomalies()
        output.uri = str(self.tmp_path / "DriftValidator" / str(self.runs))
        drift.Executor().Do({"statistics": [statistics], "schema": [self.schema], "examples": [examples]},
                            {"anomalies": [output]}, {"history_root": self.root})
        found = {}
        for split in stats_by_split:
            anomalies = anomalies_pb2.Anomalies()
            with open(os.path.join(output.uri, f"Split-{split}", "SchemaDiff.pb"), "rb") as f:
                anomalies.ParseFromString(f.read())
            found[split] = anomalies
        return output, found


def test_history_store_first_ordinary_heated_and_rerun_spans(tmp_path):
    frames = _frames()
    history = _History(tmp_path)
    store = drift.StatisticsHistory(history.root)

    # Span 1: nothing to compare with; recorded.
    output, found = history.validate(1, _split_stats("early", frames["early"]))
    note = output.get_string_custom_property(drift.DRIFT_NOTE)
    assert note.startswith("span 1 is the first span: nothing to compare with, drift not checked")
    assert history.root in note
    assert all(dict(a.anomaly_info) == {} for a in found.values())
    assert output.get_int_custom_property(drift.DRIFT_PREVIOUS_SPAN) == -1
    assert output.get_int_custom_property(drift.DRIFT_RECORDED) == 1
    assert store.spans() == [1]
    recorded = os.path.join(history.root, "span-1", "Split-train", "FeatureStats.pb")
    assert open(recorded, "rb").read() == _split_stats("early", frames["early"])["train"]

    # Span 2, ordinary year-to-year variation: compared with span 1, within thresholds.
    output, found = history.validate(2, _split_stats("late", frames["late"]))
    note = output.get_string_custom_property(drift.DRIFT_NOTE)
    assert note.startswith("span 2 compared with span 1 (")
    assert "train: precipitation 0.0" in note and "eval: precipitation 0.0" in note
    assert all(dict(a.anomaly_info) == {} for a in found.values())
    assert output.get_int_custom_property(drift.DRIFT_PREVIOUS_SPAN) == 1
    assert store.spans() == [1, 2]

    # Span 3, +15 degC: anomalies naming the features and the distance; not recorded.
    output, found = history.validate(3, _split_stats("heated", frames["heated"]))
    note = output.get_string_custom_property(drift.DRIFT_NOTE)
    assert note.startswith("span 3 compared with span 2 (")
    assert "drifted (eval/temp_max, eval/temp_min, train/temp_max, train/temp_min)" in note
    for split, anomalies in found.items():
        assert set(anomalies.anomaly_info) == {"temp_max", "temp_min"}, split
        distance = drift.drift_measurements(anomalies)["temp_max"]
        assert distance > 0.5
        description = anomalies.anomaly_info["temp_max"].description
        assert "Jensen-Shannon divergence between current and previous is" in description
        assert f"{distance:.6g}"[:4] in description
        assert f"temp_max {distance:.3f}" in note
    assert output.get_int_custom_property(drift.DRIFT_RECORDED) == 0
    assert store.spans() == [1, 2]

    # A re-run of span 2 compares with span 1 (the highest span below it), not with itself.
    output, found = history.validate(2, _split_stats("late", frames["late"]))
    assert output.get_string_custom_property(drift.DRIFT_NOTE).startswith("span 2 compared with span 1 (")
    assert all(dict(a.anomaly_info) == {} for a in found.values())

    # Span 4 after the rejected span 3 is compared with span 2, the last accepted one.
    output, found = history.validate(4, _split_stats("late", frames["late"]))
    assert output.get_string_custom_property(drift.DRIFT_NOTE).startswith("span 4 compared with span 2 (")
    assert all(dict(a.anomaly_info) == {} for a in found.values())
    assert store.spans() == [1, 2, 4]


def test_a_half_written_record_is_never_read(tmp_path, monkeypatch):
    frames = _frames()
    history = _History(tmp_path)
    store = drift.StatisticsHistory(history.root)
    history.validate(1, _split_stats("early", frames["early"]))

    # A writer killed before its RECORDED.json: statistics present (here garbage
    # that would not even parse), the record incomplete.
    split_dir = os.path.join(history.root, "span-2", "Split-train")
    os.makedirs(split_dir)
    with open(os.path.join(split_dir, "FeatureStats.pb"), "wb") as f:
        f.write(b"\x0a\xff half written")
    # A writer killed mid-file: only its temporary file exists.
    os.makedirs(os.path.join(history.root, "span-3", "Split-train"))
    with open(os.path.join(history.root, "span-3", "Split-train", ".FeatureStats.pb.tmp-dead"), "wb") as f:
        f.write(b"\x0a\xff")
    assert store.spans() == [1]

    output, found = history.validate(4, _split_stats("late", frames["late"]))
    assert output.get_string_custom_property(drift.DRIFT_NOTE).startswith("span 4 compared with span 1 (")
    assert all(dict(a.anomaly_info) == {} for a in found.values())

    # A write that fails half-way fails the node, names the history, and leaves
    # no readable record and no temporary file behind.
    real_rename = drift.fileio.rename
    calls = []

    def failing_rename(src, dst, overwrite=False):
        calls.append(dst)
        if len(calls) == 2:  # the first split is in place, the second fails
            raise OSError("No space left on device")
        return real_rename(src, dst, overwrite=overwrite)

    monkeypatch.setattr(drift.fileio, "rename", failing_rename)
    with pytest.raises(OSError, match=r"Could not record span 5's statistics in the drift history "
                                      r".*drift_history: OSError: No space left on device"):
        history.validate(5, _split_stats("late", frames["late"]))
    monkeypatch.setattr(drift.fileio, "rename", real_rename)
    assert store.spans() == [1, 4]
    leftovers = [name for _, _, files in os.walk(os.path.join(history.root, "span-5"))
                 for name in files if ".tmp-" in name]
    assert leftovers == []
    output, _ = history.validate(6, _split_stats("late", frames["late"]))
    assert output.get_string_custom_property(drift.DRIFT_NOTE).startswith("span 6 compared with span 4 (")

    # A complete record whose statistics are corrupt: a clear error naming the file.
    with open(os.path.join(history.root, "span-6", "Split-eval", "FeatureStats.pb"), "wb") as f:
        f.write(b"\x0a\xff corrupt")
    with pytest.raises(ValueError, match=r"record .*span-6/Split-eval/FeatureStats.pb cannot be read"):
        history.validate(7, _split_stats("late", frames["late"]))


def test_examples_without_a_span_are_not_checked_and_not_recorded(tmp_path):
    from tfx.types import standard_artifacts

    frames = _frames()
    history = _History(tmp_path)
    history.validate(1, _split_stats("early", frames["early"]))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    statistics = _statistics_artifact(tmp_path / "nospan", examples, _split_stats("late", frames["late"]))
    output = standard_artifacts.ExampleAnomalies()
    output.uri = str(tmp_path / "out")
    drift.Executor().Do({"statistics": [statistics], "schema": [history.schema], "examples": [examples]},
                        {"anomalies": [output]}, {"history_root": history.root})
    assert output.get_string_custom_property(drift.DRIFT_NOTE) == (
        "the examples carry no span: drift not checked")
    assert drift.StatisticsHistory(history.root).spans() == [1]


# --- slow: real curation, real nodes, real ML Metadata -----------------------


def _validation_pipeline(runs_dir):
    """create_pipeline's nodes up to the AnomalyGate (Transform and later left out)."""
    from tfx import v1 as tfx

    from components.spark_curation.job import CURATED_DIR

    metadata_path = os.path.join(runs_dir, "pipeline", "metadata.sqlite")
    config = _config(pipeline_root=os.path.join(runs_dir, "pipeline"),
                     curated_root=os.path.join(runs_dir, "data", CURATED_DIR),
                     serving_base=os.path.join(runs_dir, "serving"),
                     drift_history_root=drift.history_root_for(os.path.join(runs_dir, "data")))
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
    # The history beside the curated data holds the accepted spans only.
    history = drift.StatisticsHistory(os.path.join(data_dir, drift.HISTORY_DIR))
    assert history.spans() == [1, 2]
    assert "not added to the history" in summary3.drift_note


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
