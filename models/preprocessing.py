"""The tf.Transform `preprocessing_fn`: raw curated features in, model inputs out.

Every output is a dense tensor of shape [batch, 1]:
  * numeric features become z-scores, clipped to +-`Z_SCORE_CLIP`; a missing
    value (an optional feature absent from the example) is imputed with the
    feature's mean, i.e. 0 after scaling;
  * categorical features become vocabulary indices, with `features.OOV_BUCKETS`
    extra indices for values never seen in training; a missing value is the
    empty string, which tf.Transform never puts in a vocabulary, so it lands
    in the OOV bucket(s): "missing" and "unknown" both mean "no usable value";
  * the label passes through unchanged as int64; it must be a required
    (FixedLen) feature, since no fill value is a safe guess for a label.

Any input may arrive dense ([batch] or [batch, 1]) or as a SparseTensor
([batch, None], from a VarLen feature of the schema), so the same function
serves whichever presence the curated schema declares.
"""
from typing import Dict, Union

import tensorflow as tf
import tensorflow_transform as tft

from models import features
from models.tracing import skip_library_conversion

# Library code is traced, not AutoGraph-converted (see models/tracing.py).
skip_library_conversion()

# A z-score beyond this is almost surely a sensor glitch; clipping keeps one
# outlier from dominating the first Dense layer.
Z_SCORE_CLIP = 5.0

MISSING_CATEGORY = ""

TensorLike = Union[tf.Tensor, tf.SparseTensor]


def densify(tensor: TensorLike, fill_value) -> tf.Tensor:
    """Returns `tensor` as a dense [batch, 1] tensor, absent values = fill_value.

    Args:
      tensor: a dense tensor of shape [batch] or [batch, 1], or a SparseTensor
        of shape [batch, N] holding at most one value per row (a VarLen
        feature whose schema allows one value).
      fill_value: what a row without a value becomes; must match the dtype.
    """
    if isinstance(tensor, tf.SparseTensor):
        batch_size = tensor.dense_shape[0]
        # Re-declaring the shape as [batch, 1] keeps a batch in which no row
        # has a value (dense_shape [batch, 0]) from collapsing to width 0.
        one_column = tf.SparseTensor(
            indices=tensor.indices,
            values=tensor.values,
            dense_shape=tf.stack([batch_size, tf.constant(1, tf.int64)]),
        )
        return tf.sparse.to_dense(one_column, default_value=fill_value)
    if tensor.shape.rank == 1:
        return tf.expand_dims(tensor, axis=-1)
    return tensor


def _index_categorical(tensor: TensorLike, key: str) -> tf.Tensor:
    """Vocabulary index of each value; missing (empty) values go to OOV."""
    dense = densify(tensor, fill_value=MISSING_CATEGORY)
    return tft.compute_and_apply_vocabulary(
        dense,
        num_oov_buckets=features.OOV_BUCKETS[key],
        vocab_filename=key,
    )


def _one_column_sparse(tensor: TensorLike) -> tf.SparseTensor:
    """`tensor` as a float32 [batch, 1] SparseTensor holding its present values.

    A zero is a value and keeps its cell; an absent value of a VarLen feature
    leaves its cell empty.
    """
    if isinstance(tensor, tf.SparseTensor):
        rows = tensor.indices[:, :1]
        values = tensor.values
        batch_size = tensor.dense_shape[0]
    else:
        values = tf.reshape(tensor, [-1])
        batch_size = tf.shape(values, out_type=tf.int64)[0]
        rows = tf.expand_dims(tf.range(batch_size), axis=-1)
    return tf.SparseTensor(
        indices=tf.concat([rows, tf.zeros_like(rows)], axis=1),
        values=tf.cast(values, tf.float32),
        dense_shape=tf.stack([batch_size, tf.constant(1, tf.int64)]),
    )


def _scale_numerics(inputs: Dict[str, TensorLike], keys) -> Dict[str, tf.Tensor]:
    """Z-scores of every numeric feature from one elementwise analyzer.

    The same result as a `tft.scale_to_z_score` per feature (mean and
    variance of each feature over its present values; absent values become
    the mean, 0 after scaling; clipped to +-Z_SCORE_CLIP), but one analyzer
    over a [batch, len(keys)] SparseTensor instead of one per feature: 23
    analyzers cost tf.Transform a traced graph and Beam stages each, most of
    the bundled run's Transform time.
    """
    width = len(keys)
    stacked = tf.sparse.concat(
        axis=1,
        sp_inputs=[_one_column_sparse(inputs[key]) for key in keys],
    )
    scaled = tft.scale_to_z_score(stacked, elementwise=True)
    # to_dense loses the static width, which the transformed schema needs.
    dense = tf.reshape(tf.sparse.to_dense(tf.sparse.reorder(scaled), default_value=0.0),
                       [-1, width])
    dense = tf.clip_by_value(tf.cast(dense, tf.float32), -Z_SCORE_CLIP, Z_SCORE_CLIP)
    return {key: dense[:, i:i + 1] for i, key in enumerate(keys)}


def preprocessing_fn(inputs: Dict[str, TensorLike]) -> Dict[str, tf.Tensor]:
    """tf.Transform callback: maps raw features to the model's inputs.

    Args:
      inputs: raw features by name, as parsed with the curated schema; must
        hold every key of `features.MODEL_FEATURES` and the label. Other keys
        (date, month) are ignored.

    Returns:
      Dense [batch, 1] tensors keyed by `features.transformed_name(...)`:
      float32 z-scores for numerics, int64 indices for categoricals and the
      int64 label.
    """
    outputs = {}
    numeric_keys = [k for k, kind in features.MODEL_FEATURES.items() if kind == features.NUMERIC]
    for key, scaled in _scale_numerics(inputs, numeric_keys).items():
        outputs[features.transformed_name(key)] = scaled
    for key, kind in features.MODEL_FEATURES.items():
        if kind == features.NUMERIC:
            continue
        if kind == features.CATEGORICAL:
            outputs[features.transformed_name(key)] = _index_categorical(
                inputs[key], key
            )
        else:
            raise ValueError(
                f"Feature {key!r} has kind {kind!r}; preprocessing_fn handles "
                f"{features.NUMERIC!r} and {features.CATEGORICAL!r}."
            )
    outputs[features.transformed_name(features.LABEL_KEY)] = _pass_label(
        inputs[features.LABEL_KEY]
    )
    return outputs


def _pass_label(label: TensorLike) -> tf.Tensor:
    """The label as int64 [batch, 1]; refuses a label that may be missing."""
    if isinstance(label, tf.SparseTensor):
        raise ValueError(
            f"Label {features.LABEL_KEY!r} arrived as a SparseTensor, i.e. the "
            "schema lets it be absent; declare it required (presence "
            "min_fraction 1.0 and a fixed shape) in the curated schema."
        )
    return tf.cast(densify(label, fill_value=None), tf.int64)
