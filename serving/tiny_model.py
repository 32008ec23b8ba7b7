"""A small real model through the real code path, for tests, the benchmark and demos.

Curated rows are computed from the bundled Seattle data with
`serving.features` (the Spark job's definitions), run through the real
`models.preprocessing.preprocessing_fn` with tf.Transform (Beam, in memory),
fed to the real `models.model.build_model`, trained for a few steps and
exported with `models.model.export_serving_model`: the same SavedModel
signatures the Trainer writes (`serving_default(examples)` ->
`rain_probability`). Only the size differs: a few hundred rows, seconds of
training. Not for real predictions.
"""
import csv
import dataclasses
import datetime
import os
from typing import Dict, List, Optional, Sequence

from serving import features as serving_features
from serving import model_dir as serving_dir
from serving.backend import serialize_row
from serving import observations as obs

SEATTLE_STATION = "seattle"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCHEMA_PATH = os.path.join(_REPO_ROOT, "schema", "schema.pbtxt")


@dataclasses.dataclass(frozen=True)
class TinyModel:
    """One exported SavedModel and what it scored on its training rows."""

    export_dir: str
    train_steps: int
    auc: float


def seattle_observations(limit: Optional[int] = None) -> List[obs.Observation]:
    """The bundled Seattle days (vega_datasets), parsed by the contract's rules."""
    from vega_datasets import local_data

    with open(local_data.seattle_weather.filepath, newline="") as f:
        days = [obs.from_text(row) for row in csv.DictReader(f)]
    return days[:limit] if limit else days


def build(
    work_dir: str,
    train_steps: Sequence[int] = (5, 60),
    rows: int = 400,
    schema_path: str = DEFAULT_SCHEMA_PATH,
) -> List[TinyModel]:
    """Trains one small model per entry of `train_steps` on one shared transform.

    Args:
      work_dir: scratch directory (created) for the transform and exports.
      train_steps: training steps of each model; different counts give
        different weights, hence different probabilities for the same row.
      rows: Seattle days to curate and train on.
      schema_path: the curated schema the Transform parses with.

    Returns:
      The exported models, in `train_steps` order.
    """
    import tf_keras

    from models import model as model_lib

    curated = serving_features.curated_rows(SEATTLE_STATION, seattle_observations(rows))
    transform_output, transformed = _transform(curated, work_dir, schema_path)
    label = transformed.pop(model_lib.TRANSFORMED_LABEL_KEY)
    results = []
    for index, steps in enumerate(train_steps):
        tf_keras.utils.set_random_seed(index)
        hparams = model_lib.HParams(learning_rate=0.01, hidden_units=(8,), batch_size=64)
        model = model_lib.build_model(transform_output, hparams)
        dataset = _dataset(transformed, label, hparams.batch_size)
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
        auc = model.evaluate(dataset, steps=4, verbose=0, return_dict=True)["auc"]
        export_dir = os.path.join(work_dir, f"export-{index}")
        model_lib.export_serving_model(model, transform_output, export_dir)
        results.append(TinyModel(export_dir, steps, float(auc)))
    return results


def publish(model: TinyModel, model_dir: str, version: Optional[int] = None) -> int:
    """Pushes `model` with the real pusher's `publish_version`; returns the version."""
    metadata = {
        "model_uri": model.export_dir,
        "pipeline_name": "tiny-model",
        "pushed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "metrics": {"candidate": {"auc": model.auc}},
        "thresholds": {},
        "blessed_against_baseline": False,
        "note": f"serving.tiny_model: {model.train_steps} training steps on Seattle days",
    }
    target = serving_dir.publish_version(model.export_dir, model_dir, metadata, version=version)
    return int(os.path.basename(target))


def _dataset(transformed, label, batch_size):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((transformed, label)).shuffle(
        1024, seed=0).batch(batch_size).repeat()


def _transform(curated: List[Dict], work_dir: str, schema_path: str):
    """Runs preprocessing_fn as the Transform component does; returns (output, arrays)."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import metadata_io
    from tfx_bsl.public import tfxio

    from models import preprocessing

    os.makedirs(work_dir, exist_ok=True)
    with open(schema_path) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    kinds = {f.name: {schema_pb2.FLOAT: "float", schema_pb2.BYTES: "bytes"}.get(f.type, "int")
             for f in schema.feature}
    raw_path = os.path.join(work_dir, "raw.tfrecord")
    with tf.io.TFRecordWriter(raw_path) as writer:
        for row in curated:
            writer.write(serialize_row(row, kinds))
    transform_dir = os.path.join(work_dir, "transform_graph")
    raw_tfxio = tfxio.TFExampleRecord(file_pattern=raw_path, schema=schema,
                                      telemetry_descriptors=["tiny_model"])
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=os.path.join(work_dir, "tmp")):
        _ = ((pipeline | raw_tfxio.BeamSource(), raw_tfxio.TensorAdapterConfig())
             | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn)
             | tft_beam.WriteTransformFn(transform_dir))
    metadata_io.write_metadata(
        tft.DatasetMetadata(schema),
        os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    output = tft.TFTransformOutput(transform_dir)
    serialized = list(tf.data.TFRecordDataset([raw_path]))
    parsed = tf.io.parse_example(tf.stack(serialized), output.raw_feature_spec())
    transformed = output.transform_raw_features(parsed)
    names = set(output.transformed_feature_spec())
    return output, {k: v for k, v in transformed.items() if k in names}


_BUILT: List[TinyModel] = []


def build_once() -> List[TinyModel]:
    """`build()` once per process into a temporary directory removed at exit.

    Test modules and the benchmark's smoke run share it, so a test session
    pays for one tf.Transform run and two short trainings.
    """
    if not _BUILT:
        import atexit
        import shutil
        import tempfile

        work_dir = tempfile.mkdtemp(prefix="tiny-model-")
        atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
        _BUILT.extend(build(work_dir))
    return list(_BUILT)
