"""Parquet ExampleGen: the direct (no-Beam) writer against the Beam path.

Both paths run through `Executor.Do`; PARQUET_EXAMPLE_GEN_WRITER forces one,
and a spy on `direct.write_splits` proves which one ran.
"""
import collections
import datetime
import glob
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import driver as example_gen_driver
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import synthetic_weather
from components.parquet_example_gen import component, conversion, direct, executor
from components.parquet_example_gen.executor import Executor

SHARD_NAME = re.compile(r"data_tfrecord-(\d{5})-of-(\d{5})\.gz")


# --- data -----------------------------------------------------------------------

def _bundled_table():
    """The bundled Seattle data (vega_datasets) as curated Parquet types."""
    from vega_datasets import local_data

    frame = pd.read_csv(local_data.seattle_weather.filepath)
    dates = [datetime.datetime.strptime(d, "%Y/%m/%d").date() for d in frame["date"]]
    return pa.table({
        "station": pa.array(["seattle"] * len(frame)).dictionary_encode(),
        "date": pa.array(dates, pa.date32()),
        "precipitation": pa.array(frame["precipitation"], pa.float64()),
        "temp_max": pa.array(frame["temp_max"], pa.float64()),
        "temp_min": pa.array(frame["temp_min"], pa.float64()),
        "wind": pa.array(frame["wind"], pa.float64()),
        "weather": pa.array(frame["weather"]),
    })


def _synthetic_table(stations=6, days=400):
    """Synthetic weather with nulls in several columns, an all-null column and lists."""
    frame = synthetic_weather.simulate(stations, days, seed=3)
    rows = len(frame)
    rng = np.random.default_rng(5)

    def with_nulls(values, fraction):
        return [None if rng.random() < fraction else v for v in values]

    lag = np.concatenate([[np.nan], frame["precipitation"].to_numpy()[:-1]])
    return pa.table({
        "station": pa.array(frame["station"]).dictionary_encode(),
        "date": pa.array(list(frame["date"]), pa.date32()),
        "precipitation": pa.array(with_nulls(frame["precipitation"], 0.1), pa.float64()),
        "precipitation_lag1": pa.array(with_nulls(lag, 0.05), pa.float64()),
        "temp_max": pa.array(frame["temp_max"], pa.float64()),
        "weather": pa.array(with_nulls(frame["weather"], 0.2)),
        "month": pa.array(with_nulls([d.month for d in frame["date"]], 0.1), pa.int64()),
        "dry": pa.array(with_nulls(list(frame["precipitation"] == 0.0), 0.1)),
        "never": pa.nulls(rows, pa.float64()),
        "flags": pa.array(with_nulls([[i % 2, 0][: i % 3] for i in range(rows)], 0.1),
                          pa.list_(pa.int64())),
    })


def _write_span(root, table, files=3, row_group_size=500):
    """`root/span-1/part-*.parquet`: the table cut into files of small row groups."""
    span_dir = os.path.join(root, "span-1")
    os.makedirs(span_dir)
    step = -(-table.num_rows // files)
    for index, start in enumerate(range(0, table.num_rows, step)):
        pq.write_table(table.slice(start, step), os.path.join(span_dir, f"part-{index:05d}.parquet"),
                       row_group_size=row_group_size)
    return root


# --- running the executor ---------------------------------------------------------

def _input_config(patterns=None):
    if patterns is None:
        return component.default_input_config()
    return tfx.proto.Input(splits=[tfx.proto.Input.Split(name=name, pattern=pattern)
                                   for name, pattern in patterns.items()])


def _exec_properties(input_base, output_config, input_config, resolve=True, split_method="hash"):
    """As the driver resolves them; TFX's hash split unless `split_method` says otherwise."""
    properties = {
        executor.SPLIT_METHOD_KEY: split_method,
        standard_component_specs.INPUT_BASE_KEY: input_base,
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output_config),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    if resolve:
        properties = example_gen_driver.FileBasedDriver(None).resolve_exec_properties(
            properties, None, None)
    return properties


@pytest.fixture
def direct_calls(monkeypatch):
    """How often the direct writer ran."""
    calls = []
    original = direct.write_splits

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(direct, "write_splits", spy)
    return calls


def _run(monkeypatch, direct_calls, writer, input_base, output_dir, output_config,
         input_config=None, resolve=True):
    monkeypatch.setenv(executor.WRITER_ENV, writer)
    before = len(direct_calls)
    properties = _exec_properties(input_base, output_config, _input_config(input_config), resolve)
    examples = standard_artifacts.Examples()
    examples.uri = output_dir
    Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, properties)
    assert len(direct_calls) - before == (1 if writer == executor.DIRECT else 0)
    return examples


def _split_records(examples):
    """{split: [serialized examples]} read the way TFX's consumers read them."""
    splits = {}
    for split in artifact_utils.decode_split_names(examples.split_names):
        split_dir = os.path.join(examples.uri, f"Split-{split}")
        names = sorted(os.listdir(split_dir))
        matches = [SHARD_NAME.fullmatch(name) for name in names]
        assert all(matches), names
        counts = {int(m.group(2)) for m in matches}
        assert len(counts) == 1 and sorted(int(m.group(1)) for m in matches) == \
            list(range(counts.pop())), names  # data_tfrecord-i-of-n.gz, i = 0..n-1
        files = [os.path.join(split_dir, name) for name in names]
        splits[split] = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    return splits


def _custom_properties(artifact):
    return {name: artifact.get_custom_property(name)
            for name in artifact.mlmd_artifact.custom_properties}


def _parsed(serialized):
    example = tf.train.Example.FromString(serialized)
    return {name: list(getattr(feature, feature.WhichOneof("kind")).value)
            for name, feature in example.features.feature.items()}


def _assert_every_value_kept(records, table):
    """Present features = non-null cells, per column; zeros are values."""
    parsed = [_parsed(r) for r in records]
    assert len(parsed) == table.num_rows
    for name in table.column_names:
        column = table.column(name)
        assert sum(1 for p in parsed if name in p) == table.num_rows - column.null_count, name
    precipitation = table.column("precipitation").to_pylist()
    zeros = sum(1 for value in precipitation if value == 0.0)
    assert zeros > 0
    assert sum(1 for p in parsed if p.get("precipitation") == [0.0]) == zeros
    assert "never" not in set().union(*parsed)


CONFIGS = {
    "by_date": component.default_output_config(),
    "whole_record": tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name="train", hash_buckets=3),
        tfx.proto.SplitConfig.Split(name="eval", hash_buckets=1),
        tfx.proto.SplitConfig.Split(name="test", hash_buckets=1)])),
}


@pytest.mark.parametrize("data, config", [
    ("bundled", "by_date"), ("synthetic_with_nulls", "by_date"),
    ("synthetic_with_nulls", "whole_record")])
def test_direct_and_beam_paths_write_the_same_splits(data, config, tmp_path, monkeypatch,
                                                     direct_calls):
    # Small batches: several batches per file, so several shards per split.
    monkeypatch.setattr(conversion, "BATCH_ROWS", 256)
    table = _bundled_table() if data == "bundled" else _synthetic_table()
    input_base = _write_span(str(tmp_path / "curated"), table)
    output_config = CONFIGS[config]

    outputs = {writer: _run(monkeypatch, direct_calls, writer, input_base,
                            str(tmp_path / writer), output_config)
               for writer in (executor.DIRECT, executor.BEAM)}

    ours, beams = outputs[executor.DIRECT], outputs[executor.BEAM]
    assert ours.split_names == beams.split_names
    assert _custom_properties(ours) == _custom_properties(beams)
    assert ours.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert ours.get_string_custom_property("file_format") == "tfrecords_gzip"
    direct_splits, beam_splits = _split_records(ours), _split_records(beams)
    assert direct_splits.keys() == beam_splits.keys() == {
        s.name for s in output_config.split_config.splits}
    for split in direct_splits:
        assert collections.Counter(direct_splits[split]) == collections.Counter(beam_splits[split])
        assert direct_splits[split], f"split {split} is empty"
    assert len(os.listdir(os.path.join(ours.uri, "Split-train"))) > 1  # sharded
    assert sorted(os.listdir(ours.uri)) == sorted(f"Split-{s}" for s in direct_splits)
    everything = [r for records in direct_splits.values() for r in records]
    _assert_every_value_kept(everything, table)
    # Each example is in the split TFX's own partition function picks (it
    # hashes the record's bytes, or the partition feature of the parsed one).
    split_config = output_config.split_config
    buckets = direct.split_boundaries([s.hash_buckets for s in split_config.splits])
    for index, split in enumerate(s.name for s in split_config.splits):
        for serialized in direct_splits[split]:
            record = (tf.train.Example.FromString(serialized)
                      if split_config.partition_feature_name else serialized)
            assert base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
                record, len(buckets), buckets, split_config) == index


def test_direct_and_beam_paths_keep_input_splits(tmp_path, monkeypatch, direct_calls):
    table = _synthetic_table(stations=2, days=300)
    root = str(tmp_path / "curated")
    for name, part in (("a", table.slice(0, 250)), ("b", table.slice(250))):
        os.makedirs(os.path.join(root, name))
        pq.write_table(part, os.path.join(root, name, "part-0.parquet"))
    patterns = {"train": "a/*.parquet", "eval": "b/*.parquet"}
    outputs = {writer: _split_records(_run(
        monkeypatch, direct_calls, writer, root, str(tmp_path / writer), tfx.proto.Output(),
        patterns, resolve=False)) for writer in (executor.DIRECT, executor.BEAM)}
    assert outputs[executor.DIRECT] == {
        "train": conversion.record_batch_to_examples(table.slice(0, 250).combine_chunks().to_batches()[0]),
        "eval": conversion.record_batch_to_examples(table.slice(250).combine_chunks().to_batches()[0]),
    }
    for split, records in outputs[executor.BEAM].items():
        assert collections.Counter(records) == collections.Counter(outputs[executor.DIRECT][split])


def test_direct_output_is_the_same_bytes_every_time(tmp_path, monkeypatch, direct_calls):
    monkeypatch.setattr(conversion, "BATCH_ROWS", 300)
    input_base = _write_span(str(tmp_path / "curated"), _synthetic_table(stations=3, days=400))
    runs = [_run(monkeypatch, direct_calls, executor.DIRECT, input_base, str(tmp_path / f"out{i}"),
                 component.default_output_config()) for i in range(2)]
    files = [sorted(glob.glob(os.path.join(run.uri, "Split-*", "*"))) for run in runs]
    assert [os.path.relpath(f, runs[0].uri) for f in files[0]] == \
        [os.path.relpath(f, runs[1].uri) for f in files[1]]
    assert len(files[0]) > 2
    for first, second in zip(*files):
        with open(first, "rb") as a, open(second, "rb") as b:
            assert a.read() == b.read()


# --- TFRecord framing and split hashing ------------------------------------------

def test_tfrecord_framing_is_tensorflows(tmp_path):
    records = [b"", b"x", bytes(range(256)) * 3, b"\x00" * 70_000]
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    framed = direct.tfrecord_frames(pa.array(records, pa.large_binary()).slice(0))
    with open(path, "rb") as f:
        assert direct._block(framed).to_pybytes() == f.read()  # pylint: disable=protected-access
    sliced = direct.tfrecord_frames(pa.array(records, pa.large_binary()).slice(1, 2))
    assert [r.numpy() for r in tf.data.TFRecordDataset([path]).skip(1).take(2)] == records[1:3]
    assert direct._block(sliced).to_pybytes() == b"".join(  # pylint: disable=protected-access
        direct._block(direct.tfrecord_frames(pa.array([r], pa.large_binary()))).to_pybytes()
        for r in records[1:3])


def test_split_indices_are_tfx_partitions():
    keys = [bytes([i % 7]) * (i % 5) for i in range(200)]
    boundaries = direct.split_boundaries([2, 1, 4])
    split_config = tfx.proto.SplitConfig()
    expected = [base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
        key, 3, boundaries, split_config) for key in keys]
    assert direct.split_indices(pa.array(keys, pa.large_binary()), boundaries).tolist() == expected
    assert len(set(expected)) == 3


# --- which path -------------------------------------------------------------------

_TF_EXAMPLE_GZIP = {
    standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
    standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
}


@pytest.mark.parametrize("args, expected", [
    ([], executor.DIRECT),
    (["--direct_running_mode=in_memory", "--direct_num_workers=1"], executor.DIRECT),
    (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], executor.DIRECT),
    (["--runner=DirectRunner"], executor.DIRECT),
    (["--runner", "direct"], executor.DIRECT),
    (["--runner=DataflowRunner", "--project=p", "--region=r"], executor.BEAM),
    (["--runner=FlinkRunner"], executor.BEAM),
    (["--runner=SparkRunner"], executor.BEAM),
    (["--runner=PortableRunner", "--job_endpoint=localhost:8099"], executor.BEAM),
])
def test_writer_rule_follows_the_runner(args, expected, monkeypatch):
    monkeypatch.delenv(executor.WRITER_ENV, raising=False)
    assert executor.choose_writer(args, _TF_EXAMPLE_GZIP)[0] == expected


def test_writer_rule_other_cases(monkeypatch):
    monkeypatch.delenv(executor.WRITER_ENV, raising=False)
    parquet_payload = dict(_TF_EXAMPLE_GZIP, **{
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_PARQUET})
    assert executor.choose_writer([], parquet_payload)[0] == executor.BEAM
    assert executor.choose_writer([], _TF_EXAMPLE_GZIP, custom_pipeline=True)[0] == executor.BEAM
    assert executor.choose_writer([], {})[0] == executor.DIRECT
    monkeypatch.setenv(executor.WRITER_ENV, "beam")
    assert executor.choose_writer([], _TF_EXAMPLE_GZIP)[0] == executor.BEAM
    monkeypatch.setenv(executor.WRITER_ENV, "direct")
    assert executor.choose_writer(["--runner=DataflowRunner"], _TF_EXAMPLE_GZIP)[0] == executor.DIRECT
    monkeypatch.setenv(executor.WRITER_ENV, "fast")
    with pytest.raises(ValueError, match="PARQUET_EXAMPLE_GEN_WRITER"):
        executor.choose_writer([], _TF_EXAMPLE_GZIP)


# --- bad input: a named error, nothing published ------------------------------------

def _good_and_bad_span(tmp_path, damage):
    """span-1 with a good file, then a damaged one (sorted after it)."""
    input_base = _write_span(str(tmp_path / "curated"), _synthetic_table(stations=2, days=400),
                             files=1)
    bad = os.path.join(input_base, "span-1", "part-00009.parquet")
    pq.write_table(_synthetic_table(stations=2, days=400), bad, row_group_size=100,
                   compression="snappy")
    damage(bad)
    return input_base, bad


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _overwrite_pages(path):
    """Garbles column data in the middle of the file; the footer stays readable."""
    metadata = pq.ParquetFile(path).metadata
    column = metadata.row_group(metadata.num_row_groups // 2).column(3)
    with open(path, "r+b") as f:
        f.seek(column.data_page_offset + 8)
        f.write(b"\xff" * 64)


@pytest.mark.parametrize("writer", [executor.DIRECT, executor.BEAM])
def test_truncated_parquet_file_is_named_and_nothing_is_written(writer, tmp_path, monkeypatch,
                                                               direct_calls):
    input_base, bad = _good_and_bad_span(tmp_path, _truncate)
    output = tmp_path / "out"
    with pytest.raises(direct.ParquetInputError, match=re.escape(f"'{bad}'")):
        _run(monkeypatch, direct_calls, writer, input_base, str(output),
             component.default_output_config())
    assert not output.exists() or os.listdir(output) == []


def test_corrupt_pages_are_named_and_written_shards_are_removed(tmp_path, monkeypatch,
                                                                direct_calls):
    monkeypatch.setattr(conversion, "BATCH_ROWS", 100)  # the good file's shards are written first
    input_base, bad = _good_and_bad_span(tmp_path, _overwrite_pages)
    pq.ParquetFile(bad).metadata  # pylint: disable=expression-not-assigned  # footer still fine
    output = tmp_path / "out"
    with pytest.raises(direct.ParquetInputError, match=re.escape(f"'{bad}'")):
        _run(monkeypatch, direct_calls, executor.DIRECT, input_base, str(output),
             component.default_output_config())
    assert len(direct_calls) == 1
    assert os.listdir(output) == []  # neither Split-* nor the staging directory


@pytest.mark.parametrize("writer", [executor.DIRECT, executor.BEAM])
def test_empty_span_is_an_error_naming_its_files(writer, tmp_path, monkeypatch, direct_calls):
    span_dir = tmp_path / "curated" / "span-1"
    span_dir.mkdir(parents=True)
    empty = _synthetic_table(stations=1, days=10).slice(0, 0)
    pq.write_table(empty, str(span_dir / "part-00000.parquet"))
    output = tmp_path / "out"
    with pytest.raises(direct.ParquetInputError, match="no rows.*part-00000.parquet"):
        _run(monkeypatch, direct_calls, writer, str(tmp_path / "curated"), str(output),
             component.default_output_config())
    assert not output.exists() or os.listdir(output) == []


def test_unconvertible_value_names_the_file(tmp_path, monkeypatch, direct_calls):
    span_dir = tmp_path / "curated" / "span-1"
    span_dir.mkdir(parents=True)
    path = str(span_dir / "part-00000.parquet")
    pq.write_table(pa.table({"date": pa.array([datetime.date(2020, 1, 1)]),
                             "big": pa.array([2**63], pa.uint64())}), path)
    with pytest.raises(direct.ParquetInputError, match=f"'{re.escape(path)}'.*does not fit"):
        _run(monkeypatch, direct_calls, executor.DIRECT, str(tmp_path / "curated"),
             str(tmp_path / "out"), component.default_output_config())


@pytest.mark.parametrize("args, packages", [
    (["--direct_running_mode=in_memory", "--direct_num_workers=1"], False),
    (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], False),
    (["--runner=DataflowRunner", "--project=p", "--region=r"], True),
])
def test_tfx_is_packaged_for_remote_workers_only(args, packages, monkeypatch):
    from tfx.utils import dependency_utils

    built = []
    monkeypatch.setattr(dependency_utils, "build_ephemeral_package",
                        lambda: built.append(1) or "/nowhere/tfx_ephemeral.tar.gz")
    instance = Executor(Executor.Context(beam_pipeline_args=list(args)))
    assert bool(built) == packages
    assert instance._beam_pipeline_args[:len(args)] == args  # pylint: disable=protected-access
    assert ("--extra_package=/nowhere/tfx_ephemeral.tar.gz" in
            instance._beam_pipeline_args) == packages  # pylint: disable=protected-access
