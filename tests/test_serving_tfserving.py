"""The TF Serving backend against a stand-in for TF Serving's REST API.

No TF Serving binary exists on the development machine. `StandInTFServing`
is *our model of TF Serving*: an HTTP server on 127.0.0.1 implementing the
request/response shapes of TF Serving's REST API document
(tensorflow_serving/g3doc/api_rest.md) for the calls the backend makes -
model status, `:predict` in row format with {"b64": ...} binary values, the
{"error": ...} body on failure, 404 for a version that is not loaded - and
really running the pushed SavedModel's `serving_default`. Like TF Serving's
default version policy it keeps only the newest version loaded. What real TF
Serving does beyond that document is not checked here.
"""
import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from serving import model_dir as serving_dir
from serving import tiny_model
from serving.api import create_app
from serving.backend import BackendError
from serving.tfserving import TFServingBackend, _probabilities
from tests.test_serving_api import MODEL, saved_model_probabilities, seattle_days

_STATUS = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?$")
_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")


class StandInTFServing:
    """Serves `<model_dir>` as TF Serving's REST API would (see the module docstring)."""

    def __init__(self, model_dir, model_name):
        self.model_dir, self.model_name = model_dir, model_name
        self.loaded = {}  # version -> serving_default
        self.requests = []
        self.fail_with = None  # (status, message) to answer every predict with
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.reload()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def reload(self):
        """Loads the newest version, then unloads the others (latest-1 policy)."""
        versions = serving_dir.existing_versions(self.model_dir)
        if versions and versions[-1] not in self.loaded:
            newest = versions[-1]
            path = serving_dir.version_path(self.model_dir, newest)
            self.loaded[newest] = tf.saved_model.load(path).signatures
        for version in list(self.loaded):
            if versions and version != versions[-1]:
                del self.loaded[version]

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                match = _STATUS.match(self.path)
                if not match or match.group(1) != standin.model_name or not standin.loaded:
                    return self._reply(404, {"error": f"Could not find any versions of model "
                                                      f"{match.group(1) if match else '?'}"})
                statuses = [{"version": str(v), "state": "AVAILABLE",
                             "status": {"error_code": "OK", "error_message": ""}}
                            for v in sorted(standin.loaded)]
                self._reply(200, {"model_version_status": statuses})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                standin.requests.append((self.path, body))
                match = _PREDICT.match(self.path)
                if not match or match.group(1) != standin.model_name:
                    return self._reply(404, {"error": "Servable not found"})
                version = int(match.group(2)) if match.group(2) else max(standin.loaded, default=None)
                if version not in standin.loaded:
                    return self._reply(404, {"error": f"Servable not found for request: "
                                                      f"Specific({standin.model_name}, {version})"})
                if standin.fail_with:
                    return self._reply(*standin.fail_with)
                signatures = standin.loaded[version]
                name = body.get("signature_name", "serving_default")
                if name not in signatures:
                    return self._reply(400, {"error": f"Serving signature name: \"{name}\" not found"})
                if ("instances" in body) == ("inputs" in body):
                    return self._reply(400, {"error": "Missing 'inputs' or 'instances' key"})
                values = body.get("instances", body.get("inputs"))
                (input_name,) = signatures[name].structured_input_signature[1]
                if isinstance(values, dict):
                    values = values[input_name]
                decoded = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode()
                           for v in values]
                outputs = signatures[name](**{input_name: tf.constant(decoded)})
                (output,) = outputs.values()  # one named output: the name is omitted
                key = "predictions" if "instances" in body else "outputs"
                self._reply(200, {key: output.numpy().tolist()})

        return Handler


@pytest.fixture(scope="module")
def models():
    return tiny_model.build_once()


@pytest.fixture()
def model_dir(tmp_path, models):
    directory = str(tmp_path / "serving" / MODEL)
    tiny_model.publish(models[0], directory, version=100)
    return directory


def test_predictions_go_through_tf_servings_rest_contract(model_dir, models):
    with StandInTFServing(model_dir, MODEL) as standin:
        backend = TFServingBackend(standin.url, MODEL, model_dir=model_dir, poll_seconds=60)
        with TestClient(create_app(backend)) as client:
            response = client.post("/v1/stations/seattle/predict",
                                   json={"days": seattle_days(40, 7)})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model"] == {"name": MODEL, "version": 100, "backend": "tfserving"}
            assert body["station_in_vocabulary"] is True
            (expected,) = saved_model_probabilities(models[0].export_dir, [body["features"]])
            assert body["rain_probability"] == pytest.approx(expected, abs=1e-6)

            path, request = standin.requests[-1]
            assert path == f"/v1/models/{MODEL}/versions/100:predict"
            assert set(request) == {"signature_name", "instances"}
            assert request["signature_name"] == "serving_default"
            (instance,) = request["instances"]
            sent = tf.train.Example.FromString(base64.b64decode(instance["b64"]))
            assert sent.features.feature["precipitation_lag1"].float_list.value[0] == \
                pytest.approx(body["features"]["precipitation_lag1"])
            assert sent.features.feature["station"].bytes_list.value == [b"seattle"]

            models_view = client.get("/v1/models").json()
            assert models_view["live_version"] == 100
            assert models_view["versions"][0]["metrics"]["candidate"]["auc"] > 0


def test_a_new_version_is_followed_even_before_the_next_status_poll(model_dir, models):
    with StandInTFServing(model_dir, MODEL) as standin:
        backend = TFServingBackend(standin.url, MODEL, poll_seconds=60)
        with TestClient(create_app(backend)) as client:
            days = {"days": seattle_days(70, 7)}
            assert client.post("/v1/stations/seattle/predict", json=days).json()["model"][
                "version"] == 100
            tiny_model.publish(models[1], model_dir, version=200)
            standin.reload()  # 200 loaded, 100 unloaded: the backend's cached 100 is now a 404
            response = client.post("/v1/stations/seattle/predict", json=days)
            assert response.status_code == 200, response.text
            assert response.json()["model"]["version"] == 200
            (expected,) = saved_model_probabilities(models[1].export_dir,
                                                    [response.json()["features"]])
            assert response.json()["rain_probability"] == pytest.approx(expected, abs=1e-6)
            # Without the models volume the service cannot see the vocabulary: it says so.
            assert response.json()["station_in_vocabulary"] is None
            assert "unknown" in response.json()["warnings"][0]


def test_tf_serving_failures_are_502_and_no_model_is_503(model_dir, tmp_path):
    with StandInTFServing(model_dir, MODEL) as standin:
        backend = TFServingBackend(standin.url, MODEL, poll_seconds=60)
        with TestClient(create_app(backend)) as client:
            standin.fail_with = (500, {"error": "Tensor name: examples has no shape information"})
            response = client.post("/v1/stations/seattle/predict",
                                   json={"days": seattle_days(0, 7)})
            assert response.status_code == 502
            assert "no shape information" in response.json()["error"]["message"]

    empty = StandInTFServing(str(tmp_path / "nothing"), MODEL)
    with empty:
        backend = TFServingBackend(empty.url, MODEL, poll_seconds=60)
        with TestClient(create_app(backend)) as client:
            assert client.get("/healthz").status_code == 503
            response = client.post("/v1/stations/seattle/predict",
                                   json={"days": seattle_days(0, 7)})
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "no_model_loaded"


def test_prediction_shapes_of_the_rest_api_are_read_and_checked():
    assert _probabilities({"predictions": [[0.25], [0.5]]}, 2) == [0.25, 0.5]
    assert _probabilities({"predictions": [0.25]}, 1) == [0.25]
    assert _probabilities({"predictions": [{"rain_probability": [0.75]}]}, 1) == [0.75]
    with pytest.raises(BackendError):
        _probabilities({"predictions": [[0.1]]}, 2)
    with pytest.raises(BackendError):
        _probabilities({"error": "x"}, 1)
