"""Plain helpers that read ExampleValidator output into rows people can read."""
import dataclasses
import os
from typing import List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.io import fileio

ANOMALIES_FILE = "SchemaDiff.pb"


@dataclasses.dataclass(frozen=True)
class AnomalyRow:
    split: str
    feature: str
    anomaly: str
    description: str


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


def format_anomaly_table(rows: List[AnomalyRow]) -> str:
    """Fixed-width table: split | feature | anomaly | description."""
    header = ("split", "feature", "anomaly", "description")
    cells = [header] + [(r.split, r.feature, r.anomaly, r.description) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = [
        "  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3]
        for c in cells
    ]
    lines.insert(1, "-" * min(120, len(lines[0])))
    return "\n".join(lines)
