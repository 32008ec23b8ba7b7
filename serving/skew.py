"""Training/serving skew: the rows the service sent to the model against the training data.

The service keeps the last `window` feature rows it sent to the model (both
routes; `SkewWindow.add` is one append under a lock, so predictions pay
nothing measurable). `GET /v1/skew` then:

  1. encodes the window's rows as the tf.Examples the model received
     (`serving.backend.serialize_row`) and computes TFDV statistics of them
     with TFDV's default options, as StatisticsGen computes the training
     statistics;
  2. reads the live version's training statistics and curated schema, which
     the pusher ships inside the version directory
     (`serving.model_dir.TRAINING_STATISTICS_FILE`, `SCHEMA_FILE`);
  3. compares them with `components.data_validation.drift.skew_anomalies`:
     the schema's `skew_comparator`s, i.e. the drift gate's thresholds
     (Jensen-Shannon divergence for numeric features, L-infinity distance
     for `weather`).

The answer names every compared feature with its distance, threshold and
verdict; it says so instead when the window holds fewer than `min_rows`
rows or the version carries no training statistics (pushed before the
pusher shipped them, or no serving directory readable by this process).
"""
import collections
import dataclasses
import logging
import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

# Report statuses.
NO_SKEW = "no_skew"
SKEW = "skew"
TOO_FEW_ROWS = "too_few_rows"
NO_TRAINING_STATISTICS = "no_training_statistics"
DISABLED = "disabled"


class SkewWindow:
    """The last `size` feature rows sent to the model, with the version that answered.

    Args:
      size: rows kept (oldest dropped first); 0 keeps nothing.
    """

    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"skew window size must be >= 0, got {size}")
        self.size = size
        self._rows: "collections.deque[Tuple[int, Mapping[str, Any]]]" = collections.deque(
            maxlen=size or 1)
        self._lock = threading.Lock()

    def add(self, rows: Sequence[Mapping[str, Any]], version: int) -> None:
        """Remembers rows the model answered (the dicts are kept, not copied)."""
        if not self.size:
            return
        with self._lock:
            self._rows.extend((version, row) for row in rows)

    def snapshot(self) -> List[Tuple[int, Mapping[str, Any]]]:
        """(version, row) pairs, oldest first."""
        if not self.size:
            return []
        with self._lock:
            return list(self._rows)


@dataclasses.dataclass(frozen=True)
class FeatureSkew:
    feature: str
    comparator: str  # "jensen_shannon_divergence" | "infinity_norm"
    distance: Optional[float]  # None: TFDV measured nothing (e.g. no values in the window)
    threshold: float
    skewed: bool
    description: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SkewReport:
    status: str
    message: str
    version: Optional[int]
    rows_in_window: int
    rows_by_version: Dict[int, int]
    features: List[FeatureSkew]

    @property
    def skewed_features(self) -> List[str]:
        return [f.feature for f in self.features if f.skewed]


def skew_comparators(schema) -> Dict[str, Tuple[str, float]]:
    """{feature: (comparator, threshold)} of the schema's skew_comparator declarations."""
    result = {}
    for feature in schema.feature:
        comparator = feature.skew_comparator
        for kind in ("jensen_shannon_divergence", "infinity_norm"):
            if comparator.HasField(kind):
                result[feature.name] = (kind, getattr(comparator, kind).threshold)
    return result


def serving_statistics(rows: Sequence[Mapping[str, Any]]):
    """TFDV statistics of feature rows, encoded as the tf.Examples the model received."""
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.coders import example_coder

    from serving.backend import serialize_row

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
        [serialize_row(row) for row in rows])
    return stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions())


def compare(training, schema, serving) -> List[FeatureSkew]:
    """Every feature with a skew comparator: TFDV's distance, the threshold, the verdict."""
    from components.data_validation import drift

    anomalies = drift.skew_anomalies(training, serving, schema)
    measured = {}
    for info in anomalies.drift_skew_info:
        for measurement in info.skew_measurements:
            measured[".".join(info.path.step)] = measurement.value
    result = []
    for feature, (comparator, threshold) in sorted(skew_comparators(schema).items()):
        info = anomalies.anomaly_info.get(feature)
        result.append(FeatureSkew(
            feature=feature, comparator=comparator, distance=measured.get(feature),
            threshold=threshold, skewed=info is not None,
            description=info.description if info is not None else None))
    return result


class SkewMonitor:
    """The window, the training side of each version (cached), and the report.

    Args:
      window: the rows the service sent to the model.
      min_rows: fewer rows than this give TOO_FEW_ROWS, not distances.
    """

    def __init__(self, window: SkewWindow, min_rows: int):
        if min_rows < 1:
            raise ValueError(f"skew min rows must be >= 1, got {min_rows}")
        self.window = window
        self.min_rows = min_rows
        self._training: Dict[str, Tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def report(self, version: int, version_dir: Optional[str]) -> SkewReport:
        """Skew of the window against `version`'s training statistics.

        Args:
          version: the live version (whose training data the window is compared with).
          version_dir: its directory, or None when this process cannot read it.
        """
        rows = self.window.snapshot()
        by_version = dict(collections.Counter(v for v, _ in rows))

        def answer(status, message, features=()):
            return SkewReport(status, message, version, len(rows), by_version, list(features))

        if not self.window.size:
            return answer(DISABLED, "the skew window is off (--skew-window 0)")
        training, schema, missing = self._training_side(version_dir)
        if missing:
            return answer(NO_TRAINING_STATISTICS,
                          f"version {version} carries no training statistics ({missing}): "
                          "skew cannot be computed for it; versions pushed with the "
                          "pipeline's statistics input carry them")
        if len(rows) < self.min_rows:
            return answer(TOO_FEW_ROWS,
                          f"{len(rows)} rows in the window, fewer than the {self.min_rows} "
                          "a skew measurement needs (--skew-min-rows)")
        features = compare(training, schema, serving_statistics([row for _, row in rows]))
        skewed = [f for f in features if f.skewed]
        if not skewed:
            return answer(NO_SKEW, f"no feature beyond its skew threshold over the last "
                                   f"{len(rows)} rows", features)
        listed = ", ".join(f"{f.feature} {_distance(f)} > {f.threshold:g}" for f in skewed)
        log.warning("Training/serving skew against version %s over the last %d rows: %s",
                    version, len(rows), listed)
        return answer(SKEW, f"skew against version {version}'s training data: {listed}",
                      features)

    def _training_side(self, version_dir: Optional[str]):
        """(statistics, schema, None) or (None, None, what is missing)."""
        from serving import model_dir as serving_dir

        if not version_dir:
            return None, None, "no serving directory readable by the service (--serving-base)"
        with self._lock:
            cached = self._training.get(version_dir)
        if cached is not None:
            return cached[0], cached[1], None
        model_dir, name = os.path.split(version_dir.rstrip("/"))
        version = int(name)
        statistics = serving_dir.read_training_statistics(model_dir, version)
        if statistics is None:
            return None, None, f"no {serving_dir.TRAINING_STATISTICS_FILE}"
        schema = serving_dir.read_schema(model_dir, version)
        if schema is None:
            return None, None, f"no {serving_dir.SCHEMA_FILE}"
        with self._lock:
            if len(self._training) >= 4:  # version directories never change; keep a few
                self._training.pop(next(iter(self._training)))
            self._training[version_dir] = (statistics, schema)
        return statistics, schema, None


def _distance(feature: FeatureSkew) -> str:
    return "unmeasured" if feature.distance is None else f"{feature.distance:.3f}"
