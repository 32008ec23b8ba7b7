"""Seeded training is repeatable (issue #12, item 6).

The real `models.trainer.run_fn`, run twice through TFX's Trainer executor
with the same seed on the same small transformed data, gives exactly the
same Keras metrics (train and validation, from its TensorBoard logs) and
exactly the same predictions from the exported SavedModels; another seed
gives different ones (so the comparison can tell). About three minutes on a
busy 2-core machine (three trainings and a tf.Transform run): marked slow.
"""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from components.evaluation_results import keras_train_metrics
from models import model as model_lib
from tests.test_models import _serialize, _serving_request_row, transformed  # noqa: F401 (fixture)
from tests.trainer_runs import run_trainer_executor


def _validation_metrics(model_run_uri):
    result = {}
    for path in sorted(glob.glob(os.path.join(model_run_uri, "validation", "*tfevents*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("epoch_"):
                    result[value.tag] = float(tf.make_ndarray(value.tensor))
    return result


def _train(transformed, root, seed):
    # 24 batches of 3 from 8 rows: many reshuffled passes over the data.
    serving_dir, model_run_uri = run_trainer_executor(
        transformed["raw_examples_dir"], transformed["transform_dir"], root, 24, 3,
        {"batch_size": 3, "hidden_units": [8, 4], "learning_rate": 0.05, "seed": seed})
    loaded = tf.saved_model.load(serving_dir)
    request = tf.constant([_serialize(_serving_request_row(index)) for index in range(8)])
    predictions = loaded.signatures["serving_default"](examples=request)[
        model_lib.SERVING_OUTPUT_KEY].numpy()
    return {"train": keras_train_metrics(model_run_uri),
            "validation": _validation_metrics(model_run_uri),
            "predictions": predictions}


@pytest.mark.slow
def test_same_seed_gives_identical_metrics_and_predictions(transformed, tmp_path):  # noqa: F811
    first = _train(transformed, tmp_path / "first", seed=7)
    second = _train(transformed, tmp_path / "second", seed=7)
    other = _train(transformed, tmp_path / "other", seed=8)

    assert first["train"] and "auc" in first["train"] and "loss" in first["train"]
    assert first["validation"]
    assert first["train"] == second["train"]  # exact, not approximate
    assert first["validation"] == second["validation"]
    assert np.array_equal(first["predictions"], second["predictions"])

    assert not np.array_equal(first["predictions"], other["predictions"])
