"""The rain-tomorrow Keras model: build, train and export with serving signatures.

Plain TensorFlow/Keras code that never imports TFX; `models.trainer.run_fn`
adapts TFX's FnArgs to these functions.

Keras 2 (the `tf_keras` package) is used explicitly, not `tf.keras`: with
TF 2.16 `tf.keras` resolves to Keras 3 unless TF_USE_LEGACY_KERAS=1 is set
before its first use, whereas tf.Transform's TransformFeaturesLayer is a
`tf_keras.Model`. Importing `tf_keras` makes the choice independent of
environment variables and import order, in the Trainer and in Beam workers.

The exported SavedModel has two signatures, both fed serialized tf.Examples
under the input name `SERVING_INPUT_KEY`:
  * `serving_default`: raw model features (no label, date or month needed;
    optional features may be absent) -> {`SERVING_OUTPUT_KEY`: P(rain), [N, 1]}.
  * `transform_features`: all raw features -> the transformed features, for
    evaluation and debugging.
"""
import dataclasses
import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from models import features

SERVING_INPUT_KEY = "examples"
SERVING_OUTPUT_KEY = "rain_probability"
SERVING_SIGNATURE = "serving_default"
TRANSFORM_SIGNATURE = "transform_features"

TRANSFORMED_LABEL_KEY = features.transformed_name(features.LABEL_KEY)


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyper-parameters of the model and its training.

    Attributes:
      learning_rate: Adam's learning rate.
      hidden_units: sizes of the hidden Dense layers, input side first.
      batch_size: examples per training and evaluation batch.
      embedding_dim: width of the embedding of each categorical feature.
      seed: seeds weight initialisation and shuffling, so a run is repeatable.
      steps_per_execution: training batches per call of the compiled train
        step (Keras' `steps_per_execution`): fewer Python round trips; the
        batches, their order and the updates are the same as one at a time.
    """

    learning_rate: float = 0.003
    hidden_units: Tuple[int, ...] = (32, 16)
    batch_size: int = 64
    embedding_dim: int = 4
    seed: int = 0
    steps_per_execution: int = 50

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not self.hidden_units or any(u <= 0 for u in self.hidden_units):
            raise ValueError(
                f"hidden_units must be a non-empty sequence of positive sizes, "
                f"got {self.hidden_units!r}."
            )
        if self.steps_per_execution <= 0:
            raise ValueError(
                f"steps_per_execution must be > 0, got {self.steps_per_execution}.")
        if self.batch_size <= 0 or self.embedding_dim <= 0:
            raise ValueError(
                f"batch_size and embedding_dim must be > 0, got "
                f"{self.batch_size} and {self.embedding_dim}."
            )

    @classmethod
    def from_config(cls, config: Optional[Mapping[str, Any]]) -> "HParams":
        """Builds HParams from a JSON-like dict; absent keys keep their defaults.

        Args:
          config: e.g. the Trainer's custom_config, {"learning_rate": 0.01,
            "hidden_units": [16, 8], ...}. None means all defaults. Keys that
            are not fields are logged and ignored.
        """
        config = dict(config or {})
        known = {field.name: field.type for field in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(known))
        if unknown:
            logging.warning("Ignoring unknown hyper-parameters %s.", unknown)
        values: Dict[str, Any] = {}
        for name in known:
            if config.get(name) is None:
                continue
            value = config[name]
            if name == "hidden_units":
                values[name] = tuple(int(units) for units in value)
            elif name == "learning_rate":
                values[name] = float(value)
            else:
                values[name] = int(value)
        return cls(**values)


def build_model(
    tf_transform_output: tft.TFTransformOutput, hparams: HParams
) -> tf_keras.Model:
    """Returns a compiled binary classifier over the transformed features.

    Numeric inputs (z-scores) are concatenated with an embedding of each
    categorical input, then go through `hparams.hidden_units` ReLU layers to one
    sigmoid unit: the probability of rain tomorrow.

    Args:
      tf_transform_output: the Transform output; gives the vocabulary size
        (with OOV buckets) of each categorical feature.
      hparams: layer sizes and learning rate.

    Returns:
      A `tf_keras.Model` whose inputs are a dict keyed by transformed feature
      name, each of shape [batch, 1], and whose output is [batch, 1].
    """
    inputs = {}
    columns = []
    for key, kind in features.MODEL_FEATURES.items():
        name = features.transformed_name(key)
        if kind == features.NUMERIC:
            inputs[name] = tf_keras.Input(shape=(1,), name=name, dtype=tf.float32)
            columns.append(inputs[name])
        else:
            inputs[name] = tf_keras.Input(shape=(1,), name=name, dtype=tf.int64)
            num_buckets = tf_transform_output.num_buckets_for_transformed_feature(name)
            embedded = tf_keras.layers.Embedding(
                num_buckets, hparams.embedding_dim, name=f"{key}_embedding"
            )(inputs[name])
            columns.append(tf_keras.layers.Flatten(name=f"{key}_flat")(embedded))
    hidden = tf_keras.layers.concatenate(columns, name="features")
    for index, units in enumerate(hparams.hidden_units):
        hidden = tf_keras.layers.Dense(
            units, activation="relu", name=f"hidden_{index}"
        )(hidden)
    probability = tf_keras.layers.Dense(
        1, activation="sigmoid", name=SERVING_OUTPUT_KEY
    )(hidden)
    model = tf_keras.Model(inputs=inputs, outputs=probability)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=hparams.learning_rate),
        loss=tf_keras.losses.BinaryCrossentropy(),
        metrics=[
            tf_keras.metrics.AUC(name="auc"),
            tf_keras.metrics.BinaryAccuracy(name="accuracy"),
        ],
        steps_per_execution=hparams.steps_per_execution,
    )
    return model


def model_input_names() -> Tuple[str, ...]:
    """The transformed feature names the model reads, in MODEL_FEATURES order."""
    return tuple(features.transformed_name(key) for key in features.MODEL_FEATURES)


def train_model(
    model: tf_keras.Model,
    train_dataset: tf.data.Dataset,
    eval_dataset: tf.data.Dataset,
    train_steps: int,
    eval_steps: int,
    log_dir: Optional[str] = None,
    verbose: int = 2,
) -> tf_keras.callbacks.History:
    """Fits `model` for `train_steps` batches, then evaluates on `eval_steps`.

    Validation runs once, after the single epoch. With the default
    `verbose=2` Keras prints one line for the epoch (train and validation
    metrics), not a progress bar line per step.

    Args:
      model: a compiled model from `build_model`.
      train_dataset: repeating (features, label) batches.
      eval_dataset: (features, label) batches, at least `eval_steps` of them.
      train_steps: training batches to run.
      eval_steps: evaluation batches to run.
      log_dir: where TensorBoard logs go; None writes none.
      verbose: Keras' fit verbosity (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
      The Keras History of the single epoch.
    """
    callbacks = []
    if log_dir:
        callbacks.append(
            tf_keras.callbacks.TensorBoard(log_dir=log_dir, update_freq=100)
        )
    return model.fit(
        train_dataset.prefetch(tf.data.AUTOTUNE),
        epochs=1,
        steps_per_epoch=train_steps,
        validation_data=eval_dataset.prefetch(tf.data.AUTOTUNE),
        validation_steps=eval_steps,
        callbacks=callbacks,
        verbose=verbose,
    )


def serving_feature_spec(tf_transform_output: tft.TFTransformOutput) -> Dict[str, Any]:
    """The raw parse spec of a serving request: model features only.

    Leaving out the label, date and month keeps them from becoming required in
    requests; optional features keep their VarLen spec and may be absent.
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    missing = sorted(set(features.MODEL_FEATURES) - set(raw_spec))
    if missing:
        raise ValueError(
            f"Model features {missing} are not in the Transform's raw schema; "
            "the curated schema and models/features.py disagree."
        )
    return {key: raw_spec[key] for key in features.MODEL_FEATURES}


def make_serving_signatures(
    model: tf_keras.Model, tf_transform_output: tft.TFTransformOutput
) -> Dict[str, Any]:
    """Returns the `serving_default` and `transform_features` concrete functions.

    Attaches the TransformFeaturesLayer to `model` as `model.tft_layer`, so that
    saving the model also saves the transform graph and its vocabularies.
    """
    model.tft_layer = tf_transform_output.transform_features_layer()
    serving_spec = serving_feature_spec(tf_transform_output)
    raw_spec = tf_transform_output.raw_feature_spec()
    input_names = model_input_names()
    examples_spec = tf.TensorSpec(shape=[None], dtype=tf.string, name=SERVING_INPUT_KEY)

    @tf.function(input_signature=[examples_spec])
    def serve_examples(examples):
        raw_features = tf.io.parse_example(examples, serving_spec)
        transformed = model.tft_layer(raw_features)
        model_inputs = {name: transformed[name] for name in input_names}
        return {SERVING_OUTPUT_KEY: model(model_inputs, training=False)}

    @tf.function(input_signature=[examples_spec])
    def transform_features(examples):
        raw_features = tf.io.parse_example(examples, raw_spec)
        return model.tft_layer(raw_features)

    return {
        SERVING_SIGNATURE: serve_examples.get_concrete_function(),
        TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
    }


def export_serving_model(
    model: tf_keras.Model, tf_transform_output: tft.TFTransformOutput, output_dir: str
) -> None:
    """Saves `model` with its transform graph as a SavedModel for TF Serving.

    Args:
      model: a model from `build_model`, usually trained.
      tf_transform_output: the Transform output the model was trained on.
      output_dir: the SavedModel directory (e.g. the Trainer's serving dir).
    """
    signatures = make_serving_signatures(model, tf_transform_output)
    tf.saved_model.save(model, output_dir, signatures=signatures)
