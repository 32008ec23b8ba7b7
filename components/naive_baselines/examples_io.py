"""Reads one split of an Examples artifact into a pandas frame, vectorised.

ExampleGen writes each split as TFRecord shards of tf.Examples under
`<examples uri>/Split-<name>/` (gzipped here; an uncompressed shard is read
too: the compression is taken from each file's first bytes). The records are
parsed in batches by `tf.io.parse_example`, one column per feature, so
100k rows take about a second.

Columns: the label, station, month and the model's raw features
(models/features.py). A numeric value that is absent is NaN, an absent
string None. Feature dtypes are taken from the records themselves (the
first ones that carry the feature), so an int64 numeric feature reads as
well as a float one.
"""
import os
from typing import Dict, List

import numpy as np
import pandas as pd
from tfx.dsl.io import fileio

from models import features

BATCH_SIZE = 8192
_SAMPLE_RECORDS = 2000
_GZIP_MAGIC = b"\x1f\x8b"


class ExamplesReadError(ValueError):
    """A split cannot be read into the baselines' columns (names what and where)."""


def wanted_columns() -> Dict[str, str]:
    """{feature: kind}: the model's features plus label and month."""
    columns = dict(features.MODEL_FEATURES)
    columns[features.LABEL_KEY] = features.NUMERIC
    columns[features.MONTH_KEY] = features.NUMERIC
    return columns


def split_files(examples_uri: str, split: str) -> List[str]:
    """The record files of `Split-<split>` (sorted).

    Raises:
      ExamplesReadError: the split directory does not exist.
    """
    split_dir = os.path.join(examples_uri, f"Split-{split}")
    if not fileio.isdir(split_dir):
        raise ExamplesReadError(f"the Examples at {examples_uri} have no split '{split}' "
                                f"(no directory {split_dir})")
    return sorted(path for path in fileio.glob(os.path.join(split_dir, "*"))
                  if not fileio.isdir(path))


def _compression(path: str) -> str:
    with fileio.open(path, "rb") as f:
        return "GZIP" if f.read(2) == _GZIP_MAGIC else ""


def _dataset(paths: List[str]):
    import tensorflow as tf

    datasets = [tf.data.TFRecordDataset(p, compression_type=_compression(p)) for p in paths]
    dataset = datasets[0]
    for more in datasets[1:]:
        dataset = dataset.concatenate(more)
    return dataset


def _kinds(paths: List[str], wanted: Dict[str, str]) -> Dict[str, str]:
    """{feature: 'float'|'int'|'bytes'} from the first records that carry each feature."""
    import tensorflow as tf

    found: Dict[str, str] = {}
    for record in _dataset(paths).take(_SAMPLE_RECORDS):
        example = tf.train.Example.FromString(record.numpy())
        for name, feature in example.features.feature.items():
            if name in wanted and name not in found:
                kind = feature.WhichOneof("kind")
                if kind == "float_list":
                    found[name] = "float"
                elif kind == "int64_list":
                    found[name] = "int"
                elif kind == "bytes_list":
                    found[name] = "bytes"
        if len(found) == len(wanted):
            break
    # Not seen in the sample: the kind models/features.py gives it.
    for name, kind in wanted.items():
        found.setdefault(name, "bytes" if kind == features.CATEGORICAL else "float")
    return found


def _first_values(sparse, rows: int, kind: str) -> np.ndarray:
    """Each row's first value of a SparseTensor (NaN / None where absent)."""
    indices = sparse.indices.numpy()
    values = sparse.values.numpy()
    first = indices[:, 1] == 0
    if kind == "bytes":
        out = np.full(rows, None, dtype=object)
        out[indices[first, 0]] = [v.decode("utf-8", "replace") for v in values[first]]
        return out
    out = np.full(rows, np.nan, dtype=np.float64)
    out[indices[first, 0]] = values[first].astype(np.float64)
    return out


def read_split(examples_uri: str, split: str) -> pd.DataFrame:
    """One split of an Examples artifact as a frame of the baselines' columns.

    Raises:
      ExamplesReadError: no such split, a record that is not a tf.Example, a
        feature whose type differs between records, or rows without a label
        or station (both required by the curated schema).
    """
    import tensorflow as tf

    paths = split_files(examples_uri, split)
    wanted = wanted_columns()
    where = os.path.join(examples_uri, f"Split-{split}")
    if not paths:
        return pd.DataFrame({name: pd.Series(dtype=object if kind == features.CATEGORICAL
                                             else np.float64) for name, kind in wanted.items()})
    try:
        kinds = _kinds(paths, wanted)
        dtypes = {"float": tf.float32, "int": tf.int64, "bytes": tf.string}
        spec = {name: tf.io.VarLenFeature(dtypes[kind]) for name, kind in kinds.items()}
        chunks: Dict[str, list] = {name: [] for name in spec}
        for batch in _dataset(paths).batch(BATCH_SIZE):
            parsed = tf.io.parse_example(batch, spec)
            rows = int(batch.shape[0])
            for name in spec:
                chunks[name].append(_first_values(parsed[name], rows, kinds[name]))
    except tf.errors.OpError as error:
        raise ExamplesReadError(f"cannot read the examples in {where}: "
                                f"{error.message.splitlines()[0]}") from None
    frame = pd.DataFrame({name: np.concatenate(parts) for name, parts in chunks.items()})
    for name in (features.LABEL_KEY, features.STATION_KEY):
        missing = int(frame[name].isna().sum())
        if missing:
            raise ExamplesReadError(f"{missing} of the {len(frame)} examples in {where} have no "
                                    f"'{name}' (required by the curated schema)")
    labels = frame[features.LABEL_KEY].to_numpy()
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        raise ExamplesReadError(f"{int(bad.sum())} examples in {where} have a '{features.LABEL_KEY}' "
                                f"other than 0 or 1 (e.g. {labels[bad][0]:g})")
    frame[features.LABEL_KEY] = labels.astype(np.int64)
    return frame
