"""In-process backend: TensorFlow loads the newest complete version itself.

Like TF Serving's file-system poller: every `poll_seconds` the model
directory is listed; a version newer than the live one is checked
(`model_dir.incomplete_reason`), loaded, and asked for one prediction
before it replaces the live model in a single reference assignment, so a
request is answered entirely by the old or entirely by the new version. A
version that is incomplete, fails to load or fails the trial prediction is
rejected with a logged reason and the live model keeps serving; it is
retried only when its directory's contents change.
"""
import dataclasses
import logging
import os
import threading
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from models import features
from serving import model_dir as serving_dir
from serving.backend import (
    AVAILABLE, LIVE, REJECTED, Backend, BackendError, NoModelLoaded, Prediction,
    VersionInfo, serialize_row)

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
INPUT_KEY = "examples"
OUTPUT_KEY = "rain_probability"
# A plausible day, only for the trial prediction a new version must pass.
_TRIAL_ROW = {key: 1.0 for key, kind in features.MODEL_FEATURES.items()
              if kind == features.NUMERIC}
_TRIAL_ROW[features.STATION_KEY] = "trial"


@dataclasses.dataclass(frozen=True)
class _Loaded:
    version: int
    saved_model: Any  # kept alive: the signature's variables belong to it
    signature: Any
    vocabularies: Dict[str, FrozenSet[str]]
    metadata: Optional[Dict[str, Any]]


class InProcessBackend(Backend):
    """Serves `<serving_base>/<model_name>/<newest complete version>/` with TensorFlow.

    Args:
      model_dir: `<serving_base>/<model_name>`.
      poll_seconds: how often to look for a new version (TF Serving's
        --file_system_poll_wait_seconds defaults to 1).
    """

    name = "inprocess"

    def __init__(self, model_dir: str, poll_seconds: float = 2.0):
        self._model_dir = model_dir
        self._poll_seconds = poll_seconds
        self._live: Optional[_Loaded] = None
        self._rejected: Dict[int, Tuple[tuple, str]] = {}
        self._refresh_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must outlive a bad listing
                log.exception("Polling %s failed; keeping version %s",
                              self._model_dir, self.live_version())

    def refresh(self) -> Optional[int]:
        """One poll: loads the newest acceptable version newer than the live one.

        Returns:
          The live version afterwards.
        """
        with self._refresh_lock:
            live = self._live
            present = serving_dir.existing_versions(self._model_dir)
            if live is not None and live.version not in present:
                # Rolled back (the live directory was removed), as TF Serving
                # would: the newest remaining version takes over, if one loads.
                log.warning("Live version %s disappeared from %s", live.version, self._model_dir)
                candidates = present
            else:
                candidates = [v for v in present if live is None or v > live.version]
            for version in reversed(candidates):
                if self._still_rejected(version):
                    continue
                loaded = self._try_load(version)
                if loaded is not None:
                    self._live = loaded  # the atomic switch
                    log.info("Now serving version %s of %s (was %s)", version,
                             self._model_dir, live.version if live else None)
                    break
            return self.live_version()

    def _still_rejected(self, version: int) -> bool:
        rejected = self._rejected.get(version)
        return rejected is not None and rejected[0] == _fingerprint(self._version_path(version))

    def _try_load(self, version: int) -> Optional[_Loaded]:
        path = self._version_path(version)
        fingerprint = _fingerprint(path)
        try:
            reason = serving_dir.incomplete_reason(self._model_dir, version)
            if reason:
                raise ValueError(f"incomplete version directory: {reason}")
            loaded = _load(path, version, serving_dir.read_metadata(self._model_dir, version))
        except Exception as error:  # any failure means: do not serve this one
            reason = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            self._rejected[version] = (fingerprint, reason)
            log.warning("Ignoring version %s in %s (%s); still serving %s", version,
                        self._model_dir, reason, self.live_version())
            return None
        self._rejected.pop(version, None)
        return loaded

    def _version_path(self, version: int) -> str:
        return serving_dir.version_path(self._model_dir, version)

    # ------------------------------------------------------------ answering

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Prediction:
        import tensorflow as tf

        live = self._live  # read once: the whole batch uses one version
        if live is None:
            raise NoModelLoaded(f"no loadable version under {self._model_dir} yet")
        examples = tf.constant([serialize_row(row) for row in rows])
        try:
            output = live.signature(**{INPUT_KEY: examples})[OUTPUT_KEY].numpy()
        except Exception as error:
            raise BackendError(f"version {live.version} failed to predict: {error}") from error
        return Prediction([float(p) for p in output.reshape(-1)], live.version)

    def live_version(self) -> Optional[int]:
        live = self._live
        return live.version if live else None

    def versions(self) -> List[VersionInfo]:
        live = self.live_version()
        result = []
        for version in serving_dir.existing_versions(self._model_dir):
            rejected = self._rejected.get(version)
            if version == live:
                state, reason = LIVE, None
            elif rejected:
                state, reason = REJECTED, rejected[1]
            else:
                reason = serving_dir.incomplete_reason(self._model_dir, version)
                state = REJECTED if reason else AVAILABLE
            result.append(VersionInfo(version, state, reason, self.metadata(version)))
        return result

    def vocabulary(self, key: str) -> Optional[FrozenSet[str]]:
        live = self._live
        return live.vocabularies.get(key) if live else None

    def version_dir(self, version: int) -> Optional[str]:
        return self._version_path(version)

    def metadata(self, version: int) -> Optional[Dict[str, Any]]:
        live = self._live
        if live and live.version == version:
            return live.metadata
        try:
            return serving_dir.read_metadata(self._model_dir, version)
        except (ValueError, OSError):
            return None


def _load(path: str, version: int, metadata: Optional[Dict[str, Any]]) -> _Loaded:
    """Loads a SavedModel and proves it answers; raises on anything unexpected."""
    import numpy as np
    import tensorflow as tf

    saved_model = tf.saved_model.load(path)
    signature = saved_model.signatures[SIGNATURE]
    trial = signature(**{INPUT_KEY: tf.constant([serialize_row(_TRIAL_ROW)])})[OUTPUT_KEY]
    values = trial.numpy()
    if values.shape != (1, 1) or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"trial prediction {values.tolist()} is not one probability")
    return _Loaded(version, saved_model, signature, read_vocabularies(path), metadata)


def read_vocabularies(path: str) -> Dict[str, FrozenSet[str]]:
    """tf.Transform's vocabulary files, saved as assets named after the feature."""
    result = {}
    for key, kind in features.MODEL_FEATURES.items():
        asset = os.path.join(path, "assets", key)
        if kind == features.CATEGORICAL and os.path.exists(asset):
            with open(asset, encoding="utf-8") as f:
                result[key] = frozenset(line.rstrip("\n") for line in f if line.strip())
    return result


def _fingerprint(path: str) -> tuple:
    """Names, sizes and mtimes of every file: changes when the directory is rewritten."""
    entries = []
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))
