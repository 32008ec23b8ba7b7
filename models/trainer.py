"""The Trainer's `run_fn`: adapts TFX's FnArgs to the plain functions of model.py.

Referenced by the pipeline as "models.trainer.run_fn"; the only module of
`models/` that imports TFX.
"""
import json
import logging
import os
from typing import List, Optional

import attr
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import distributed_training
from models import model as model_lib
from models.tracing import skip_library_conversion

# Library code is traced, not AutoGraph-converted (see models/tracing.py).
skip_library_conversion()


def input_fn(
    file_patterns: List[str],
    data_accessor: tfx.components.DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    seed: Optional[int] = None,
) -> tf.data.Dataset:
    """Repeating (transformed features, label) batches of the raw examples in `file_patterns`.

    The pipeline's Transform does not materialize transformed examples for a
    single-process Trainer (pipeline.pipeline.transform_component): the
    Trainer reads ExampleGen's raw examples, parsed with the raw schema the
    transform graph was built for, and applies the transform graph per batch
    with the same TransformFeaturesLayer the serving signature uses. It
    transforms only the batches its steps read; materializing meant
    transforming and writing every row of both splits (most of Transform's
    time at 1M rows).

    Args:
      file_patterns: patterns of the raw example files of one split.
      data_accessor: the Trainer's accessor, which knows the examples' format.
      tf_transform_output: the transform graph and its raw schema.
      batch_size: examples per batch.
      seed: seeds the shuffle, so the batch order is repeatable (None: random).
    """
    raw = data_accessor.tf_dataset_factory(
        file_patterns,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, shuffle_seed=seed, sloppy_ordering=False,
        ),
        tf_transform_output.raw_metadata.schema,
    )
    transform_layer = tf_transform_output.transform_features_layer()

    def transform(raw_features):
        transformed = transform_layer(raw_features)
        label = transformed.pop(model_lib.TRANSFORMED_LABEL_KEY)
        return transformed, label

    return raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=True).repeat()


def make_deterministic(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and makes TF ops deterministic.

    Called before any dataset or layer is built: a shuffle or an initializer
    created before the global seed is set draws a random seed of its own.
    """
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


HYPERPARAMETERS_FILE = "hyperparameters.json"


def record_hyperparameters(fn_args: tfx.components.FnArgs) -> Optional[str]:
    """Writes what the Trainer trains with to `<model_run_dir>/hyperparameters.json`.

    {"hparams": the model's HParams fields, "train_steps", "eval_steps",
    "tuned": whether the Tuner's best hyper-parameters were applied,
    "tuned_values": those values}. Returns the path (None without a run dir).
    """
    if not getattr(fn_args, "model_run_dir", None):
        return None
    hparams = model_lib.HParams.from_config(distributed_training.hparams_of(fn_args.custom_config))
    values = (getattr(fn_args, "hyperparameters", None) or {}).get("values")
    record = {
        "hparams": {**vars(hparams), "hidden_units": list(hparams.hidden_units)},
        "train_steps": fn_args.train_steps,
        "eval_steps": fn_args.eval_steps,
        "tuned": bool(values),
        "tuned_values": values or None,
    }
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    path = os.path.join(fn_args.model_run_dir, HYPERPARAMETERS_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
    return path


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Builds, trains and exports the model as the TFX Trainer asks.

    Args:
      fn_args: the Trainer's arguments; uses train_files, eval_files,
        train_steps, eval_steps, transform_graph_path, data_accessor,
        custom_config (hyper-parameters, see `model_lib.HParams.from_config`;
        `train_workers` > 1, `train_strategy` or `tfjob` hand the training to
        `components.distributed_training`),
        model_run_dir (TensorBoard logs) and serving_model_dir (the export),
        hyperparameters (the Tuner's best, with `--tune`: its hidden_units,
        learning_rate and train_steps replace the flags' values, see
        `models.tuner.apply_best_hyperparameters`).

    What it trains with (hyper-parameters, train steps, their source) is
    recorded in `<model_run_dir>/hyperparameters.json`.
    """
    if getattr(fn_args, "hyperparameters", None):
        from models import tuner as tuner_lib

        custom_config, train_steps = tuner_lib.apply_best_hyperparameters(fn_args)
        logging.info("Tuned hyper-parameters %s: train_steps %s (train_args.num_steps %s)",
                     fn_args.hyperparameters.get("values"), train_steps, fn_args.train_steps)
        fn_args = attr.evolve(fn_args, custom_config=custom_config, train_steps=train_steps)
    if not fn_args.train_steps or not fn_args.eval_steps:
        raise ValueError(
            "The Trainer needs train_args.num_steps and eval_args.num_steps > 0 "
            f"(got {fn_args.train_steps} and {fn_args.eval_steps}); the datasets "
            "repeat forever, so training would never end."
        )
    record_hyperparameters(fn_args)
    if distributed_training.wants_distributed(fn_args.custom_config):
        # N worker processes (MultiWorkerMirroredStrategy) or, on Kubeflow, a
        # TFJob: same model, hyper-parameters and serving export
        # (components/distributed_training, docs/distributed_training.md).
        distributed_training.run_from_config(fn_args)
        return
    train_and_export(fn_args)


def train_and_export(fn_args: tfx.components.FnArgs, read=input_fn) -> None:
    """One process: builds, trains and exports the model, reading with `read`.

    Args:
      fn_args: as for `run_fn` (distribution keys of custom_config ignored).
      read: an `input_fn`-like function (file patterns, data accessor,
        TFTransformOutput, batch size, seed) -> repeating (features, label)
        batches; the default reads raw examples (see `input_fn`).
    """
    hparams = model_lib.HParams.from_config(distributed_training.hparams_of(fn_args.custom_config))
    logging.info("Training with %s", hparams)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)

    make_deterministic(hparams.seed)
    accessor = fn_args.data_accessor
    batch_size = hparams.batch_size
    train_dataset = read(fn_args.train_files, accessor, tft_output, batch_size, hparams.seed)
    eval_dataset = read(fn_args.eval_files, accessor, tft_output, batch_size, hparams.seed)
    model = model_lib.build_model(tft_output, hparams)
    model_lib.train_model(
        model,
        train_dataset,
        eval_dataset,
        train_steps=fn_args.train_steps,
        eval_steps=fn_args.eval_steps,
        log_dir=fn_args.model_run_dir,
    )
    model_lib.export_serving_model(
        model, tft_output, fn_args.serving_model_dir
    )
