"""The time split (issue #14): per station, earlier days train, later days evaluate.

ExampleGen's default split. Checked here: every example lands where an
independent per-station computation says, identically through the direct
path and the Beam path; stations too small to split train and are reported;
the cutoffs are recorded (file, artifact property, run summary line); bad
input fails by name with nothing written; `--split` reaches the pipeline
of both runners; Transform's analyzers read only the train split.
"""
import collections
import datetime
import json
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.example_gen import driver as example_gen_driver
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.parquet_example_gen import component, conversion, direct, executor, time_split
from components.parquet_example_gen.executor import Executor
from models import features
from pipeline import node_ids
from pipeline.config import PipelineConfig

START = datetime.date(2020, 1, 1)


# --- data --------------------------------------------------------------------------

def _rows():
    """Stations with different date ranges, gaps, repeated dates, and two tiny ones."""
    rows = []

    def add(station, days, repeat=()):
        for day in days:
            for _ in range(2 if day in repeat else 1):
                rows.append((station, START + datetime.timedelta(days=day)))

    add("alpha", range(100))                                  # 100 days: 67 train, 33 eval
    add("beta", [d for d in range(40, 160) if d % 7 != 3], repeat={60, 151, 152})
    add("gamma", range(300, 310))                             # 10 days: 7 / 3
    add("three", [5, 9, 30])                                  # the fewest that split: 2 / 1
    add("tiny", [1, 2], repeat={2})                           # too few: all in train
    rng = np.random.default_rng(7)
    order = rng.permutation(len(rows))  # stations and dates mixed across files
    rows = [rows[i] for i in order]
    return pa.table({
        "station": pa.array([s for s, _ in rows]),
        "date": pa.array([d for _, d in rows], pa.date32()),
        "precipitation": pa.array(rng.gamma(0.5, 3.0, len(rows)), pa.float64()),
        "row": pa.array(np.arange(len(rows)), pa.int64()),
    })


def _expected_split(table):
    """{row id: split}, computed here with pandas from the rule, not the module."""
    frame = table.to_pandas()
    expected = {}
    for _, group in frame.groupby("station"):
        dates = sorted(group["date"].unique())
        n_eval = max(1, len(dates) // 3) if len(dates) >= 3 else 0
        eval_dates = set(dates[len(dates) - n_eval:])
        for row, date in zip(group["row"], group["date"]):
            expected[int(row)] = "eval" if date in eval_dates else "train"
    return expected


def _write_span(root, table, files=3):
    span_dir = os.path.join(root, "span-1")
    os.makedirs(span_dir)
    step = -(-table.num_rows // files)
    for index, start in enumerate(range(0, table.num_rows, step)):
        part = table.slice(start, step)
        if index == 1:  # one file with a dictionary-encoded station, as Spark may write it
            part = part.set_column(0, "station", part.column("station").dictionary_encode())
        pq.write_table(part, os.path.join(span_dir, f"part-{index:05d}.parquet"), row_group_size=50)
    return root


def _exec_properties(input_base, split_method="time", output_config=None):
    properties = {
        standard_component_specs.INPUT_BASE_KEY: input_base,
        standard_component_specs.INPUT_CONFIG_KEY:
            proto_utils.proto_to_json(component.default_input_config()),
        standard_component_specs.OUTPUT_CONFIG_KEY:
            proto_utils.proto_to_json(output_config or component.default_output_config()),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    if split_method is not None:
        properties[executor.SPLIT_METHOD_KEY] = split_method
    return example_gen_driver.FileBasedDriver(None).resolve_exec_properties(properties, None, None)


def _run(monkeypatch, writer, input_base, output_dir, **kwargs):
    monkeypatch.setenv(executor.WRITER_ENV, writer)
    examples = standard_artifacts.Examples()
    examples.uri = output_dir
    Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                  _exec_properties(input_base, **kwargs))
    return examples


def _split_records(examples):
    splits = {}
    for split in ("train", "eval"):
        files = sorted(os.path.join(examples.uri, f"Split-{split}", name)
                       for name in os.listdir(os.path.join(examples.uri, f"Split-{split}")))
        splits[split] = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    return splits


def _value(serialized, name):
    feature = tf.train.Example.FromString(serialized).features.feature[name]
    return getattr(feature, feature.WhichOneof("kind")).value[0]


# --- both paths, against the rule --------------------------------------------------

def test_time_split_is_the_rule_and_the_same_through_both_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(conversion, "BATCH_ROWS", 64)  # several batches per file
    table = _rows()
    input_base = _write_span(str(tmp_path / "curated"), table)
    expected = _expected_split(table)

    outputs = {writer: _run(monkeypatch, writer, input_base, str(tmp_path / writer))
               for writer in (executor.DIRECT, executor.BEAM)}

    splits = {writer: _split_records(examples) for writer, examples in outputs.items()}
    for split in ("train", "eval"):
        assert collections.Counter(splits[executor.DIRECT][split]) == \
            collections.Counter(splits[executor.BEAM][split])
    direct_splits = splits[executor.DIRECT]
    actual = {int(_value(r, "row")): split for split, records in direct_splits.items()
              for r in records}
    assert len(actual) == table.num_rows == sum(len(r) for r in direct_splits.values())
    assert actual == expected
    # Per station, every train day precedes every eval day (repeated days stay together).
    days = collections.defaultdict(lambda: collections.defaultdict(set))
    for split, records in direct_splits.items():
        for record in records:
            days[_value(record, "station")][split].add(_value(record, "date"))
    for station, by_split in days.items():
        if by_split["eval"]:
            assert max(by_split["train"]) < min(by_split["eval"]), station
    assert not days[b"tiny"]["eval"] and len(days[b"tiny"]["train"]) == 2
    assert (len(days[b"three"]["train"]), len(days[b"three"]["eval"])) == (2, 1)
    assert (len(days[b"alpha"]["train"]), len(days[b"alpha"]["eval"])) == (67, 33)

    # What is recorded: the same through both paths, in a file and on the artifact.
    ours, beams = outputs[executor.DIRECT], outputs[executor.BEAM]
    for name in (executor.SPLIT_METHOD_PROPERTY, executor.SPLIT_SUMMARY_PROPERTY,
                 executor.TIME_SPLIT_PROPERTY):
        assert ours.get_string_custom_property(name) == beams.get_string_custom_property(name)
    assert ours.get_string_custom_property(executor.SPLIT_METHOD_PROPERTY) == "time"
    with open(os.path.join(ours.uri, time_split.RECORD_FILE)) as f:
        record = json.load(f)
    assert record == json.loads(ours.get_string_custom_property(executor.TIME_SPLIT_PROPERTY))
    assert sorted(os.listdir(ours.uri)) == ["Split-eval", "Split-train", time_split.RECORD_FILE]
    alpha = record["stations"]["alpha"]
    assert alpha["last_date_of"] == ["2020-03-07"] and alpha["cutoffs"] == ["2020-03-08"]
    assert (alpha["dates_per_split"], alpha["rows_per_split"]) == ([67, 33], [67, 33])
    beta = record["stations"]["beta"]
    beta_eval = sum(1 for row, split in expected.items()
                    if split == "eval" and table.column("station")[row].as_py() == "beta")
    assert beta["rows_per_split"][1] == beta_eval and beta["rows"] == beta["dates"] + 3
    assert record["stations"]["tiny"] == {
        "dates": 2, "rows": 3, "first_date": "2020-01-02", "last_date": "2020-01-03",
        "split": False, "dates_per_split": [2, 0], "rows_per_split": [3, 0],
        "note": "fewer than 3 distinct dates: all rows in train"}
    summary = ours.get_string_custom_property(executor.SPLIT_SUMMARY_PROPERTY)
    assert summary.startswith("by time per station (train/eval = 2:1 of each one's dates): "
                              "4 stations, train ends between ")
    assert summary.endswith("; 1 station(s) with fewer than 3 dates, all in train: tiny")


def test_one_station_summary_names_its_cutoff():
    record = {"splits": ["train", "eval"], "shares": [2, 1], "group_feature": "station",
              "min_dates": 3, "stations": {"seattle": {
                  "split": True, "last_date_of": ["2014-08-31"], "cutoffs": ["2014-09-01"]}}}
    assert time_split.describe(record) == (
        "by time per station (train/eval = 2:1 of each one's dates): "
        "seattle train <= 2014-08-31, eval after")
    record["stations"]["portland"] = dict(record["stations"]["seattle"])
    assert time_split.describe(record).endswith(": all 2 stations: train <= 2014-08-31, eval after")


@pytest.mark.parametrize("dates, weights, starts", [
    (1461, [2, 1], [974]),   # the bundled Seattle data: 974 days train, 487 eval
    (100, [2, 1], [67]),
    (4, [2, 1], [3]),
    (3, [2, 1], [2]),
    (2, [2, 1], None),
    (0, [2, 1], None),
    (10, [3, 1, 1], [6, 8]),
    (3, [1, 1, 1], [1, 2]),
])
def test_where_each_later_split_starts(dates, weights, starts):
    assert time_split.split_starts(dates, weights) == starts


def test_three_splits_by_time(tmp_path):
    path = str(tmp_path / "part-0.parquet")
    pq.write_table(pa.table({
        "station": ["x"] * 10,
        "date": [(START + datetime.timedelta(days=d)).isoformat() for d in range(10)],
    }), path)  # ISO strings work as dates too
    router, record = time_split.plan_time_split([path], ["train", "eval", "test"], [3, 1, 1], "date")
    batch = pq.read_table(path).to_batches()[0]
    _, indices = router.examples_and_indices(batch)
    assert indices.tolist() == [0] * 6 + [1] * 2 + [2] * 2
    assert record["stations"]["x"]["last_date_of"] == ["2020-01-06", "2020-01-08"]
    assert time_split.describe(record).endswith(
        "x train <= 2020-01-06, eval <= 2020-01-08, test after")


def test_no_split_method_means_tfx_hash_split(tmp_path, monkeypatch):
    """A plain FileBasedExampleGen config (no split_method) keeps TFX's meaning."""
    input_base = _write_span(str(tmp_path / "curated"), _rows())
    examples = _run(monkeypatch, executor.DIRECT, input_base, str(tmp_path / "out"),
                    split_method=None)
    assert examples.get_string_custom_property(executor.SPLIT_METHOD_PROPERTY) == "hash"
    assert examples.get_string_custom_property(executor.SPLIT_SUMMARY_PROPERTY) == (
        "by hash of the date (train/eval = 2:1; neighbouring days can fall in both)")
    assert not os.path.exists(os.path.join(examples.uri, time_split.RECORD_FILE))
    days = collections.defaultdict(set)
    for split, records in _split_records(examples).items():
        days[split] |= {_value(r, "date") for r in records if _value(r, "station") == b"alpha"}
    assert max(days["train"]) > min(days["eval"])  # interleaved: why the time split exists


# --- bad input: named, nothing written ---------------------------------------------

def _span_with(tmp_path, table):
    span_dir = tmp_path / "curated" / "span-1"
    span_dir.mkdir(parents=True)
    path = str(span_dir / "part-00000.parquet")
    pq.write_table(table, path)
    return str(tmp_path / "curated"), path


@pytest.mark.parametrize("writer", [executor.DIRECT, executor.BEAM])
@pytest.mark.parametrize("table, message", [
    (pa.table({"date": pa.array([START], pa.date32()), "x": [1]}),
     r"has no column 'station'.*--split hash"),
    (pa.table({"station": ["a", "a"], "date": pa.array([START, None], pa.date32())}),
     r"Column 'date' is null in 1 of 2 rows"),
    (pa.table({"station": ["a", None], "date": pa.array([START, START], pa.date32())}),
     r"Column 'station' is null in 1 of 2 rows"),
    (pa.table({"station": ["a", "a"], "date": ["2020-01-01", "2020-13-45"]}),
     r"Column 'date' holds '2020-13-45', not a YYYY-MM-DD date"),
    (pa.table({"station": ["a"], "date": [1.5]}),
     r"Column 'date' has Arrow type double; the time split needs a date"),
])
def test_bad_time_split_input_is_named_and_nothing_is_written(writer, table, message, tmp_path,
                                                             monkeypatch):
    input_base, path = _span_with(tmp_path, table)
    output = tmp_path / "out"
    with pytest.raises(direct.ParquetInputError, match=re.escape(path) + ".*" + message):
        _run(monkeypatch, writer, input_base, str(output))
    assert not output.exists() or os.listdir(output) == []


def test_bad_split_settings_are_errors(tmp_path, monkeypatch):
    input_base, _ = _span_with(tmp_path, pa.table({"station": ["a"], "date": [START]}))
    with pytest.raises(ValueError, match="split_method='sometimes': expected one of time, hash"):
        _run(monkeypatch, executor.DIRECT, input_base, str(tmp_path / "a"), split_method="sometimes")
    no_feature = component.default_output_config()
    no_feature.split_config.ClearField("partition_feature_name")
    with pytest.raises(ValueError, match="partition_feature_name .*not set"):
        _run(monkeypatch, executor.DIRECT, input_base, str(tmp_path / "b"), output_config=no_feature)
    with pytest.raises(ValueError, match="split_method 'random': one of time, hash"):
        component.parquet_example_gen(input_base, split="random")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- the pipeline and both runners --------------------------------------------------

def _pipeline(**overrides):
    from pipeline.pipeline import create_pipeline

    values = dict(pipeline_root="/root", curated_root="/data/curated",
                  schema_path="/schema/schema.pbtxt", serving_base="/serving")
    values.update(overrides)
    return {c.id: c for c in create_pipeline(PipelineConfig(**values)).components}


def test_pipeline_splits_by_time_by_default_and_transform_analyzes_train_only():
    nodes = _pipeline()
    assert nodes[node_ids.EXAMPLE_GEN].exec_properties[executor.SPLIT_METHOD_KEY] == "time"
    assert _pipeline(split="hash")[node_ids.EXAMPLE_GEN].exec_properties[
        executor.SPLIT_METHOD_KEY] == "hash"
    splits_config = nodes[node_ids.TRANSFORM].exec_properties["splits_config"]
    if isinstance(splits_config, str):
        splits_config = proto_utils.json_to_proto(splits_config, tfx.proto.SplitsConfig())
    assert list(splits_config.analyze) == ["train"]
    assert list(splits_config.transform) == ["train", "eval"]
    # The split names Transform, the Trainer and the Evaluator rely on.
    output = component.default_output_config()
    assert [s.name for s in output.split_config.splits] == ["train", "eval"]
    assert output.split_config.partition_feature_name == features.DATE_KEY
    assert time_split.GROUP_FEATURE == features.STATION_KEY


def test_split_flag_reaches_both_runners(tmp_path):
    import yaml

    import kubeflow_runner
    import local_runner
    from pipeline.runner_settings import pipeline_config_from_flags

    def local(*argv):
        flags = local_runner.parse_flags(["--runs-dir", str(tmp_path), *argv])
        return pipeline_config_from_flags(flags, pipeline_root="p", curated_root="c",
                                          schema_path="s", serving_base="b").split

    kubeflow_args = ["--image", "example.com/rain:1", "--pipeline-root",
                     "minio://mlpipeline/v2/artifacts"]
    assert (local(), local("--split", "hash"), local("--split", "time")) == ("time", "hash", "time")
    with pytest.raises(SystemExit):
        local_runner.parse_flags(["--runs-dir", str(tmp_path), "--split", "random"])
    for argv, expected in (([], "time"), (["--split", "hash"], "hash")):
        output = tmp_path / f"pipeline-{expected}.yaml"
        assert kubeflow_runner.main([*kubeflow_args, "--output", str(output), *argv]) == 0
        spec = next(yaml.safe_load_all(output.read_text()))
        parameters = spec["root"]["dag"]["tasks"][node_ids.EXAMPLE_GEN]["inputs"]["parameters"]
        assert parameters[executor.SPLIT_METHOD_KEY]["runtimeValue"]["constant"] == expected


def test_run_summary_prints_the_split(tmp_path):
    """ExampleGen alone in a LocalDagRunner pipeline; the summary reads its record back."""
    from pipeline.run_summary import collect_run_summary, format_run_summary

    days = 30
    table = pa.table({
        "station": ["seattle"] * days,
        "date": pa.array([START + datetime.timedelta(days=d) for d in range(days)], pa.date32()),
        "wind": pa.array(np.linspace(0.0, 5.0, days), pa.float64()),
    })
    input_base, _ = _span_with(tmp_path, table)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "metadata.sqlite"))
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="time-split-test", pipeline_root=str(tmp_path / "root"),
        components=[component.parquet_example_gen(input_base).with_id(node_ids.EXAMPLE_GEN)],
        metadata_connection_config=connection, enable_cache=False))
    summary = collect_run_summary(connection, "time-split-test")
    assert summary.split_note == ("by time per station (train/eval = 2:1 of each one's dates): "
                                  "seattle train <= 2020-01-20, eval after")
    assert "\nSplit: by time per station (train/eval = 2:1 of each one's dates): seattle train " \
           "<= 2020-01-20, eval after\n" in format_run_summary(summary)
