"""Arrow record batches -> serialized tf.Examples, whole columns at a time.

No Beam and no TFX here: the executor maps record batches through these
functions, and benchmarks or tools can call them directly.

Conversion rules (one feature per column, named like the column):

  Arrow type                            tf.train.Feature
  ------------------------------------  -----------------------------------------
  int8..int64, uint8..uint32            int64_list
  uint64                                int64_list; a value above 2**63-1 is an
                                        error, never wrapped
  bool                                  int64_list, 0 / 1
  float16, float32, float64             float_list (float32, rounded to nearest);
                                        NaN and +-inf stay as they are; a finite
                                        value too large for float32 is an error
  decimal128, decimal256                float_list, via float64 (precision loss
                                        is inherent to float_list)
  string, large_string                  bytes_list, UTF-8 (Arrow's own bytes)
  binary, large_binary, fixed_binary    bytes_list, unchanged
  date32, date64                        bytes_list, ISO-8601 'YYYY-MM-DD'
  timestamp (any unit, any time zone)   int64_list, microseconds since the Unix
                                        epoch in UTC (Arrow stores UTC; a naive
                                        timestamp is read as UTC); nanoseconds
                                        are floored to the microsecond
  dictionary<_, T>                      as T, decoded
  null (the all-null column type)       absent from every example
  list, large_list, fixed_size_list     one feature with every element, in order,
    of any type above                   of the element type's kind

Missing and empty:
  - a null value (or a null list) leaves the feature out of that example: the
    key is absent, never filled with a default;
  - 0, 0.0, '', False and NaN are values and are always written;
  - an empty list is a present feature whose value list is empty
    (`int64_list {}`), which TF parses as zero values for VarLen/Ragged
    features and TFDV counts as present with 0 values;
  - a null element inside a list is an error: tf.Example cannot hold one.

Anything else (struct, map, union, nested lists, time, duration, interval) is a
ValueError naming the column and its Arrow type.
"""
import glob
from typing import Iterator, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.parquet_example_gen import wire
from components.parquet_example_gen.wire import FeatureColumn, Kind

# Rows converted at once: bounds memory for large Parquet row groups while
# keeping per-batch overhead negligible.
BATCH_ROWS = 65_536

_INT64_MAX = np.iinfo(np.int64).max
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}


def record_batch_to_examples(record_batch: pa.RecordBatch) -> List[bytes]:
    """Serializes every row of `record_batch` as a tf.train.Example.

    Args:
      record_batch: the rows; every column must follow the module's rules.

    Returns:
      One serialized tf.train.Example per row, in row order.

    Raises:
      ValueError: a column has an unsupported type or a value that cannot be
        represented (see the module docstring).
    """
    return record_batch_to_example_array(record_batch).to_pylist()


def record_batch_to_example_array(record_batch: pa.RecordBatch) -> pa.LargeBinaryArray:
    """As `record_batch_to_examples`, as one Arrow array (no Python objects)."""
    examples, _ = wire.encode_examples(feature_columns(record_batch), record_batch.num_rows)
    return examples


def record_batch_to_keyed_examples(
    record_batch: pa.RecordBatch, key_feature: str
) -> Tuple[List[bytes], List[bytes]]:
    """Serialized examples plus each row's serialized `key_feature` Feature.

    The key is the `tf.train.Feature` serialized exactly as TFX's ExampleGen
    does for `SplitConfig.partition_feature_name`, so hashing it assigns each
    row to the split stock TFX would choose.

    Raises:
      ValueError: `key_feature` is not a column, is a float feature, or is
        null in some row (TFX cannot partition such rows either).
    """
    examples, keys = record_batch_to_keyed_example_arrays(record_batch, key_feature)
    return examples.to_pylist(), keys.to_pylist()


def record_batch_to_keyed_example_arrays(
    record_batch: pa.RecordBatch, key_feature: str
) -> Tuple[pa.LargeBinaryArray, pa.LargeBinaryArray]:
    """As `record_batch_to_keyed_examples`, as two Arrow arrays."""
    columns = feature_columns(record_batch)
    names = [column.name for column in columns]
    if key_feature not in names:
        raise ValueError(
            f"Partition feature '{key_feature}' is not a column of the input; "
            f"columns: {names}.")
    key_column = columns[names.index(key_feature)]
    if key_column.kind is Kind.FLOAT:
        raise ValueError(
            f"Partition feature '{key_feature}' is a float_list feature; TFX "
            "partitions only by bytes_list or int64_list features.")
    missing = int(np.count_nonzero(~key_column.present))
    if missing:
        raise ValueError(
            f"Partition feature '{key_feature}' is null in {missing} of "
            f"{record_batch.num_rows} rows; every example needs it to pick a split.")
    return wire.encode_examples(columns, record_batch.num_rows, key_column=names.index(key_feature))


def parquet_to_serialized_examples(path_or_pattern: str) -> Iterator[bytes]:
    """Serialized tf.Examples of local Parquet files, without Beam.

    Args:
      path_or_pattern: a Parquet file or a glob of them; files are read in
        sorted order, BATCH_ROWS rows at a time.

    Raises:
      FileNotFoundError: nothing matches `path_or_pattern`.
    """
    files = sorted(glob.glob(path_or_pattern))
    if not files:
        raise FileNotFoundError(f"No Parquet file matches '{path_or_pattern}'.")
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            yield from record_batch_to_examples(batch)


def feature_columns(record_batch: pa.RecordBatch) -> List[FeatureColumn]:
    """The batch's columns converted by the module's rules, ready to encode."""
    names = record_batch.schema.names
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Duplicate column names {duplicates}: a tf.Example feature "
                         "name must be unique.")
    return [_feature_column(name, column) for name, column in zip(names, record_batch.columns)]


def _feature_column(name: str, array: pa.Array) -> FeatureColumn:
    declared_type = array.type
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    num_rows = len(array)
    present = array.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_null(array.type):
        return FeatureColumn(name, Kind.BYTES, pa.array([], pa.large_binary()),
                             np.zeros(num_rows + 1, np.int64), present)
    if _is_list(array.type):
        element_type = array.type.value_type
        if pa.types.is_dictionary(element_type):
            element_type = element_type.value_type
        if pa.types.is_nested(element_type):
            raise _unsupported(name, declared_type)
        lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
        row_splits = np.zeros(num_rows + 1, np.int64)
        np.cumsum(lengths, out=row_splits[1:])
        values = array.flatten()
        if values.null_count:
            raise ValueError(
                f"Column '{name}' ({declared_type}) has {values.null_count} null "
                "elements inside lists; tf.Example cannot hold a null inside a "
                "value list. Drop or fill them before ExampleGen.")
    else:
        row_splits = np.arange(num_rows + 1, dtype=np.int64)
        values = array
    kind, converted = _convert_values(name, declared_type, values)
    return FeatureColumn(name, kind, converted, row_splits, present)


def _convert_values(name: str, declared_type: pa.DataType, values: pa.Array):
    """(kind, null-free values): int64 / float32 numpy, or large_binary Arrow.

    Null slots (rows that are left out) are filled with placeholders.
    """
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    value_type = values.type
    if pa.types.is_boolean(value_type) or pa.types.is_integer(value_type):
        if pa.types.is_uint64(value_type):
            largest = pc.max(values).as_py()
            if largest is not None and largest > _INT64_MAX:
                raise ValueError(
                    f"Column '{name}' ({declared_type}) holds {largest}, which does "
                    "not fit in tf.Example's int64.")
        filled = pc.fill_null(values, False if pa.types.is_boolean(value_type) else 0)
        return Kind.INT64, filled.to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_floating(value_type) or pa.types.is_decimal(value_type):
        if pa.types.is_decimal(value_type):
            values = values.cast(pa.float64())
        wide = values.to_numpy(zero_copy_only=False)  # Nulls read as NaN.
        with np.errstate(over="ignore"):
            narrow = wide.astype(np.float32)
        overflow = np.isinf(narrow) & np.isfinite(wide)
        if overflow.any():
            raise ValueError(
                f"Column '{name}' ({declared_type}) holds {wide[overflow][0]!r}, "
                "beyond float32, the only float tf.Example has.")
        return Kind.FLOAT, narrow
    if (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
            or pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type)
            or pa.types.is_fixed_size_binary(value_type)):
        return Kind.BYTES, _fill_bytes(values.cast(pa.large_binary()))
    if pa.types.is_date(value_type):
        return Kind.BYTES, _fill_bytes(values.cast(pa.string()).cast(pa.large_binary()))
    if pa.types.is_timestamp(value_type):
        return Kind.INT64, _epoch_micros(name, declared_type, values)
    raise _unsupported(name, declared_type)


def _epoch_micros(name: str, declared_type: pa.DataType, values: pa.Array) -> np.ndarray:
    raw = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    unit = values.type.unit
    if unit == "ns":
        return np.floor_divide(raw, 1_000)
    factor = _MICROS_PER_UNIT[unit]
    limit = _INT64_MAX // factor
    if factor > 1 and raw.size and (raw.max() > limit or raw.min() < -limit):
        raise ValueError(f"Column '{name}' ({declared_type}) holds a timestamp beyond "
                         "the int64 microsecond range.")
    return raw * factor


def _fill_bytes(values: pa.Array) -> pa.Array:
    if not values.null_count:
        return values
    return pc.fill_null(values, pa.scalar(b"", pa.large_binary()))


def _is_list(arrow_type: pa.DataType) -> bool:
    return (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type))


def _unsupported(name: str, declared_type: pa.DataType) -> ValueError:
    return ValueError(
        f"Column '{name}' has unsupported Arrow type {declared_type}: tf.Example holds "
        "only int64, float32 and bytes values or flat lists of them. Flatten, cast "
        "or drop the column before ExampleGen.")
