"""preprocessing_fn, the Keras model, its serving export and the Trainer's run_fn.

One tf.Transform run over eight hand-made rows, parsed with the curated schema
exactly as the Transform component parses them, feeds every test; hand-computed
z-scores and vocabulary indices check the transform, a fresh Python process
checks that the export serves raw tf.Examples, and TFX's own GenericExecutor
runs `models.trainer.run_fn` by its module path.
"""
import base64
import json
import math
import os
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import tf_keras
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import metadata_io
from tfx_bsl.public import tfxio

from models import features
from models import model as model_lib
from models import preprocessing

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(REPO_ROOT, "schema", "schema.pbtxt")


def _pick(kind, optional):
    return next(
        key
        for key, key_kind in features.MODEL_FEATURES.items()
        if key_kind == kind and (key in features.OPTIONAL_FEATURES) == optional
    )


# Features whose values the tests compute by hand; the rest get filler values.
REQUIRED_NUMERIC = _pick(features.NUMERIC, optional=False)
OPTIONAL_NUMERIC = _pick(features.NUMERIC, optional=True)
OPTIONAL_CATEGORICAL = _pick(features.CATEGORICAL, optional=True)

REQUIRED_NUMERIC_VALUES = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
OPTIONAL_NUMERIC_VALUES = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, None, None]
CATEGORY_VALUES = [b"rain", b"sun", b"rain", b"fog", None, None, b"rain", b"sun"]
STATION_VALUES = [b"SEA", b"PDX", b"SEA", b"SEA", b"PDX", b"SEA", b"SEA", b"PDX"]
LABELS = [0, 1, 0, 1, 1, 0, 0, 1]
NUM_ROWS = len(LABELS)


def _raw_row(index):
    """Raw features of row `index` as the curation job writes them (None = absent)."""
    row = {}
    for position, (key, kind) in enumerate(features.MODEL_FEATURES.items()):
        if kind == features.NUMERIC:
            missing = key in features.OPTIONAL_FEATURES and index >= 6
            row[key] = None if missing else float(position + (index * 7 % 5))
    row[REQUIRED_NUMERIC] = REQUIRED_NUMERIC_VALUES[index]
    row[OPTIONAL_NUMERIC] = OPTIONAL_NUMERIC_VALUES[index]
    row[OPTIONAL_CATEGORICAL] = CATEGORY_VALUES[index]
    row[features.STATION_KEY] = STATION_VALUES[index]
    row[features.LABEL_KEY] = LABELS[index]
    row[features.DATE_KEY] = f"2024-01-0{index + 1}".encode()
    row[features.MONTH_KEY] = 1
    return row


def _serialize(row):
    """A serialized tf.Example with float/bytes/int64 lists; None is left out."""
    feature = {}
    for key, value in row.items():
        if value is None:
            continue
        if isinstance(value, float):
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        elif isinstance(value, bytes):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        else:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _serving_request_row(index):
    """Row `index` as a serving client sends it: no label, date, month or optionals."""
    row = _raw_row(index)
    for key in [features.LABEL_KEY, features.DATE_KEY, features.MONTH_KEY]:
        del row[key]
    for key in features.OPTIONAL_FEATURES:
        row[key] = None
    return row


def _load_schema():
    return text_format.Parse(open(SCHEMA_PATH).read(), schema_pb2.Schema())


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """Runs preprocessing_fn as Transform does; returns paths and parsed outputs."""
    root = tmp_path_factory.mktemp("transform")
    raw_path = str(root / "raw.tfrecord")
    with tf.io.TFRecordWriter(raw_path) as writer:
        for index in range(NUM_ROWS):
            writer.write(_serialize(_raw_row(index)))

    # The same rows as ExampleGen's raw examples (what the single-process
    # Trainer and the Tuner read): one gzipped file per split.
    raw_examples_dir = root / "raw_examples"
    for split in ["train", "eval"]:
        os.makedirs(raw_examples_dir / f"Split-{split}")
        with tf.io.TFRecordWriter(str(raw_examples_dir / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz"),
                                  options="GZIP") as writer:
            for index in range(NUM_ROWS):
                writer.write(_serialize(_raw_row(index)))

    transform_dir = str(root / "transform_graph")
    examples_dir = root / "transformed_examples"
    schema = _load_schema()
    raw_tfxio = tfxio.TFExampleRecord(
        file_pattern=raw_path, schema=schema, telemetry_descriptors=["test"]
    )
    with beam.Pipeline() as pipeline:
        with tft_beam.Context(temp_dir=str(root / "tft_tmp")):
            raw_data = pipeline | raw_tfxio.BeamSource()
            (data, metadata), transform_fn = (
                raw_data,
                raw_tfxio.TensorAdapterConfig(),
            ) | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn)
            coder = tft.coders.ExampleProtoCoder(metadata.schema)
            for split in ["train", "eval"]:
                _ = (
                    data
                    | f"Encode{split}" >> beam.Map(coder.encode)
                    | f"Write{split}"
                    >> beam.io.WriteToTFRecord(
                        str(examples_dir / f"Split-{split}" / "transformed_examples"),
                        file_name_suffix=".gz",
                    )
                )
            _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # The Transform component also stores the raw schema beside the graph.
    metadata_io.write_metadata(
        tft.DatasetMetadata(schema),
        os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR),
    )

    tf_transform_output = tft.TFTransformOutput(transform_dir)
    files = tf.io.gfile.glob(str(examples_dir / "Split-train" / "*"))
    serialized = list(tf.data.TFRecordDataset(files, compression_type="GZIP"))
    outputs = tf.io.parse_example(
        tf.stack(serialized), tf_transform_output.transformed_feature_spec()
    )
    return {
        "output": tf_transform_output,
        "transform_dir": transform_dir,
        "examples_dir": str(examples_dir),
        "raw_examples_dir": str(raw_examples_dir),
        # Beam does not promise row order; tests map rows back with _row_order.
        "features": {key: value.numpy() for key, value in outputs.items()},
    }


def _row_order(outputs):
    """Raw row index of each transformed row (the required numeric is 0..7)."""
    mean = np.mean(REQUIRED_NUMERIC_VALUES)
    std = np.std(REQUIRED_NUMERIC_VALUES)
    raw = outputs[features.transformed_name(REQUIRED_NUMERIC)][:, 0] * std + mean
    return [int(round(value)) for value in raw]


def test_densify_handles_sparse_dense_and_all_missing_batches():
    all_missing = tf.SparseTensor(
        indices=tf.zeros([0, 2], tf.int64), values=tf.zeros([0]), dense_shape=[3, 0]
    )
    some = tf.SparseTensor(indices=[[1, 0]], values=[b"x"], dense_shape=[3, 1])

    assert preprocessing.densify(all_missing, 0.0).numpy().tolist() == [[0.0]] * 3
    assert preprocessing.densify(some, "").numpy().tolist() == [[b""], [b"x"], [b""]]
    assert preprocessing.densify(tf.constant([1, 2]), 0).shape == (2, 1)
    assert preprocessing.densify(tf.constant([[1], [2]]), 0).shape == (2, 1)


def test_transformed_schema_is_dense_and_complete(transformed):
    spec = transformed["output"].transformed_feature_spec()
    expected = {features.transformed_name(key) for key in features.MODEL_FEATURES}
    expected.add(model_lib.TRANSFORMED_LABEL_KEY)

    assert set(spec) == expected
    for key, feature_spec in spec.items():
        assert isinstance(feature_spec, tf.io.FixedLenFeature), key
        assert list(feature_spec.shape) == [1], key


def test_numerics_are_z_scores_with_missing_imputed_to_zero(transformed):
    outputs = transformed["features"]
    order = _row_order(outputs)
    assert sorted(order) == list(range(NUM_ROWS))

    required = outputs[features.transformed_name(REQUIRED_NUMERIC)][:, 0]
    # Values 0..7: mean 3.5, population variance 5.25.
    expected = [(REQUIRED_NUMERIC_VALUES[i] - 3.5) / math.sqrt(5.25) for i in order]
    np.testing.assert_allclose(required, expected, rtol=1e-5)
    assert abs(required.mean()) < 1e-6
    assert required[order.index(0)] < 0  # a zero is a value, not a missing one

    optional = outputs[features.transformed_name(OPTIONAL_NUMERIC)][:, 0]
    # Present values 0, 2, ..., 10: mean 5, population variance 70 / 6.
    for position, index in enumerate(order):
        raw = OPTIONAL_NUMERIC_VALUES[index]
        if raw is None:
            assert optional[position] == 0.0  # the mean, imputed
        else:
            assert optional[position] == pytest.approx(
                (raw - 5.0) / math.sqrt(70 / 6), rel=1e-5
            )
    for key, kind in features.MODEL_FEATURES.items():
        if kind == features.NUMERIC:
            values = outputs[features.transformed_name(key)]
            assert values.dtype == np.float32
            assert np.all(np.abs(values) <= preprocessing.Z_SCORE_CLIP)


def test_categoricals_are_vocabulary_indices_with_missing_as_empty(transformed):
    tf_transform_output = transformed["output"]
    outputs = transformed["features"]
    order = _row_order(outputs)

    vocabulary = tf_transform_output.vocabulary_by_name(OPTIONAL_CATEGORICAL)
    assert vocabulary[0] == b"rain"  # most frequent first
    # tf.Transform keeps empty strings out of vocabularies: a missing category
    # takes the (single) OOV index, right after the vocabulary.
    assert set(vocabulary) == {b"rain", b"sun", b"fog"}
    assert features.OOV_BUCKETS[OPTIONAL_CATEGORICAL] == 1
    indices = outputs[features.transformed_name(OPTIONAL_CATEGORICAL)][:, 0]
    for position, index in enumerate(order):
        raw = CATEGORY_VALUES[index]
        expected = len(vocabulary) if raw is None else vocabulary.index(raw)
        assert indices[position] == expected

    stations = tf_transform_output.vocabulary_by_name(features.STATION_KEY)
    assert stations == [b"SEA", b"PDX"]
    station_indices = outputs[features.transformed_name(features.STATION_KEY)][:, 0]
    assert [int(i) for i in station_indices] == [
        stations.index(STATION_VALUES[index]) for index in order
    ]

    # Vocabulary plus the OOV buckets, as the embedding layers size themselves.
    for key, vocab in [(OPTIONAL_CATEGORICAL, vocabulary), (features.STATION_KEY, stations)]:
        assert tf_transform_output.num_buckets_for_transformed_feature(
            features.transformed_name(key)
        ) == len(vocab) + features.OOV_BUCKETS[key]


def test_label_passes_through_as_int64(transformed):
    outputs = transformed["features"]
    labels = outputs[model_lib.TRANSFORMED_LABEL_KEY]
    assert labels.dtype == np.int64
    assert labels[:, 0].tolist() == [LABELS[i] for i in _row_order(outputs)]


def test_hparams_from_config_keeps_defaults_and_converts_types():
    hparams = model_lib.HParams.from_config({"hidden_units": [8, 4], "batch_size": 16.0})
    assert hparams == model_lib.HParams(hidden_units=(8, 4), batch_size=16)
    assert model_lib.HParams.from_config(None) == model_lib.HParams()
    with pytest.raises(ValueError, match="hidden_units"):
        model_lib.HParams.from_config({"hidden_units": []})


def _training_dataset(outputs, batch_size):
    features_only = dict(outputs)
    label = features_only.pop(model_lib.TRANSFORMED_LABEL_KEY)
    return tf.data.Dataset.from_tensor_slices((features_only, label)).batch(batch_size).repeat()


@pytest.fixture(scope="module")
def trained_model(transformed):
    tf_keras.utils.set_random_seed(0)
    hparams = model_lib.HParams(learning_rate=0.05, hidden_units=(8,), batch_size=NUM_ROWS)
    model = model_lib.build_model(transformed["output"], hparams)
    dataset = _training_dataset(transformed["features"], hparams.batch_size)
    before = [weights.copy() for weights in model.get_weights()]
    first_loss = model.evaluate(dataset, steps=1, verbose=0, return_dict=True)["loss"]
    model_lib.train_model(model, dataset, dataset, train_steps=20, eval_steps=1)
    last_loss = model.evaluate(dataset, steps=1, verbose=0, return_dict=True)["loss"]
    return {"model": model, "before": before, "losses": (first_loss, last_loss)}


def test_model_reads_transformed_features_and_learns(trained_model):
    model = trained_model["model"]
    assert set(model.input_names) == set(model_lib.model_input_names())
    assert model.output_shape == (None, 1)
    assert "auc" in model.metrics_names

    first_loss, last_loss = trained_model["losses"]
    assert last_loss < first_loss
    changed = [
        not np.array_equal(old, new)
        for old, new in zip(trained_model["before"], model.get_weights())
    ]
    assert all(changed)


def test_training_prints_one_line_per_epoch_not_per_step(transformed, capsys):
    hparams = model_lib.HParams(learning_rate=0.05, hidden_units=(8,), batch_size=16,
                                steps_per_execution=4)
    model = model_lib.build_model(transformed["output"], hparams)
    dataset = _training_dataset(transformed["features"], hparams.batch_size)
    history = model_lib.train_model(model, dataset, dataset, train_steps=10, eval_steps=3)
    out = capsys.readouterr().out
    assert "ETA" not in out and "/10 [" not in out  # no progress bar
    assert [line for line in out.splitlines() if "loss:" in line] and len(out.splitlines()) <= 3
    assert set(history.history) >= {"loss", "auc", "val_loss", "val_auc"}
    # steps_per_execution does not change how many batches were trained on.
    assert int(model.optimizer.iterations.numpy()) == 10


def test_steps_per_execution_trains_the_same_weights_as_one_step_at_a_time(transformed):
    def train(steps_per_execution):
        tf_keras.utils.set_random_seed(0)
        hparams = model_lib.HParams(learning_rate=0.05, hidden_units=(8,), batch_size=16,
                                    steps_per_execution=steps_per_execution)
        model = model_lib.build_model(transformed["output"], hparams)
        dataset = _training_dataset(transformed["features"], hparams.batch_size)
        model_lib.train_model(model, dataset, dataset, train_steps=7, eval_steps=2, verbose=0)
        return model.get_weights()

    for one, many in zip(train(1), train(5)):
        np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="steps_per_execution"):
        model_lib.HParams(steps_per_execution=0)


def test_library_code_is_not_autograph_converted():
    from tensorflow.python.autograph.impl import conversion
    from tf_keras.src.engine import training

    from models.tracing import skip_library_conversion
    import tensorflow_transform.mappers as tft_mappers

    skip_library_conversion()
    skip_library_conversion()  # idempotent
    assert conversion.is_allowlisted(training.Model.train_step)
    assert conversion.is_allowlisted(tft_mappers.scale_to_z_score)
    assert not conversion.is_allowlisted(preprocessing.preprocessing_fn)  # ours is converted
    from tensorflow.python.autograph.core import config

    prefixes = [getattr(rule, "_prefix", None) for rule in config.CONVERSION_RULES]
    assert prefixes.count("tf_keras") == 1


_SERVE_IN_FRESH_PROCESS = """
import base64, json, sys
import tensorflow as tf

model_dir, requests_file = sys.argv[1:]
requests = json.load(open(requests_file))
decode = lambda key: tf.constant([base64.b64decode(e) for e in requests[key]])
loaded = tf.saved_model.load(model_dir)
serve = loaded.signatures["serving_default"]
transform = loaded.signatures["transform_features"]
result = {
    "serving_inputs": {k: [v.dtype.name, v.shape.as_list()]
                       for k, v in serve.structured_input_signature[1].items()},
    "serving": {k: v.numpy().tolist() for k, v in serve(examples=decode("serving")).items()},
    "transform": {k: v.numpy().tolist()
                  for k, v in transform(examples=decode("transform")).items()},
}
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def exported(transformed, trained_model, tmp_path_factory):
    export_dir = str(tmp_path_factory.mktemp("export") / "serving_model")
    model_lib.export_serving_model(trained_model["model"], transformed["output"], export_dir)
    return export_dir


def test_export_serves_raw_examples_in_a_fresh_process(
    exported, transformed, trained_model, tmp_path
):
    full = _raw_row(0)
    without_optionals = _serving_request_row(6)
    requests = {
        "serving": [_serialize(full), _serialize(without_optionals)],
        # transform_features parses every raw feature, label included.
        "transform": [_serialize(_raw_row(1)), _serialize(_raw_row(7))],
    }
    requests_file = tmp_path / "requests.json"
    requests_file.write_text(
        json.dumps({k: [base64.b64encode(e).decode() for e in v] for k, v in requests.items()})
    )
    completed = subprocess.run(
        [sys.executable, "-c", _SERVE_IN_FRESH_PROCESS, exported, str(requests_file)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),  # the repo's modules are not needed to serve
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.split("RESULT ", 1)[1])

    assert result["serving_inputs"] == {model_lib.SERVING_INPUT_KEY: ["string", [None]]}
    assert list(result["serving"]) == [model_lib.SERVING_OUTPUT_KEY]
    probabilities = np.array(result["serving"][model_lib.SERVING_OUTPUT_KEY])
    assert probabilities.shape == (2, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))

    # The served probability is the trained model's on the transformed row.
    transformed_full = transformed["output"].transform_raw_features(
        tf.io.parse_example(
            tf.constant([requests["serving"][0]]),
            model_lib.serving_feature_spec(transformed["output"]),
        )
    )
    expected = trained_model["model"](
        {name: transformed_full[name] for name in model_lib.model_input_names()}
    )
    assert probabilities[0, 0] == pytest.approx(float(expected[0, 0]), abs=1e-5)

    transform = result["transform"]
    assert set(transform) == set(transformed["output"].transformed_feature_spec())
    assert transform[model_lib.TRANSFORMED_LABEL_KEY] == [[LABELS[1]], [LABELS[7]]]
    # Row 7 lacks its lags: imputed with the mean, i.e. 0 after scaling.
    assert transform[features.transformed_name(OPTIONAL_NUMERIC)][1] == [0.0]


def test_run_fn_trains_and_exports_through_the_tfx_trainer_executor(transformed, tmp_path):
    from tfx.components.trainer import executor as trainer_executor
    from tfx.proto import trainer_pb2
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import json_utils, proto_utils

    examples = standard_artifacts.Examples()
    examples.uri = transformed["raw_examples_dir"]
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    transform_graph = standard_artifacts.TransformGraph()
    transform_graph.uri = transformed["transform_dir"]
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    model_run = standard_artifacts.ModelRun()
    model_run.uri = str(tmp_path / "model_run")
    exec_properties = {
        "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=4)),
        "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(num_steps=2)),
        "custom_config": json_utils.dumps({"batch_size": 4, "hidden_units": [4]}),
        "run_fn": "models.trainer.run_fn",
    }

    trainer_executor.GenericExecutor().Do(
        {"examples": [examples], "transform_graph": [transform_graph]},
        {"model": [model], "model_run": [model_run]},
        exec_properties,
    )

    serving_dir = os.path.join(model.uri, "Format-Serving")
    assert tf.io.gfile.exists(os.path.join(serving_dir, "saved_model.pb"))
    event_files = tf.io.gfile.glob(os.path.join(model_run.uri, "*", "events.out.tfevents.*"))
    assert event_files, "no TensorBoard logs under model_run"
    loaded = tf.saved_model.load(serving_dir)
    request = tf.constant([_serialize(_serving_request_row(index)) for index in range(3)])
    probabilities = loaded.signatures["serving_default"](examples=request)[
        model_lib.SERVING_OUTPUT_KEY
    ].numpy()
    assert probabilities.shape == (3, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
