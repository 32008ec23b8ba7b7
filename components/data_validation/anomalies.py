"""Plain helpers that read ExampleValidator output into rows people can read.

`trace_rows` adds, for an anomaly about values outside the schema's domain
(a value too large or too small, an unexpected category), which examples hold
such values: their station and date, read from the validated split's
tf.Examples. The curated Parquet and the examples carry the same rows, so this
names the raw rows to fix.
"""
import dataclasses
import glob
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.dsl.io import fileio

from models import features

ANOMALIES_FILE = "SchemaDiff.pb"
# How many offending (station, date) pairs a table row names before "and N more".
MAX_TRACED_ROWS = 5

# Anomaly types about a value outside the feature's domain.
DOMAIN_ANOMALIES = frozenset(
    getattr(anomalies_pb2.AnomalyInfo, name) for name in (
        "FLOAT_TYPE_BIG_FLOAT", "FLOAT_TYPE_SMALL_FLOAT", "INT_TYPE_BIG_INT",
        "INT_TYPE_SMALL_INT", "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
        "FLOAT_TYPE_HAS_NAN", "FLOAT_TYPE_HAS_INF",
    ) if hasattr(anomalies_pb2.AnomalyInfo, name)
)


@dataclasses.dataclass(frozen=True)
class AnomalyRow:
    split: str
    feature: str
    anomaly: str
    description: str
    # "station seattle: 2015-06-01 (600), ...": examples with values outside
    # the domain; empty when not traced.
    rows: str = ""


def load_anomaly_rows(anomalies_uri: str, split_names: List[str]) -> List[AnomalyRow]:
    """One row per anomalous feature (or dataset-level anomaly) per split."""
    rows = []
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE)
        if not fileio.exists(path):
            continue
        anomalies = anomalies_pb2.Anomalies()
        with fileio.open(path, "rb") as f:
            anomalies.ParseFromString(f.read())
        rows.extend(_rows_for_split(split, anomalies))
    return rows


def _rows_for_split(split: str, anomalies: anomalies_pb2.Anomalies) -> List[AnomalyRow]:
    rows = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        kinds = ", ".join(
            anomalies_pb2.AnomalyInfo.Type.Name(reason.type) for reason in info.reason
        ) or info.short_description
        rows.append(AnomalyRow(split, feature, kinds, info.description))
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        rows.append(AnomalyRow(split, "(dataset)", info.short_description, info.description))
    return rows


def is_domain_anomaly(row: AnomalyRow) -> bool:
    """True if `row` reports values outside its feature's domain."""
    names = {name.strip() for name in row.anomaly.split(",")}
    return any(anomalies_pb2.AnomalyInfo.Type.Name(kind) in names for kind in DOMAIN_ANOMALIES)


def out_of_domain(feature: schema_pb2.Feature, schema: schema_pb2.Schema):
    """A predicate on one value of `feature`: True when the schema's domain refuses it.

    None when the feature has no domain to check against.
    """
    import math

    if feature.HasField("float_domain"):
        domain = feature.float_domain
        low = domain.min if domain.HasField("min") else -math.inf
        high = domain.max if domain.HasField("max") else math.inf
        return lambda value: not (low <= value <= high)  # NaN is outside too
    if feature.HasField("int_domain"):
        domain = feature.int_domain
        low = domain.min if domain.HasField("min") else -math.inf
        high = domain.max if domain.HasField("max") else math.inf
        return lambda value: not (low <= value <= high)
    values = None
    if feature.HasField("string_domain"):
        values = set(feature.string_domain.value)
    elif feature.HasField("domain"):
        named = [d for d in schema.string_domain if d.name == feature.domain]
        values = set(named[0].value) if named else None
    if values is not None:
        return lambda value: (value.decode("utf-8", "replace")
                              if isinstance(value, bytes) else value) not in values
    return None


def find_offending_rows(example_files: Sequence[str], checks: Dict[str, object],
                        limit: int = MAX_TRACED_ROWS) -> Dict[str, Tuple[int, List[str]]]:
    """{feature: (offending example count, up to `limit` descriptions)} over the files.

    Args:
      example_files: gzipped (`.gz`) or plain TFRecord files of tf.Examples.
      checks: {feature: predicate on one value} (see `out_of_domain`).
      limit: how many examples to describe per feature.

    A description reads `<station> <date> (<value>)`, in file order.
    """
    import tensorflow as tf

    found = {name: (0, []) for name in checks}
    for path in example_files:
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
            example = tf.train.Example.FromString(record)
            values = example.features.feature
            for name, refused in checks.items():
                bad = [v for v in _values(values.get(name)) if refused(v)]
                if not bad:
                    continue
                count, described = found[name]
                if len(described) < limit:
                    described = described + [
                        f"{_text(values.get(features.STATION_KEY))} "
                        f"{_text(values.get(features.DATE_KEY))} ({_show(bad[0])})"]
                found[name] = (count + 1, described)
    return found


def _values(feature) -> list:
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _text(feature) -> str:
    values = _values(feature)
    if not values:
        return "?"
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _show(value) -> str:
    if isinstance(value, bytes):
        return repr(value.decode("utf-8", "replace"))
    return f"{value:g}" if isinstance(value, float) else str(value)


def split_example_files(examples_uri: str, split: str) -> List[str]:
    """The TFRecord files of one split of an Examples artifact, sorted."""
    return sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))


def trace_rows(rows: Iterable[AnomalyRow], examples_uri: str,
               schema: schema_pb2.Schema, limit: int = MAX_TRACED_ROWS) -> List[AnomalyRow]:
    """`rows` with `rows` filled in for out-of-domain anomalies: which examples, by station and date.

    Each split's examples are read once, for all of that split's
    out-of-domain features. Rows of other anomalies are returned unchanged.
    """
    rows = list(rows)
    by_feature = {f.name: f for f in schema.feature}
    wanted: Dict[str, Dict[str, object]] = {}
    for row in rows:
        feature = by_feature.get(row.feature)
        if feature is None or not is_domain_anomaly(row):
            continue
        check = out_of_domain(feature, schema)
        if check is not None:
            wanted.setdefault(row.split, {})[row.feature] = check
    traced = {split: find_offending_rows(split_example_files(examples_uri, split), checks, limit)
              for split, checks in wanted.items()}
    result = []
    for row in rows:
        count, described = traced.get(row.split, {}).get(row.feature, (0, []))
        if described:
            more = f", and {count - len(described)} more" if count > len(described) else ""
            noun = "row" if count == 1 else "rows"
            row = dataclasses.replace(
                row, rows=f"{count} {noun}: " + ", ".join(described) + more)
        result.append(row)
    return result


def format_anomaly_table(rows: List[AnomalyRow]) -> str:
    """Fixed-width table: split | feature | anomaly | description.

    A traced row's description ends with `Rows: <count> rows: <station> <date>
    (<value>), ...` naming the examples outside the domain.
    """
    header = ("split", "feature", "anomaly", "description")
    cells = [header] + [
        (r.split, r.feature, r.anomaly,
         r.description + (f" Rows outside the domain: {r.rows}." if r.rows else ""))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = [
        "  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3]
        for c in cells
    ]
    lines.insert(1, "-" * min(120, len(lines[0])))
    return "\n".join(lines)
