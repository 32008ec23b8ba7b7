"""One training process: `python -m components.distributed_training.worker --spec SPEC.json`.

With `--strategy multi_worker` (the default here) the process creates
`tf.distribute.MultiWorkerMirroredStrategy` from `TF_CONFIG` FIRST, before any
other TensorFlow op (the strategy must configure the collective runtime of
a fresh process), then trains the same model with the same hyper-parameters
as the single-process Trainer (`models.model.build_model`, built inside
`strategy.scope()`; `models.model.train_model`; `models.model.export_serving_model`).

Data: each worker reads the split's transformed examples (TFRecord files in
sorted order, parsed with the Transform output's transformed feature spec)
and keeps every N-th example, starting at its shard index: element
sharding, what `AutoShardPolicy.DATA` does, written out in the input
function (tf.distribute's auto-sharding set OFF) because TFX writes one file
per split (FILE sharding would leave workers without a file) and so that the
evidence counts exactly the examples of this worker's shard; with DATA
auto-sharding every worker would read and count the whole file and drop
what is not its own after the batch. The worker batches its shard with
the global batch size (hparams.batch_size x replicas in sync, i.e. x workers
with one CPU replica each); tf.distribute splits each such batch into
per-replica batches of hparams.batch_size, used on consecutive steps. So one
global step trains on batch_size examples from each worker's shard, and
the gradients are averaged across workers by all-reduce.

Export: the chief (the `chief` task, or worker 0 without one) writes the one
SavedModel to the spec's serving_model_dir; every other worker saves to a
temporary directory (saving may run collectives, so all workers save) that
is deleted at once.

Evidence: `<model_run_dir>/workers/<task>.evidence.json` with the steps this
process took (its optimizer's iteration counter), how many examples its
input pipeline batched for training, the fingerprints (64-bit hashes of the
serialized records) of the distinct examples it batched and of its whole
shard, and the Keras metrics.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence

from components.distributed_training import spec as spec_lib
from components.distributed_training import tf_config as tf_config_lib

FINGERPRINT_BUCKETS = 2 ** 62
SHUFFLE_BUFFER = 10_000  # as tfx_bsl's TensorFlowDatasetOptions default


def create_strategy(kind: str, collective_timeout_seconds: float):
    """The tf.distribute strategy of `kind` (see spec.STRATEGIES)."""
    import tensorflow as tf

    if kind == "multi_worker":
        # timeout_seconds None = no per-collective timeout (see spec.py for why
        # that is the default); peers failing are caught by TF's heartbeats.
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout_seconds or None)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "single":
        return tf.distribute.get_strategy()
    raise ValueError(f"Unknown strategy '{kind}'; choose one of {spec_lib.STRATEGIES}.")


def _files(patterns: Sequence[str]) -> List[str]:
    import tensorflow as tf

    files = sorted({path for pattern in patterns for path in tf.io.gfile.glob(pattern)})
    if not files:
        raise FileNotFoundError(f"No transformed examples match {list(patterns)}.")
    return files


def fingerprint(records):
    """64-bit-ish hash of each serialized record (Fingerprint64 mod 2**62)."""
    import tensorflow as tf

    return tf.strings.to_hash_bucket_fast(records, FINGERPRINT_BUCKETS)


def _now():
    import numpy as np

    return np.float64(time.time())


class ExampleRecorder:
    """Counts the examples batched for training, times them, remembers their fingerprints.

    Prints a progress line to the log every `log_every` input batches. The
    wall-clock times of the first and the latest input batch give the
    steady-state rate (`steady_examples_per_second`), without the tracing
    and set-up that `model.fit`'s total time includes. Fingerprints are kept
    only with `fingerprints=True` (a hash-table insert per batch).
    """

    def __init__(self, label: str = "", log_every: int = 20, fingerprints: bool = True):
        import tensorflow as tf

        self.label, self.log_every, self.fingerprints = label, log_every, fingerprints
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="examples_batched")
        self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches_read")
        self.first_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="first_batch_count")
        self.first_time = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="first_batch_time")
        self.last_time = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="last_batch_time")
        self.seen = tf.lookup.experimental.MutableHashTable(
            key_dtype=tf.int64, value_dtype=tf.int64, default_value=0, name="examples_seen")

    def record(self, records):
        import tensorflow as tf

        count = self.count.assign_add(tf.size(records, out_type=tf.int64))
        batches = self.batches.assign_add(1)
        # tf.timestamp() is refused under op determinism; a host clock read is not.
        now = tf.numpy_function(_now, [], tf.float64, stateful=True)
        updates = [count, batches, self.last_time.assign(now)]
        with tf.control_dependencies(updates):
            updates.append(tf.cond(tf.equal(batches, 1),
                                   lambda: tf.group(self.first_time.assign(now),
                                                    self.first_count.assign(count)),
                                   tf.no_op))
        if self.fingerprints:
            keys = fingerprint(records)
            updates.append(self.seen.insert(keys, tf.ones_like(keys)))
        with tf.control_dependencies(updates):
            logged = tf.cond(
                tf.equal(batches % self.log_every, 0),
                lambda: tf.print(self.label, "input batches read:", batches, "examples:", count,
                                 output_stream=sys.stdout),
                tf.no_op)
        with tf.control_dependencies([logged]):
            return tf.identity(records)

    def steady_rate(self) -> "tuple[float, float]":
        """(examples/s, seconds) from the end of the first input batch to the latest."""
        seconds = float(self.last_time.numpy() - self.first_time.numpy())
        examples = int(self.count.numpy() - self.first_count.numpy())
        return (examples / seconds if seconds > 0 else 0.0), seconds

    def seen_fingerprints(self):
        keys, _ = self.seen.export()
        return sorted(int(k) for k in keys.numpy())


def input_dataset(patterns: Sequence[str], feature_spec: Dict[str, Any], num_shards: int,
                  shard_index: int, batch_size: int, seed: int,
                  recorder: Optional[ExampleRecorder] = None):
    """Repeating (features, label) batches of this worker's shard (see module doc)."""
    import tensorflow as tf

    from models import model as model_lib

    dataset = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
    dataset = dataset.shard(num_shards, shard_index)
    dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True)
    if recorder is not None:
        dataset = dataset.map(recorder.record)

    def parse(records):
        parsed = tf.io.parse_example(records, feature_spec)
        label = parsed.pop(model_lib.TRANSFORMED_LABEL_KEY)
        return parsed, label

    dataset = dataset.map(parse)
    # Sharded above already: tf.distribute must not shard again, only split
    # each batch into per-replica batches (all of them used by this worker).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def shard_fingerprints(patterns: Sequence[str], num_shards: int, shard_index: int):
    """Fingerprints of every example of one shard, in file order (numpy int64)."""
    import numpy as np
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
    dataset = dataset.shard(num_shards, shard_index).batch(4096).map(fingerprint)
    parts = [batch.numpy() for batch in dataset]
    return np.concatenate(parts) if parts else np.zeros([0], np.int64)


def _history_metrics(history) -> Dict[str, float]:
    return {name: float(values[-1]) for name, values in history.history.items() if values}


def train_with_strategy(strategy, spec: spec_lib.TrainingSpec, tf_config: Dict[str, Any],
                        label: str) -> Dict[str, Any]:
    """Trains and exports under `strategy`; returns (and writes) this process's evidence."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras

    from models import model as model_lib

    from models.tracing import skip_library_conversion

    started = time.time()
    # As models/trainer.py: Keras and tf.Transform are traced without AutoGraph.
    skip_library_conversion()
    hparams = model_lib.HParams.from_config(spec.hparams)
    # As models.trainer.make_deterministic, before any dataset or layer exists.
    tf_keras.utils.set_random_seed(hparams.seed)
    tf.config.experimental.enable_op_determinism()

    tft_output = tft.TFTransformOutput(spec.transform_graph_path)
    feature_spec = tft_output.transformed_feature_spec()
    chief = tf_config_lib.is_chief(tf_config)
    replicas = strategy.num_replicas_in_sync
    global_batch = hparams.batch_size * replicas
    num_shards, shard_index = tf_config_lib.shard_of(tf_config)
    recorder = ExampleRecorder(label, fingerprints=spec.record_examples)
    train_dataset = input_dataset(spec.train_files, feature_spec, num_shards, shard_index,
                                  global_batch, hparams.seed, recorder)
    eval_dataset = input_dataset(spec.eval_files, feature_spec, num_shards, shard_index,
                                 global_batch, hparams.seed)
    with strategy.scope():
        model = model_lib.build_model(tft_output, hparams)

    log_dir = spec.model_run_dir if (chief and spec.tensorboard) else None
    scratch = tempfile.mkdtemp(prefix=f"dist-{label}-")
    if spec.tensorboard and not chief:
        log_dir = os.path.join(scratch, "logs")  # each worker writes its own; only the chief's stays
    logging.info("%s: starting fit, %d steps, global batch %d (%d per replica x %d replicas)",
                 label, spec.train_steps, global_batch, hparams.batch_size, replicas)
    fit_started = time.time()
    history = model_lib.train_model(model, train_dataset, eval_dataset,
                                    train_steps=spec.train_steps, eval_steps=spec.eval_steps,
                                    log_dir=log_dir)
    fit_seconds = time.time() - fit_started
    steps_taken = int(model.optimizer.iterations.numpy())
    logging.info("%s: fit done, %d steps in %.1f s", label, steps_taken, fit_seconds)

    export_dir = spec.serving_model_dir if chief else os.path.join(scratch, "export")
    model_lib.export_serving_model(model, tft_output, export_dir)
    shutil.rmtree(scratch, ignore_errors=True)  # non-chief export and logs
    logging.info("%s: exported to %s%s", label, export_dir, "" if chief else " (deleted)")

    evidence: Dict[str, Any] = {
        "task": label, "chief": chief, "pid": os.getpid(),
        "strategy": type(strategy).__name__, "replicas_in_sync": replicas,
        "per_replica_batch_size": hparams.batch_size, "global_batch_size": global_batch,
        "num_shards": num_shards, "shard_index": shard_index,
        "steps_taken": steps_taken, "examples_trained": steps_taken * global_batch // max(num_shards, 1),
        "fit_seconds": fit_seconds, "seconds": time.time() - started,
        "metrics": _history_metrics(history),
        "exported_to": export_dir if chief else None,
    }
    steady_rate, steady_seconds = recorder.steady_rate()
    evidence.update({
        "examples_batched": int(recorder.count.numpy()),
        "input_batches": int(recorder.batches.numpy()),
        "steady_examples_per_second": steady_rate, "steady_seconds": steady_seconds,
    })
    if spec.record_examples:
        shard = shard_fingerprints(spec.train_files, num_shards, shard_index)
        seen = recorder.seen_fingerprints()
        evidence.update({
            "distinct_examples_batched": len(seen),
            "shard_examples": int(shard.size),
            "shard_fingerprint_sum": int(shard.astype("uint64").sum()),  # wraps mod 2**64
        })
        if len(shard) <= spec_lib.MAX_LISTED_FINGERPRINTS:
            evidence["shard_fingerprints"] = sorted(int(v) for v in shard)
            evidence["seen_fingerprints"] = seen
    write_evidence(spec.evidence_path(label), evidence)
    return evidence


def write_evidence(path: str, evidence: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w") as evidence_file:
        json.dump(evidence, evidence_file)
    os.replace(partial, path)


def parse_flags(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", required=True, help="TrainingSpec JSON file")
    parser.add_argument("--strategy", default="multi_worker", choices=spec_lib.STRATEGIES)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    flags = parse_flags(argv)
    spec = spec_lib.TrainingSpec.read(flags.spec)
    tf_config = tf_config_lib.parse(os.environ.get("TF_CONFIG"))
    label = tf_config_lib.task_label(tf_config)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s {label} %(levelname)s %(message)s")
    try:
        # The strategy first: MultiWorkerMirroredStrategy must set up the
        # collective runtime before TensorFlow runs anything else.
        strategy = create_strategy(flags.strategy, spec.collective_timeout_seconds)
        logging.info("%s: %s with %d replicas in sync, TF_CONFIG %s", label,
                     type(strategy).__name__, strategy.num_replicas_in_sync, json.dumps(tf_config))
        train_with_strategy(strategy, spec, tf_config, label)
    except BaseException:  # noqa: B902 - logged for the launcher's error message
        logging.error("%s failed:\n%s", label, traceback.format_exc())
        sys.stdout.flush()
        return 1
    logging.info("%s: done", label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
