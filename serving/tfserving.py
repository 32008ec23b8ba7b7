"""TF Serving backend: serialized tf.Examples to TF Serving's REST `:predict`.

The contract is TF Serving's REST API document (tensorflow_serving/g3doc/
api_rest.md):
  * model status: `GET /v1/models/<name>` -> {"model_version_status":
    [{"version": "<n>", "state": "AVAILABLE", "status": {...}}, ...]};
  * predict: `POST /v1/models/<name>/versions/<n>:predict` with
    {"signature_name": "serving_default", "instances": [{"b64": "..."}, ...]}
    (the signature has one input, `examples`, so each instance is its value;
    binary strings are base64 inside {"b64": ...}) -> {"predictions": [...]},
    one entry per instance (here `[p]`: the output is [batch, 1]);
  * errors: a non-2xx status with {"error": "<message>"}.

TF Serving's predict response does not say which version answered, so the
version is polled from the status API (like the in-process poller) and named
in the URL; if TF Serving has unloaded it meanwhile (404), the status is read
again and the request retried once.
"""
import base64
import logging
import threading
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence

import httpx

from serving import model_dir as serving_dir
from serving.backend import (
    AVAILABLE, LIVE, Backend, BackendError, NoModelLoaded, Prediction, VersionInfo,
    serialize_row)
from serving.inprocess import SIGNATURE, read_vocabularies

log = logging.getLogger(__name__)

_AVAILABLE = "AVAILABLE"


class TFServingBackend(Backend):
    """Calls TF Serving's REST API for `model_name` at `url`.

    Args:
      url: e.g. http://rain-tomorrow-serving:8501.
      model_name: the name in TF Serving's models.config.
      model_dir: optional `<serving_base>/<model_name>` readable by this
        process (e.g. the models volume mounted read-only): push metadata and
        vocabularies of the served version come from there; without it the
        service cannot tell an unknown station from a known one.
      poll_seconds: how often to re-read the model status.
      timeout_seconds: per HTTP request.
    """

    name = "tfserving"

    def __init__(self, url: str, model_name: str, model_dir: Optional[str] = None,
                 poll_seconds: float = 2.0, timeout_seconds: float = 10.0):
        self._base = url.rstrip("/") + f"/v1/models/{model_name}"
        self._model_dir = model_dir
        self._poll_seconds = poll_seconds
        self._client = httpx.Client(timeout=timeout_seconds)
        self._live: Optional[int] = None
        self._statuses: List[Dict[str, Any]] = []
        self._vocabularies: Dict[int, Dict[str, FrozenSet[str]]] = {}
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="tfserving-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._client.close()

    def _poll(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must outlive one odd answer
                log.exception("Reading TF Serving's model status failed; keeping version %s",
                              self._live)

    def refresh(self) -> Optional[int]:
        """Reads the model status; the newest AVAILABLE version becomes live."""
        try:
            response = self._client.get(self._base)
        except httpx.HTTPError as error:
            log.warning("TF Serving status at %s unreachable: %s", self._base, error)
            return self._live
        if response.status_code == 404:  # nothing pushed or loaded yet
            self._statuses, self._live = [], None
            return None
        if response.status_code != 200:
            log.warning("TF Serving status %s: %s", response.status_code, _error_text(response))
            return self._live
        try:
            statuses = list(response.json().get("model_version_status", []))
            available = [int(s["version"]) for s in statuses if s.get("state") == _AVAILABLE]
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("TF Serving status is not a GetModelStatusResponse: %s", error)
            return self._live
        self._statuses = statuses
        live = max(available) if available else None
        if live != self._live:
            log.info("TF Serving now serves version %s (was %s)", live, self._live)
        self._live = live
        return live

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Prediction:
        body = {
            "signature_name": SIGNATURE,
            "instances": [{"b64": base64.b64encode(serialize_row(r)).decode("ascii")}
                          for r in rows],
        }
        for attempt in (1, 2):
            version = self._live if self._live is not None else self.refresh()
            if version is None:
                raise NoModelLoaded(f"TF Serving at {self._base} has no AVAILABLE version")
            try:
                response = self._client.post(f"{self._base}/versions/{version}:predict", json=body)
            except httpx.HTTPError as error:
                raise BackendError(f"TF Serving unreachable: {error}") from error
            if response.status_code == 404 and attempt == 1:
                self.refresh()  # the version was unloaded since the last poll
                continue
            if response.status_code != 200:
                raise BackendError(f"TF Serving answered {response.status_code}: "
                                   f"{_error_text(response)}")
            try:
                body = response.json()
            except ValueError as error:
                raise BackendError(f"TF Serving answered non-JSON: {response.text[:200]!r}") from error
            return Prediction(_probabilities(body, len(rows)), version)
        raise BackendError("TF Serving kept answering 404 for the live version")

    def live_version(self) -> Optional[int]:
        return self._live

    def versions(self) -> List[VersionInfo]:
        result = []
        for status in sorted(self._statuses, key=lambda s: int(s["version"])):
            version = int(status["version"])
            state = LIVE if version == self._live else (
                AVAILABLE if status.get("state") == _AVAILABLE else status.get("state", "?").lower())
            reason = (status.get("status") or {}).get("error_message") or None
            result.append(VersionInfo(version, state, reason, self.metadata(version)))
        return result

    def vocabulary(self, key: str) -> Optional[FrozenSet[str]]:
        version = self._live
        if version is None or not self._model_dir:
            return None
        if version not in self._vocabularies:
            self._vocabularies[version] = read_vocabularies(
                serving_dir.version_path(self._model_dir, version))
        return self._vocabularies[version].get(key)

    def version_dir(self, version: int) -> Optional[str]:
        return serving_dir.version_path(self._model_dir, version) if self._model_dir else None

    def metadata(self, version: int) -> Optional[Dict[str, Any]]:
        if not self._model_dir:
            return None
        try:
            return serving_dir.read_metadata(self._model_dir, version)
        except (ValueError, OSError):
            return None


def _probabilities(body: Dict[str, Any], expected: int) -> List[float]:
    """One float per instance from {"predictions": [[p], ...]} (or [p, ...])."""
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != expected:
        raise BackendError(f"TF Serving answered {str(body)[:200]!r}, not {expected} predictions")
    values = []
    for item in predictions:
        if isinstance(item, dict):  # several named outputs: one object per instance
            item = item.get("rain_probability")
        while isinstance(item, list) and len(item) == 1:
            item = item[0]
        if not isinstance(item, (int, float)):
            raise BackendError(f"TF Serving prediction {item!r} is not a number")
        values.append(float(item))
    return values


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))[:500]
    except ValueError:
        return response.text[:500]
