"""Distributed training for real: two local MultiWorkerMirroredStrategy workers on the bundled data.

The module fixture Spark-curates the bundled Seattle data and runs the
project's preprocessing_fn over it with tf.Transform (as the Transform
component does; `example_data.build_from_parquet`), about two minutes. Then:

* two worker processes train 300 global steps; their evidence files show
  that both took the steps, on disjoint shards that together are the whole
  train split, and that only the chief exported (the other's temporary
  export is gone);
* the exported SavedModel serves raw tf.Examples and its eval AUC is
  within 0.03 of the single-process Trainer (`models.trainer.run_fn` run by
  TFX's own Trainer executor) on the same data, hyper-parameters and steps;
* a worker killed mid-training fails the launcher at once with an error
  naming it; a frozen one (SIGSTOP) makes TF's coordination service abort
  the survivor's collectives (missed heartbeats), which the launcher
  reports, within a bounded time instead of hanging.
"""
import glob
import json
import os
import signal
import time
import types
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from components import distributed_training as dt
from components.distributed_training import example_data
from components.distributed_training import launcher
from components.distributed_training import spec as spec_lib
from models import features
from models import model as model_lib
from tests.trainer_runs import run_trainer_executor

pytestmark = pytest.mark.slow

TRAIN_STEPS = 300
EVAL_STEPS = 5
HPARAMS = {"seed": 0}
AUC_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_data")
    pattern = example_data.curate_bundled_seattle(str(root / "curation"))
    return example_data.build_from_parquet(pattern, str(root / "bundled"))


def _fn_args(data, root, train_steps=TRAIN_STEPS):
    return types.SimpleNamespace(
        train_files=[data["train_pattern"]], eval_files=[data["eval_pattern"]],
        transform_graph_path=data["transform_dir"], serving_model_dir=str(root / "serving"),
        model_run_dir=str(root / "model_run"), train_steps=train_steps, eval_steps=EVAL_STEPS)


@pytest.fixture(scope="module")
def two_workers(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("two_workers")
    worker_tmp = root / "worker_tmp"
    worker_tmp.mkdir()
    fn_args = _fn_args(data, root)
    started = time.monotonic()
    with mock.patch.dict(os.environ, {"TMPDIR": str(worker_tmp)}):
        evidence = dt.train(fn_args, HPARAMS, workers=2, strategy="multi_worker",
                            timeout_seconds=900)
    return {"evidence": evidence, "fn_args": fn_args, "worker_tmp": str(worker_tmp),
            "seconds": time.monotonic() - started}


@pytest.fixture(scope="module")
def single_trainer(data, tmp_path_factory):
    """The product's single-process path: models.trainer.run_fn in TFX's Trainer executor."""
    serving_dir, _ = run_trainer_executor(data["raw_examples_dir"], data["transform_dir"],
                                          tmp_path_factory.mktemp("single"),
                                          TRAIN_STEPS, EVAL_STEPS, HPARAMS)
    return serving_dir


def _records(pattern):
    files = sorted(tf.io.gfile.glob(pattern))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _auc(labels, scores):
    """Exact ROC AUC (Mann-Whitney), ties counted half."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return (greater + 0.5 * ties) / (len(positives) * len(negatives))


def _serve(model_dir, raw_records):
    loaded = tf.saved_model.load(model_dir)
    output = loaded.signatures[model_lib.SERVING_SIGNATURE](
        **{model_lib.SERVING_INPUT_KEY: tf.constant(raw_records)})
    return loaded, output[model_lib.SERVING_OUTPUT_KEY].numpy()


def test_both_workers_took_every_step_on_disjoint_shards_of_the_train_split(two_workers, data):
    evidence = two_workers["evidence"]
    assert [e["task"] for e in evidence] == ["worker-0", "worker-1"]
    assert [e["chief"] for e in evidence] == [True, False]
    assert len({e["pid"] for e in evidence}) == 2
    for index, worker in enumerate(evidence):
        assert worker["strategy"] == "CollectiveAllReduceStrategy"
        assert worker["replicas_in_sync"] == 2 and worker["global_batch_size"] == 128
        assert (worker["num_shards"], worker["shard_index"]) == (2, index)
        assert worker["steps_taken"] == TRAIN_STEPS
        # Its input pipeline batched at least one per-replica batch per step.
        assert worker["examples_batched"] >= TRAIN_STEPS * 64
        with open(two_workers["fn_args"].model_run_dir + f"/workers/worker-{index}.log") as log:
            text = log.read()
        assert f"fit done, {TRAIN_STEPS} steps" in text and "input batches read:" in text

    # Fingerprints of the whole train split, computed here from the file.
    everything = tf.strings.to_hash_bucket_fast(_records(data["train_pattern"]), 2 ** 62).numpy()
    shards = [set(e["shard_fingerprints"]) for e in evidence]
    seen = [set(e["seen_fingerprints"]) for e in evidence]
    assert len(set(everything.tolist())) == len(everything)  # distinct records, so sets can tell
    assert shards[0].isdisjoint(shards[1])
    assert shards[0] | shards[1] == set(everything.tolist())
    assert abs(len(shards[0]) - len(shards[1])) <= 1
    for worker_seen, shard in zip(seen, shards):
        assert worker_seen and worker_seen <= shard  # trained only on its own shard...
        assert len(worker_seen) == len(shard)  # ...all of it (300 x 64 >> shard size)


def test_only_the_chief_exported_one_saved_model(two_workers):
    fn_args = two_workers["fn_args"]
    assert os.path.exists(os.path.join(fn_args.serving_model_dir, "saved_model.pb"))
    assert two_workers["evidence"][0]["exported_to"] == fn_args.serving_model_dir
    assert two_workers["evidence"][1]["exported_to"] is None
    saved = [p for root in (fn_args.model_run_dir, two_workers["worker_tmp"])
             for p in glob.glob(os.path.join(root, "**", "saved_model.pb"), recursive=True)]
    assert saved == []
    assert os.listdir(two_workers["worker_tmp"]) == []  # the non-chief's temporary export is gone
    # TensorBoard logs of the chief only.
    assert glob.glob(os.path.join(fn_args.model_run_dir, "train", "*tfevents*"))


def test_exported_model_serves_and_matches_single_worker_auc(two_workers, single_trainer, data):
    raw = _records(data["raw_eval_pattern"])
    labels = tf.io.parse_example(
        tf.constant(raw), {features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    )[features.LABEL_KEY].numpy()
    distributed, distributed_scores = _serve(two_workers["fn_args"].serving_model_dir, raw)
    single, single_scores = _serve(single_trainer, raw)

    assert distributed_scores.shape == (len(raw), 1)
    assert np.all((distributed_scores >= 0) & (distributed_scores <= 1))
    assert set(distributed.signatures) == set(single.signatures) == {
        model_lib.SERVING_SIGNATURE, model_lib.TRANSFORM_SIGNATURE}
    for name in single.signatures:
        assert (distributed.signatures[name].structured_input_signature
                == single.signatures[name].structured_input_signature)
        assert (distributed.signatures[name].structured_outputs.keys()
                == single.signatures[name].structured_outputs.keys())
    distributed_auc = _auc(labels, distributed_scores[:, 0])
    single_auc = _auc(labels, single_scores[:, 0])
    print(f"eval examples {len(raw)}: AUC 2 workers {distributed_auc:.4f}, "
          f"single process {single_auc:.4f}; 2-worker run {two_workers['seconds']:.0f} s")
    assert single_auc > 0.7  # both learned something
    assert abs(distributed_auc - single_auc) <= AUC_TOLERANCE


def _group(data, tmp_path):
    # The product's defaults: no per-collective timeout (spec.py says why).
    spec = spec_lib.TrainingSpec.from_fn_args(
        _fn_args(data, tmp_path, train_steps=1_000_000), HPARAMS, tensorboard=False)
    assert spec.collective_timeout_seconds == 0
    return launcher.WorkerGroup(spec, 2, str(tmp_path / "spec.json"), timeout_seconds=600)


def _wait_until_training(group, index, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(group.members[index].log_path) as log:
            if "input batches read: 40" in log.read():
                return
        assert all(m.process.poll() is None for m in group.members), "a worker ended early"
        time.sleep(0.5)
    raise AssertionError(f"worker {index} did not start training within {timeout} s")


def test_a_killed_worker_fails_training_with_a_clear_error_quickly(data, tmp_path):
    group = _group(data, tmp_path).start()
    _wait_until_training(group, 1)
    os.kill(group.members[1].process.pid, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(launcher.WorkerFailedError) as failure:
        group.wait()

    assert time.monotonic() - killed < 10
    assert failure.value.worker == 1
    assert "worker 1 of 2" in str(failure.value) and "killed by SIGKILL" in str(failure.value)
    assert "input batches read:" in str(failure.value)  # the tail of its log
    assert all(m.process.returncode is not None for m in group.members)


def test_a_frozen_worker_fails_the_survivor_through_tfs_heartbeats(data, tmp_path):
    group = _group(data, tmp_path).start()
    _wait_until_training(group, 1)
    os.kill(group.members[1].process.pid, signal.SIGSTOP)  # alive but silent
    frozen = time.monotonic()
    with pytest.raises(launcher.WorkerFailedError) as failure:
        group.wait()

    elapsed = time.monotonic() - frozen
    print(f"frozen worker detected after {elapsed:.0f} s:\n{failure.value}")
    assert elapsed < 120
    assert failure.value.worker == 0 and failure.value.exit_code == 1
    assert "worker 0 of 2" in str(failure.value)
    assert "heartbeat timeout" in str(failure.value)
    assert all(m.process.returncode is not None for m in group.members)  # the frozen one was killed


@pytest.mark.parametrize("strategy, name", [("single", "_DefaultDistributionStrategy"),
                                            ("mirrored", "MirroredStrategy")])
def test_in_process_strategies_train_and_export(data, tmp_path, strategy, name):
    fn_args = _fn_args(data, tmp_path, train_steps=50)
    (evidence,) = dt.train(fn_args, HPARAMS, workers=1, strategy=strategy)

    assert evidence["strategy"] == name and evidence["steps_taken"] == 50
    assert evidence["num_shards"] == 1 and evidence["chief"]
    raw = _records(data["raw_eval_pattern"])[:16]
    _, scores = _serve(fn_args.serving_model_dir, raw)
    assert scores.shape == (16, 1)
