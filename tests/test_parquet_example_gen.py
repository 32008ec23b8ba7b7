"""Parquet -> tf.Example: every value kept, nulls absent, through Beam and TFX."""
import datetime
import decimal
import glob
import math
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen.custom_executors import parquet_executor as stock_parquet
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils
from tfx_bsl.coders import example_coder

from components.parquet_example_gen import component, conversion
from components.parquet_example_gen.executor import (
    SPLIT_METHOD_KEY, Executor, resolve_span_if_unresolved)

UTC = datetime.timezone.utc


def _features(serialized):
    """{name: (kind, [values])}; a feature without a kind shows as (None, [])."""
    example = tf.train.Example.FromString(serialized)
    parsed = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        parsed[name] = (kind, list(getattr(feature, kind).value) if kind else [])
    return parsed


def _same(actual, expected):
    """Feature dicts equal, NaN equal to NaN."""
    if actual.keys() != expected.keys():
        return False
    for name, (kind, values) in expected.items():
        got_kind, got = actual[name]
        if got_kind != kind or len(got) != len(values):
            return False
        for a, b in zip(got, values):
            if not (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))):
                return False
    return True


def _assert_rows(serialized_examples, expected_rows):
    assert len(serialized_examples) == len(expected_rows)
    for index, (serialized, expected) in enumerate(zip(serialized_examples, expected_rows)):
        actual = _features(serialized)
        assert _same(actual, expected), f"row {index}:\n got      {actual}\n expected {expected}"


# --- record_batch_to_examples: the rules, value by value ----------------------

def _mixed_table():
    dates = [datetime.date(1970, 1, 1), datetime.date(2024, 2, 29), None, datetime.date(1969, 12, 31)]
    return pa.table({
        "i64": pa.array([0, None, -7, 2**62], pa.int64()),
        "f64": pa.array([0.0, None, float("nan"), 1.5], pa.float64()),
        "flag": pa.array([False, True, None, False]),
        "s": pa.array(["", None, "héllo", "x"]),
        "date": pa.array(dates, pa.date32()),
        "ts_utc": pa.array([
            datetime.datetime(1970, 1, 1, tzinfo=UTC),
            datetime.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            None,
            datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ], pa.timestamp("us", tz="UTC")),
        "ts_ms": pa.array([1_000, None, -1, 0], pa.timestamp("ms")),
        "ints": pa.array([[1, 0], [], None, [-3]], pa.list_(pa.int64())),
        "floats": pa.array([[0.5], None, [], [1.0, 0.0]], pa.list_(pa.float64())),
        "words": pa.array([["x", ""], None, [], ["y"]], pa.list_(pa.string())),
        "station": pa.array(["a", "b", None, "a"]).dictionary_encode(),
    })


_MIXED_EXPECTED = [
    {
        "i64": ("int64_list", [0]), "f64": ("float_list", [0.0]), "flag": ("int64_list", [0]),
        "s": ("bytes_list", [b""]), "date": ("bytes_list", [b"1970-01-01"]),
        "ts_utc": ("int64_list", [0]), "ts_ms": ("int64_list", [1_000_000]),
        "ints": ("int64_list", [1, 0]), "floats": ("float_list", [0.5]),
        "words": ("bytes_list", [b"x", b""]), "station": ("bytes_list", [b"a"]),
    },
    {
        "flag": ("int64_list", [1]), "date": ("bytes_list", [b"2024-02-29"]),
        "ts_utc": ("int64_list", [1_704_067_200_000_001]),
        "ints": ("int64_list", []), "station": ("bytes_list", [b"b"]),
    },
    {
        "i64": ("int64_list", [-7]), "f64": ("float_list", [float("nan")]),
        "s": ("bytes_list", ["héllo".encode()]), "ts_ms": ("int64_list", [-1_000]),
        "floats": ("float_list", []), "words": ("bytes_list", []),
    },
    {
        "i64": ("int64_list", [2**62]), "f64": ("float_list", [1.5]), "flag": ("int64_list", [0]),
        "s": ("bytes_list", [b"x"]), "date": ("bytes_list", [b"1969-12-31"]),
        "ts_utc": ("int64_list", [-1]), "ts_ms": ("int64_list", [0]),
        "ints": ("int64_list", [-3]), "floats": ("float_list", [1.0, 0.0]),
        "words": ("bytes_list", [b"y"]), "station": ("bytes_list", [b"a"]),
    },
]


def test_every_value_of_a_parquet_file_is_accounted_for(tmp_path):
    path = str(tmp_path / "mixed.parquet")
    pq.write_table(_mixed_table(), path)
    table = pq.read_table(path)
    assert pa.types.is_dictionary(table.schema.field("station").type)
    batch = table.combine_chunks().to_batches()[0]

    _assert_rows(conversion.record_batch_to_examples(batch), _MIXED_EXPECTED)


def test_sliced_batch_converts_like_its_rows():
    batch = _mixed_table().combine_chunks().to_batches()[0]
    _assert_rows(conversion.record_batch_to_examples(batch.slice(1, 2)), _MIXED_EXPECTED[1:3])


@pytest.mark.parametrize("array, expected", [
    (pa.array([0, -128, 127], pa.int8()), ("int64_list", [[0], [-128], [127]])),
    (pa.array([0, 65535], pa.uint16()), ("int64_list", [[0], [65535]])),
    (pa.array([0, 2**32 - 1], pa.uint32()), ("int64_list", [[0], [2**32 - 1]])),
    (pa.array([0, 2**63 - 1], pa.uint64()), ("int64_list", [[0], [2**63 - 1]])),
    (pa.array([np.float16(0), np.float16(-2.5)], pa.float16()), ("float_list", [[0.0], [-2.5]])),
    (pa.array([0.0, float("inf")], pa.float32()), ("float_list", [[0.0], [float("inf")]])),
    (pa.array([decimal.Decimal("0.00"), decimal.Decimal("-1.25")], pa.decimal128(5, 2)),
     ("float_list", [[0.0], [-1.25]])),
    (pa.array(["", "b"], pa.large_string()), ("bytes_list", [[b""], [b"b"]])),
    (pa.array(["", ""]), ("bytes_list", [[b""], [b""]])),
    (pa.array([[], []], pa.list_(pa.float64())), ("float_list", [[], []])),
    (pa.array([[""], []], pa.list_(pa.string())), ("bytes_list", [[b""], []])),
    (pa.array([b"\x00\xff", b""], pa.binary()), ("bytes_list", [[b"\x00\xff"], [b""]])),
    (pa.array([b"", b"z"], pa.large_binary()), ("bytes_list", [[b""], [b"z"]])),
    (pa.array([datetime.date(2000, 1, 2), datetime.date(1900, 3, 1)], pa.date64()),
     ("bytes_list", [[b"2000-01-02"], [b"1900-03-01"]])),
    (pa.array([1, -1], pa.timestamp("s", tz="America/New_York")),
     ("int64_list", [[1_000_000], [-1_000_000]])),
    (pa.array([1_999, -1], pa.timestamp("ns")), ("int64_list", [[1], [-1]])),
    (pa.array([[0, 1], [2, 3]], pa.list_(pa.int32(), 2)), ("int64_list", [[0, 1], [2, 3]])),
    (pa.array([[True, False], []], pa.large_list(pa.bool_())), ("int64_list", [[1, 0], []])),
    (pa.array([[datetime.date(2020, 5, 6)], []], pa.list_(pa.date32())),
     ("bytes_list", [[b"2020-05-06"], []])),
    (pa.array([["a", "b"], ["a"]], pa.list_(pa.dictionary(pa.int8(), pa.string()))),
     ("bytes_list", [[b"a", b"b"], [b"a"]])),
])
def test_each_supported_type(array, expected):
    kind, rows = expected
    batch = pa.RecordBatch.from_arrays([array], ["x"])
    _assert_rows(conversion.record_batch_to_examples(batch),
                 [{"x": (kind, values)} for values in rows])


def test_all_null_column_is_absent_everywhere():
    batch = pa.RecordBatch.from_arrays([pa.array([None, None]), pa.array([0, 1])], ["gone", "n"])
    _assert_rows(conversion.record_batch_to_examples(batch),
                 [{"n": ("int64_list", [0])}, {"n": ("int64_list", [1])}])


def test_row_with_every_value_null_is_an_empty_example():
    batch = pa.RecordBatch.from_arrays([pa.array([None], pa.float64())], ["x"])
    (serialized,) = conversion.record_batch_to_examples(batch)
    assert _features(serialized) == {}


@pytest.mark.parametrize("array, type_text", [
    (pa.array([{"a": 1}]), "struct"),
    (pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())), "map"),
    (pa.array([[[1]]], pa.list_(pa.list_(pa.int64()))), "list<item: list"),
    (pa.array([datetime.time(1, 2)], pa.time64("us")), "time64"),
    (pa.array([datetime.timedelta(1)], pa.duration("s")), "duration"),
])
def test_unsupported_type_names_column_and_type(array, type_text):
    batch = pa.RecordBatch.from_arrays([pa.array([1]), array], ["ok", "bad_column"])
    with pytest.raises(ValueError, match="'bad_column'") as raised:
        conversion.record_batch_to_examples(batch)
    assert type_text in str(raised.value)


@pytest.mark.parametrize("array, message", [
    (pa.array([2**63], pa.uint64()), "does not fit"),
    (pa.array([1e39]), "beyond float32"),
    (pa.array([[1, None]], pa.list_(pa.int64())), "null elements inside lists"),
    (pa.array([2**62], pa.timestamp("s")), "beyond the int64 microsecond range"),
])
def test_unrepresentable_value_is_an_error(array, message):
    batch = pa.RecordBatch.from_arrays([array], ["col"])
    with pytest.raises(ValueError, match=message):
        conversion.record_batch_to_examples(batch)


def test_duplicate_column_names_are_an_error():
    batch = pa.RecordBatch.from_arrays([pa.array([1]), pa.array([2])], ["x", "x"])
    with pytest.raises(ValueError, match="Duplicate column names"):
        conversion.record_batch_to_examples(batch)


# --- the hand-written wire format against protobuf and tfx_bsl ----------------

def _random_batch(rng, rows, with_nulls):
    """Columns tfx_bsl accepts as-is, with awkward sizes for varint lengths."""
    def maybe_null(values):
        return [None if with_nulls and rng.random() < 0.2 else v for v in values]

    def list_lengths():
        return rng.choice([0, 1, 2, 3, 40], size=rows)

    ints = maybe_null([list(rng.integers(-2**63, 2**63 - 1, size=n, dtype=np.int64)) for n in list_lengths()])
    small = maybe_null([list(rng.integers(-5, 300, size=n)) for n in list_lengths()])
    floats = maybe_null([list(rng.normal(size=n).astype(np.float32)) for n in list_lengths()])
    text = maybe_null([[bytes(rng.integers(0, 256, size=int(rng.choice([0, 1, 127, 128, 20000])),
                                           dtype=np.uint8)) for _ in range(n)] for n in list_lengths()])
    return pa.RecordBatch.from_arrays([
        pa.array(floats, pa.large_list(pa.float32())),
        pa.array(ints, pa.large_list(pa.int64())),
        pa.array(small, pa.large_list(pa.int64())),
        pa.array(text, pa.large_list(pa.large_binary())),
    ], ["a_floats", "b_ints", "c_small", "d_bytes"])


@pytest.mark.parametrize("with_nulls", [False, True])
def test_wire_format_is_protobufs_own(with_nulls):
    batch = _random_batch(np.random.default_rng(7), rows=300, with_nulls=with_nulls)
    ours = conversion.record_batch_to_examples(batch)
    reference = example_coder.RecordBatchToExamplesEncoder().encode(batch)
    for serialized, expected in zip(ours, reference):
        # Columns are in sorted order, so protobuf's deterministic serialization
        # (sorted map keys) must reproduce our bytes exactly.
        assert tf.train.Example.FromString(serialized).SerializeToString(deterministic=True) == serialized
        # tfx_bsl writes a null as a kind-less feature; ours leaves it out.
        kept = {k: v for k, v in _features(expected).items() if v[0] is not None}
        assert _same(_features(serialized), kept)


def test_fixed_width_columns_match_variable_width_encoding():
    rows = 50
    batch = pa.RecordBatch.from_arrays([
        pa.array(np.linspace(-1, 1, rows)),
        pa.array(np.arange(rows) * 1000),
        pa.array([datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(rows)]),
        pa.array([None] + list(range(rows - 1)), pa.float64()),
    ], ["all_floats", "all_ints", "all_dates", "some_null"])
    whole = conversion.record_batch_to_examples(batch)
    one_by_one = [conversion.record_batch_to_examples(batch.slice(i, 1))[0] for i in range(rows)]
    assert whole == one_by_one


# --- partition keys: identical to what TFX hashes ----------------------------

@pytest.mark.parametrize("key", ["date", "i64", "ints"])
def test_partition_key_is_the_feature_tfx_hashes(key):
    batch = _mixed_table().combine_chunks().to_batches()[0].filter(pa.array([True, False, False, True]))
    split_config = tfx.proto.SplitConfig(partition_feature_name=key)
    examples, keys = conversion.record_batch_to_keyed_examples(batch, key)
    assert examples == conversion.record_batch_to_examples(batch)
    for serialized, ours in zip(examples, keys):
        expected = base_example_gen_executor._GeneratePartitionKey(  # pylint: disable=protected-access
            tf.train.Example.FromString(serialized), split_config)
        assert ours == expected


@pytest.mark.parametrize("key, message", [
    ("date", "null in 1 of 4 rows"),
    ("f64", "float_list"),
    ("nope", "not a column"),
])
def test_partition_key_errors(key, message):
    batch = _mixed_table().combine_chunks().to_batches()[0]
    with pytest.raises(ValueError, match=message):
        conversion.record_batch_to_keyed_examples(batch, key)


def test_parquet_to_serialized_examples_reads_every_file(tmp_path):
    pq.write_table(pa.table({"x": [0, 1]}), str(tmp_path / "part-0.parquet"))
    pq.write_table(pa.table({"x": [2]}), str(tmp_path / "part-1.parquet"))
    examples = list(conversion.parquet_to_serialized_examples(str(tmp_path / "*.parquet")))
    _assert_rows(examples, [{"x": ("int64_list", [v])} for v in (0, 1, 2)])
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        next(conversion.parquet_to_serialized_examples(str(tmp_path / "nothing-here*")))


# --- the executor, through Beam ----------------------------------------------

SPAN_ROWS = {1: 30, 2: 300}


def _span_table(span, rows):
    start = datetime.date(2020, 1, 1) + datetime.timedelta(days=1000 * span)
    precipitation = [0.0 if i % 3 == 0 else i / 10 for i in range(rows)]
    precipitation[1] = None
    return pa.table({
        "date": pa.array([start + datetime.timedelta(days=i) for i in range(rows)], pa.date32()),
        "station": pa.array(["seattle"] * rows).dictionary_encode(),
        "precipitation": pa.array(precipitation, pa.float64()),
        "rain_tomorrow": pa.array([i % 2 for i in range(rows)], pa.int64()),
    })


@pytest.fixture
def curated(tmp_path):
    root = tmp_path / "curated"
    for span, rows in SPAN_ROWS.items():
        span_dir = root / f"span-{span}"
        span_dir.mkdir(parents=True)
        table = _span_table(span, rows)
        half = rows // 2
        pq.write_table(table.slice(0, half), str(span_dir / "part-00000.parquet"), row_group_size=64)
        pq.write_table(table.slice(half), str(span_dir / "part-00001.parquet"))
        (span_dir / "_SUCCESS").write_text("")
    return str(root)


def _resolved_exec_properties(input_base, output_config):
    """What the FileBasedDriver hands the executor: {SPAN} resolved to the latest.

    These tests are about TFX's hash split (tests/test_time_split.py: the time split).
    """
    exec_properties = {
        standard_component_specs.INPUT_BASE_KEY: input_base,
        standard_component_specs.INPUT_CONFIG_KEY:
            proto_utils.proto_to_json(component.default_input_config()),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output_config),
        SPLIT_METHOD_KEY: "hash",
    }
    driver = example_gen_driver.FileBasedDriver(None)
    return driver.resolve_exec_properties(exec_properties, None, None)


def _run_executor(input_base, output_dir, output_config):
    exec_properties = _resolved_exec_properties(input_base, output_config)
    examples = standard_artifacts.Examples()
    examples.uri = output_dir
    Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    return exec_properties, examples


def _read_split(examples_uri, split):
    files = glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
    assert files, f"no output for split {split}"
    return [record.numpy() for record in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _check_split_outputs(examples_uri, span):
    train, evaluation = _read_split(examples_uri, "train"), _read_split(examples_uri, "eval")
    rows = SPAN_ROWS[span]
    assert len(train) + len(evaluation) == rows
    assert 0.55 < len(train) / rows < 0.78  # 2:1 (hash: about; time: exactly 2/3 of the dates)
    parsed = [_features(e) for e in train + evaluation]
    expected = _span_table(span, rows).to_pylist()
    precipitation = sorted(p["precipitation"][1][0] for p in parsed if "precipitation" in p)
    assert precipitation == pytest.approx(sorted(r["precipitation"] for r in expected
                                                 if r["precipitation"] is not None))
    assert sum(1 for p in parsed if p.get("precipitation") == ("float_list", [0.0])) == \
        sum(1 for r in expected if r["precipitation"] == 0.0)
    assert sum(1 for p in parsed if "precipitation" not in p) == 1
    assert sorted(p["date"][1][0] for p in parsed) == \
        sorted(r["date"].isoformat().encode() for r in expected)
    return train, evaluation


def test_executor_splits_latest_span_by_date(curated, tmp_path):
    exec_properties, examples = _run_executor(
        curated, str(tmp_path / "out"), component.default_output_config())

    assert exec_properties["span"] == 2
    assert "span-2/*.parquet" in exec_properties[standard_component_specs.INPUT_CONFIG_KEY]
    train, evaluation = _check_split_outputs(examples.uri, span=2)
    split_config = component.default_output_config().split_config
    for split_index, split in enumerate([train, evaluation]):
        for serialized in split:
            assert base_example_gen_executor._PartitionFn(  # pylint: disable=protected-access
                tf.train.Example.FromString(serialized), 2, [2, 3], split_config) == split_index


def test_executor_resolves_the_span_when_no_driver_ran(curated, tmp_path):
    """KFP's open-source backend runs no ExampleGen driver: the executor does its work."""
    raw = {
        standard_component_specs.INPUT_BASE_KEY: curated,
        standard_component_specs.INPUT_CONFIG_KEY:
            proto_utils.proto_to_json(component.default_input_config()),
        standard_component_specs.OUTPUT_CONFIG_KEY:
            proto_utils.proto_to_json(component.default_output_config()),
        SPLIT_METHOD_KEY: "hash",
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")
    Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, dict(raw))

    assert examples.get_int_custom_property("span") == 2  # recorded as the driver would
    driver_properties = _resolved_exec_properties(curated, component.default_output_config())
    assert examples.get_string_custom_property("input_fingerprint") == \
        driver_properties["input_fingerprint"]
    _check_split_outputs(examples.uri, span=2)


def test_span_resolution_leaves_a_drivers_work_alone(curated):
    resolved = _resolved_exec_properties(curated, component.default_output_config())
    examples = standard_artifacts.Examples()
    assert resolve_span_if_unresolved(resolved, examples) is resolved
    assert not examples.has_custom_property("span")


def test_executor_without_partition_feature_hashes_whole_records(curated, tmp_path):
    output_config = component.default_output_config()
    output_config.split_config.ClearField("partition_feature_name")
    _, examples = _run_executor(curated, str(tmp_path / "out"), output_config)
    _check_split_outputs(examples.uri, span=2)


def test_executor_keeps_input_splits_when_no_output_split_is_given(curated, tmp_path):
    exec_properties = {
        standard_component_specs.INPUT_BASE_KEY: curated,
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="train", pattern="span-2/*.parquet"),
            tfx.proto.Input.Split(name="eval", pattern="span-1/*.parquet"),
        ])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(tfx.proto.Output()),
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")
    Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    assert len(_read_split(examples.uri, "train")) == SPAN_ROWS[2]
    assert len(_read_split(examples.uri, "eval")) == SPAN_ROWS[1]


def test_executor_names_a_pattern_that_matches_nothing(tmp_path):
    exec_properties = {
        standard_component_specs.INPUT_BASE_KEY: str(tmp_path),
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            tfx.proto.Input(splits=[tfx.proto.Input.Split(name="s", pattern="span-9/*.parquet")])),
        standard_component_specs.OUTPUT_CONFIG_KEY:
            proto_utils.proto_to_json(component.default_output_config()),
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="span-9/\\*.parquet"):
        Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)


# --- what the stock executor loses on the same data --------------------------

def _stock_examples(input_base, split_pattern, output_prefix):
    with beam.Pipeline() as pipeline:
        _ = (pipeline
             | stock_parquet._ParquetToExample(  # pylint: disable=protected-access
                 {standard_component_specs.INPUT_BASE_KEY: input_base}, split_pattern)
             | beam.Map(lambda example: example.SerializeToString())
             | beam.io.WriteToTFRecord(output_prefix))
    return [r.numpy() for r in tf.data.TFRecordDataset(glob.glob(output_prefix + "*"))]


def test_stock_executor_drops_zeros_and_crashes_on_dates(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    table = _span_table(1, 30)
    pq.write_table(table.drop(["date"]), str(data / "no_date.parquet"))
    pq.write_table(table, str(data / "with_date.parquet"))
    zeros = sum(1 for value in table.column("precipitation").to_pylist() if value == 0.0)

    stock = [_features(e) for e in _stock_examples(str(data), "no_date.parquet", str(tmp_path / "stock"))]
    ours = [_features(e) for e in conversion.parquet_to_serialized_examples(str(data / "no_date.parquet"))]

    def kept_zeros(parsed):
        return sum(1 for p in parsed if p.get("precipitation") == ("float_list", [0.0]))

    assert zeros == 10
    assert kept_zeros(ours) == zeros
    assert kept_zeros(stock) == 0  # every 0.0 became a kind-less, empty feature
    assert sum(1 for p in stock if p.get("rain_tomorrow") == ("int64_list", [0])) == 0
    with pytest.raises(TypeError, match="datetime.date"):
        _stock_examples(str(data), "with_date.parquet", str(tmp_path / "stock_dates"))


# --- the component factory in a real (tiny) TFX pipeline ---------------------

def test_component_reads_latest_span_in_local_pipeline(curated, tmp_path):
    """The factory's defaults: the latest span, split by time (earlier days train)."""
    from ml_metadata.metadata_store import metadata_store

    example_gen = component.parquet_example_gen(curated)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "metadata.sqlite"))
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="parquet_example_gen_test",
        pipeline_root=str(tmp_path / "root"),
        components=[example_gen],
        metadata_connection_config=connection,
        enable_cache=False,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    store = metadata_store.MetadataStore(connection)
    (artifact,) = store.get_artifacts_by_type(standard_artifacts.Examples.TYPE_NAME)
    assert artifact.custom_properties["span"].int_value == 2
    assert artifact.properties["split_names"].string_value == '["train", "eval"]'
    train, evaluation = _check_split_outputs(artifact.uri, span=2)
    assert artifact.custom_properties["split_method"].string_value == "time"
    train_dates = [_features(e)["date"][1][0] for e in train]
    eval_dates = [_features(e)["date"][1][0] for e in evaluation]
    assert (len(set(train_dates)), len(set(eval_dates))) == (200, 100)  # 300 days, one station
    assert max(train_dates) < min(eval_dates)
