"""Transform-like inputs for distributed-training tests and the benchmark.

Two sources, both laid out like TFX's Transform output (a transform graph
directory and `Split-train/`, `Split-eval/` each holding ONE gzipped TFRecord
file of transformed tf.Examples, the usual layout for data of this size):

* `build_from_parquet`: real curated rows (e.g. the bundled Seattle data after
  Spark curation) -> tf.Examples with the Parquet ExampleGen's converter ->
  a 2:1 train/eval split hashed on the example bytes -> `preprocessing_fn`
  analysed on train and applied to both splits with tf.Transform's Beam API,
  exactly the library calls the Transform component makes. The raw eval
  examples are kept too (`raw/Split-eval/`), so a test can send them to the
  exported serving signature.
* `write_synthetic_transformed`: N rows drawn directly in the *transformed*
  space of an existing transform graph (z-scores ~ N(0, 1), categorical
  indices within each vocabulary, a label that depends on a few features),
  for throughput measurements at 1M rows without running Spark and
  tf.Transform over them. The model's work per example is the same.
"""
import hashlib
import os
from typing import Dict, Iterable, List, Optional

import numpy as np

SPLITS = ("train", "eval")
LABEL_WEIGHTS_SEED = 12345
EXAMPLES_FILE = "transformed_examples-00000-of-00001.gz"
RAW_FILE = "raw_examples-00000-of-00001.gz"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_PATH = os.path.join(REPO_ROOT, "schema", "schema.pbtxt")


def split_of(serialized: bytes) -> str:
    """'eval' for a third of the examples, by a hash of their bytes; else 'train'."""
    return "eval" if int(hashlib.sha256(serialized).hexdigest(), 16) % 3 == 0 else "train"


def curate_bundled_seattle(output_dir: str, master: str = "local[1]") -> str:
    """Spark-curates the bundled Seattle CSV into `output_dir`; returns the span's glob."""
    from vega_datasets import local_data

    from components.spark_curation.job import run_curation

    result = run_curation(local_data.seattle_weather.filepath, output_dir,
                          station="seattle", master=master)
    return os.path.join(result.span_dir, "*.parquet")


def _write_tfrecords(path: str, records: Iterable[bytes]) -> int:
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    count = 0
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)
            count += 1
    return count


def build_from_parquet(parquet_pattern: str, output_dir: str) -> Dict[str, str]:
    """Runs the real preprocessing over curated Parquet rows (see module doc).

    Returns:
      {"transform_dir", "examples_dir" (transformed, for the distributed
       workers), "train_pattern", "eval_pattern", "raw_examples_dir" (raw,
       for the single-process Trainer), "raw_eval_pattern"} (paths under
       `output_dir`).
    """
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import metadata_io
    from tfx_bsl.public import tfxio

    from components.parquet_example_gen.conversion import parquet_to_serialized_examples
    from models import preprocessing

    raw = {split: [] for split in SPLITS}
    for record in parquet_to_serialized_examples(parquet_pattern):
        raw[split_of(record)].append(record)
    raw_patterns = {}
    for split in SPLITS:
        path = os.path.join(output_dir, "raw", f"Split-{split}", RAW_FILE)
        _write_tfrecords(path, raw[split])
        raw_patterns[split] = path

    with open(SCHEMA_PATH) as schema_file:
        schema = text_format.Parse(schema_file.read(), schema_pb2.Schema())
    transform_dir = os.path.join(output_dir, "transform_graph")
    examples_dir = os.path.join(output_dir, "transformed_examples")
    sources = {split: tfxio.TFExampleRecord(file_pattern=raw_patterns[split], schema=schema,
                                             telemetry_descriptors=["distributed_training"])
               for split in SPLITS}
    with beam.Pipeline() as pipeline:
        with tft_beam.Context(temp_dir=os.path.join(output_dir, "tft_tmp")):
            config = sources["train"].TensorAdapterConfig()
            train = pipeline | "ReadTrain" >> sources["train"].BeamSource()
            transform_fn = (train, config) | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn)
            for split in SPLITS:
                data = train if split == "train" else pipeline | "ReadEval" >> sources[split].BeamSource()
                transformed, metadata = ((data, config), transform_fn) | f"Transform{split}" >> tft_beam.TransformDataset()
                coder = tft.coders.ExampleProtoCoder(metadata.schema)
                _ = (transformed
                     | f"Encode{split}" >> beam.Map(coder.encode)
                     | f"Write{split}" >> beam.io.WriteToTFRecord(
                         os.path.join(examples_dir, f"Split-{split}", "transformed_examples"),
                         file_name_suffix=".gz", num_shards=1))
            _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # The Transform component also stores the raw schema beside the graph.
    metadata_io.write_metadata(tft.DatasetMetadata(schema),
                               os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return {
        "transform_dir": transform_dir,
        "examples_dir": examples_dir,
        # ExampleGen's layout: what the single-process Trainer reads.
        "raw_examples_dir": os.path.join(output_dir, "raw"),
        "train_pattern": os.path.join(examples_dir, "Split-train", "*"),
        "eval_pattern": os.path.join(examples_dir, "Split-eval", "*"),
        "raw_eval_pattern": raw_patterns["eval"],
    }


def write_synthetic_transformed(transform_dir: str, rows: int, path: str, seed: int = 0,
                                chunk_rows: int = 100_000) -> int:
    """Writes `rows` transformed-like tf.Examples (one gzipped TFRecord file).

    Every feature of the transform graph's transformed spec gets a value of
    its dtype and shape [1]: floats ~ N(0, 1), int64 features uniform over
    their vocabulary (with OOV buckets), the label Bernoulli(sigmoid(score))
    with the score linear in the first numeric features, so training learns.
    """
    import tensorflow as tf
    import tensorflow_transform as tft

    from models import model as model_lib

    output = tft.TFTransformOutput(transform_dir)
    spec = output.transformed_feature_spec()
    label_key = model_lib.TRANSFORMED_LABEL_KEY
    rng = np.random.default_rng(seed)
    names = sorted(spec)
    floats = [n for n in names if spec[n].dtype == tf.float32]
    ints = [n for n in names if spec[n].dtype == tf.int64 and n != label_key]
    buckets = {n: output.num_buckets_for_transformed_feature(n) for n in ints}
    # The label's dependence on the features is fixed (not drawn from `seed`),
    # so train and eval sets written with different seeds agree on it.
    weights = np.random.default_rng(LABEL_WEIGHTS_SEED).normal(size=min(6, len(floats)))

    def chunks():
        left = rows
        while left > 0:
            n = min(chunk_rows, left)
            left -= n
            values = {name: rng.normal(size=n).astype(np.float32) for name in floats}
            values.update({name: rng.integers(0, buckets[name], size=n) for name in ints})
            score = sum(w * values[name] for w, name in zip(weights, floats))
            values[label_key] = (rng.random(n) < 1 / (1 + np.exp(-score))).astype(np.int64)
            yield from _encode(values, n)

    return _write_tfrecords(path, chunks())


def _encode(values: Dict[str, np.ndarray], n: int) -> List[bytes]:
    """Serialized tf.Examples of equal-length columns, via the ExampleGen's fast encoder."""
    import pyarrow as pa

    from components.parquet_example_gen.conversion import record_batch_to_examples

    batch = pa.RecordBatch.from_arrays([pa.array(values[name]) for name in values],
                                       names=list(values))
    return record_batch_to_examples(batch)


def count_records(pattern: str) -> int:
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(pattern))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def newest(pattern: str) -> Optional[str]:
    import glob

    matches = sorted(glob.glob(pattern))
    return matches[-1] if matches else None
