"""The interface every prediction backend implements, and the tf.Example encoding.

A backend answers "P(rain tomorrow)" for rows of raw model features
(`models.features.MODEL_FEATURES`; optional ones may be None) and says which
model version answered. The service never knows whether TensorFlow runs in
its own process (`serving.inprocess`) or behind TF Serving's REST API
(`serving.tfserving`).
"""
import abc
import dataclasses
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence

from models import features

LIVE = "live"
AVAILABLE = "available"
REJECTED = "rejected"


class NoModelLoaded(RuntimeError):
    """No version is loaded yet (nothing pushed, or every version rejected)."""


class BackendError(RuntimeError):
    """The model server failed or answered something that is not a prediction."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Probabilities in request order, and the version that computed all of them."""

    probabilities: List[float]
    version: int


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One version directory as a backend sees it.

    Attributes:
      version: the integer version.
      state: LIVE (answering), AVAILABLE (loadable, not answering) or REJECTED.
      reason: why a version was rejected.
      metadata: its push_metadata.json, when readable.
    """

    version: int
    state: str
    reason: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None


class Backend(abc.ABC):
    """What the prediction service needs from a model server."""

    name = "abstract"

    @abc.abstractmethod
    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Prediction:
        """Rain probabilities for raw feature rows, all from one version.

        Raises:
          NoModelLoaded: nothing to answer with yet.
          BackendError: the model server failed.
        """

    @abc.abstractmethod
    def live_version(self) -> Optional[int]:
        """The version answering now, or None."""

    @abc.abstractmethod
    def versions(self) -> List[VersionInfo]:
        """Every version known, oldest first."""

    def vocabulary(self, key: str) -> Optional[FrozenSet[str]]:
        """Values of categorical `key` the live model learned; None if unknown."""
        return None

    def metadata(self, version: int) -> Optional[Dict[str, Any]]:
        """push_metadata.json of a version, when this backend can read it."""
        return None

    def version_dir(self, version: int) -> Optional[str]:
        """The version's directory when this process can read it (training statistics)."""
        return None

    def start(self) -> None:
        """Begins loading/polling; returns without waiting for a model."""

    def stop(self) -> None:
        """Stops background work."""


def example_kinds() -> Dict[str, str]:
    """tf.Example list kind of each model feature, as `serving_default` parses it."""
    return {key: "float" if kind == features.NUMERIC else "bytes"
            for key, kind in features.MODEL_FEATURES.items()}


def serialize_row(row: Mapping[str, Any], kinds: Optional[Dict[str, str]] = None) -> bytes:
    """A serialized tf.Example of `row`; None values and unknown keys are left out.

    Args:
      row: feature name -> float | str | int | date | None.
      kinds: feature name -> "float" | "bytes" | "int"; default `example_kinds()`.
    """
    from tensorflow.core.example import example_pb2, feature_pb2

    kinds = kinds or example_kinds()
    example = example_pb2.Example()
    for key, value in row.items():
        if value is None or key not in kinds:
            continue
        feature: feature_pb2.Feature = example.features.feature[key]
        kind = kinds[key]
        if kind == "float":
            feature.float_list.value.append(float(value))
        elif kind == "bytes":
            text = value.isoformat() if hasattr(value, "isoformat") else str(value)
            feature.bytes_list.value.append(text.encode("utf-8"))
        else:
            feature.int64_list.value.append(int(value))
    return example.SerializeToString()
