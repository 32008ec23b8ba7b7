"""The prediction service on the in-process backend, against a real pushed SavedModel.

One small model pair is trained through the real code path
(`serving.tiny_model`: tf.Transform's preprocessing_fn, the Keras model, the
Trainer's export) and pushed with the real pusher's `publish_version`.
Every probability is checked against the SavedModel's own `serving_default`
output for the same features, encoded here independently as tf.Examples.
"""
import datetime
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from models import features
from serving import model_dir as serving_dir
from serving import tiny_model
from serving.api import ApiConfig, create_app
from serving.inprocess import InProcessBackend

MODEL = "rain_tomorrow"


def example(row):
    """tf.Example of a feature row, built without the service's encoder."""
    feature = {}
    for key, kind in features.MODEL_FEATURES.items():
        value = row.get(key)
        if value is None:
            continue
        if kind == features.NUMERIC:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        else:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def saved_model_probabilities(export_dir, rows):
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    output = serve(examples=tf.constant([example(r) for r in rows]))["rain_probability"]
    return output.numpy()[:, 0].tolist()


def seattle_days(first, count):
    """`count` consecutive raw Seattle days from index `first`, as request JSON."""
    days = tiny_model.seattle_observations()[first:first + count]
    return [{"date": d.date.isoformat(), "precipitation": d.precipitation,
             "temp_max": d.temp_max, "temp_min": d.temp_min, "wind": d.wind,
             "weather": d.weather} for d in days]


@pytest.fixture(scope="module")
def models():
    return tiny_model.build_once()


@pytest.fixture()
def serving_base(tmp_path, models):
    base = tmp_path / "serving"
    tiny_model.publish(models[0], str(base / MODEL), version=100)
    return base


@pytest.fixture()
def service(serving_base):
    backend = InProcessBackend(str(serving_base / MODEL), poll_seconds=0.2)
    with TestClient(create_app(backend, ApiConfig(max_days=40, max_rows=5,
                                                  max_body_bytes=20_000))) as client:
        yield client, backend


def error_fields(response):
    body = response.json()
    assert set(body) == {"error"}, body
    return [(f["field"], f["message"]) for f in body["error"]["fields"]]


# ------------------------------------------------------------ answers


def test_station_prediction_is_the_saved_models_own_output(service, models):
    client, _ = service
    days = seattle_days(30, 10)
    response = client.post("/v1/stations/seattle/predict", json={"days": days})
    assert response.status_code == 200, response.text
    body = response.json()

    assert body["model"] == {"name": MODEL, "version": 100, "backend": "inprocess"}
    assert body["date"] == days[-1]["date"]
    assert body["station_in_vocabulary"] is True and body["warnings"] == []
    row = body["features"]
    assert set(row) == set(features.MODEL_FEATURES) | {"date"}
    # Hand checks of the engineered features against the days sent.
    assert row["precipitation_lag1"] == days[-2]["precipitation"]
    assert row["temp_max_lag2"] == days[-3]["temp_max"]
    assert row["wind_mean_7d"] == pytest.approx(np.mean([d["wind"] for d in days[-7:]]))
    assert row["temp_range"] == pytest.approx(days[-1]["temp_max"] - days[-1]["temp_min"])
    (expected,) = saved_model_probabilities(models[0].export_dir, [row])
    assert 0.0 <= body["rain_probability"] <= 1.0
    assert body["rain_probability"] == pytest.approx(expected, abs=1e-6)


def test_feature_rows_are_answered_in_order_with_missing_optionals(service, models):
    client, _ = service
    first = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(60, 7)})
    second = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(200, 7)})
    rows = [first.json()["features"], second.json()["features"]]
    rows = [{k: v for k, v in r.items() if k != "date"} for r in rows]
    rows[1] = dict(rows[1], precipitation_lag1=None, weather=None)

    response = client.post("/v1/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    got = [p["rain_probability"] for p in response.json()["predictions"]]
    expected = saved_model_probabilities(models[0].export_dir, rows)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got[0] == pytest.approx(first.json()["rain_probability"], abs=1e-6)
    assert response.json()["model"]["version"] == 100


def test_unknown_station_is_answered_with_the_oov_caveat(service, models):
    client, _ = service
    response = client.post("/v1/stations/portland/predict", json={"days": seattle_days(0, 7)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["station_in_vocabulary"] is False
    assert "out of vocabulary" in body["warnings"][0] and "portland" in body["warnings"][0]
    (expected,) = saved_model_probabilities(models[0].export_dir, [body["features"]])
    assert body["rain_probability"] == pytest.approx(expected, abs=1e-6)


def test_health_models_and_openapi(service):
    client, _ = service
    assert client.get("/healthz").json() == {
        "status": "ok", "model_loaded": True, "live_version": 100}
    models = client.get("/v1/models").json()
    assert models["live_version"] == 100 and models["backend"] == "inprocess"
    (version,) = models["versions"]
    assert version["state"] == "live" and version["metrics"]["candidate"]["auc"] > 0
    spec = client.get("/openapi.json").json()
    assert {"/v1/stations/{station}/predict", "/v1/predict", "/healthz",
            "/v1/models"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


# ------------------------------------------------------------ bad input: 4xx, field named


def test_a_missing_day_names_the_date(service):
    client, _ = service
    days = seattle_days(10, 9)
    del days[5]
    response = client.post("/v1/stations/seattle/predict", json={"days": days})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "missing_day"
    missing = seattle_days(15, 1)[0]["date"]
    assert error_fields(response) == [("days", f"missing {missing}")]


def test_fewer_than_seven_days_is_a_missing_day(service):
    client, _ = service
    response = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(10, 5)})
    assert response.status_code == 422
    assert len(error_fields(response)) == 2  # the two oldest days of the window


@pytest.mark.parametrize("index, field, value, message", [
    (2, "precipitation", "abc", "non-numeric value in precipitation"),
    (0, "wind", "n/a", "non-numeric value in wind"),
    (5, "wind", True, "non-numeric value in wind"),
    (3, "precipitation", -1.0, "negative precipitation"),
    (6, "temp_min", 70.0, "impossible temperature"),
    (1, "date", "2012-13-01", "unparseable date"),
])
def test_a_bad_value_names_its_field(service, index, field, value, message):
    client, _ = service
    days = seattle_days(10, 7)
    days[index][field] = value
    response = client.post("/v1/stations/seattle/predict", json={"days": days})
    assert response.status_code == 422, response.text
    assert error_fields(response) == [(f"days[{index}].{field}", message)]


def test_nan_and_missing_fields_and_unknown_fields_are_named(service):
    client, _ = service
    days = seattle_days(10, 7)
    days[4]["temp_max"] = float("nan")
    del days[5]["wind"]
    days[6]["humidity"] = 3
    response = client.post("/v1/stations/seattle/predict",
                           content=json.dumps({"days": days}), headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert sorted(error_fields(response)) == [
        ("days[4].temp_max", "non-numeric value (not finite) in temp_max"),
        ("days[5].wind", "missing value"),
        ("days[6].humidity", "unknown field"),
    ]


def test_days_out_of_order_are_refused(service):
    client, _ = service
    days = seattle_days(10, 8)
    days[6], days[7] = days[7], days[6]
    response = client.post("/v1/stations/seattle/predict", json={"days": days})
    assert response.status_code == 422
    assert error_fields(response)[0][0] == "days[7].date"


def test_requests_too_large_are_413_naming_the_field(service):
    client, _ = service
    too_many = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(0, 41)})
    assert too_many.status_code == 413
    assert error_fields(too_many) == [("days", "41 days; at most 40")]

    big = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(0, 300)})
    assert big.status_code == 413
    assert error_fields(big)[0][0] == "body"

    # A chunked body without Content-Length is counted as it streams in.
    chunks = (b"x" * 5000 for _ in range(6))
    streamed = client.post("/v1/stations/seattle/predict", content=chunks,
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and error_fields(streamed)[0][0] == "body"

    row = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(0, 7)}).json()
    row = {k: v for k, v in row["features"].items() if k != "date"}
    rows = client.post("/v1/predict", json={"rows": [row] * 6})
    assert rows.status_code == 413 and error_fields(rows) == [("rows", "6 rows; at most 5")]


def test_feature_rows_name_missing_and_unknown_features(service):
    client, _ = service
    row = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(0, 7)}).json()
    row = {k: v for k, v in row["features"].items() if k != "date"}
    broken = dict(row, temp_range="warm", colour="blue")
    del broken["wind_mean_3d"]
    response = client.post("/v1/predict", json={"rows": [row, broken]})
    assert response.status_code == 422
    assert sorted(error_fields(response)) == [
        ("rows[1].colour", "unknown field"),
        ("rows[1].temp_range", "non-numeric value in temp_range"),
        ("rows[1].wind_mean_3d", "missing value"),
    ]


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'{"days": "yesterday"}', b'{"days": [1, 2]}', b"null",
    b'{"days": [{"date": null}]}', b'{"rows": []}', b"[" * 15000 + b"]" * 15000,
    b'{"days": [], "rows": [], "extra": 1}', "{\"days\": \"\u00e9\ud800\"}".encode("utf-8", "surrogatepass"),
])
def test_malformed_bodies_are_4xx_never_500(service, body):
    client, _ = service
    for path in ("/v1/stations/seattle/predict", "/v1/predict"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (path, body, response.text)
        assert response.json()["error"]["fields"], response.text


def test_no_model_yet_is_503_and_not_ready(tmp_path):
    backend = InProcessBackend(str(tmp_path / "empty" / MODEL), poll_seconds=0.2)
    with TestClient(create_app(backend)) as client:
        assert client.get("/healthz").status_code == 503
        assert client.get("/livez").status_code == 200
        response = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(0, 7)})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "no_model_loaded"


# ------------------------------------------------------------ versions: hot swap, faults


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_new_version_is_picked_up_under_load_without_a_failed_request(service, serving_base,
                                                                       models):
    client, backend = service
    days = seattle_days(100, 8)
    results, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            r = client.post("/v1/stations/seattle/predict", json={"days": days})
            results.append((r.status_code, r.json().get("model", {}).get("version"),
                            r.json().get("rain_probability")))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    tiny_model.publish(models[1], str(serving_base / MODEL), version=200)
    assert wait_for(lambda: backend.live_version() == 200)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()

    assert {status for status, _, _ in results} == {200}
    versions = [v for _, v, _ in results]
    assert versions[0] == 100 and versions[-1] == 200
    # Once a request saw 200, none after it (per thread order) needs the old one;
    # each answer is exactly its version's SavedModel output.
    row = client.post("/v1/stations/seattle/predict", json={"days": days}).json()["features"]
    expected = {100: saved_model_probabilities(models[0].export_dir, [row])[0],
                200: saved_model_probabilities(models[1].export_dir, [row])[0]}
    assert expected[100] != pytest.approx(expected[200], abs=1e-6)
    for _, version, probability in results:
        assert probability == pytest.approx(expected[version], abs=1e-6)


def test_corrupt_and_half_written_versions_are_ignored_with_a_reason(service, serving_base,
                                                                     models, caplog):
    client, backend = service
    model_dir = serving_base / MODEL
    # Half-written: a copy that stopped before variables/ arrived.
    half = model_dir / "300"
    half.mkdir()
    shutil.copy(os.path.join(models[1].export_dir, "saved_model.pb"), half)
    # Corrupt: every file present, the graph is garbage.
    corrupt = model_dir / "400"
    shutil.copytree(models[1].export_dir, corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"\x00garbage")
    (corrupt / serving_dir.METADATA_FILE).write_text(json.dumps({"version": 400}))

    with caplog.at_level("WARNING"):
        backend.refresh()
    assert backend.live_version() == 100
    states = {v["version"]: v for v in client.get("/v1/models").json()["versions"]}
    assert states[100]["state"] == "live"
    assert states[300]["state"] == "rejected" and "variables" in states[300]["reason"]
    assert states[400]["state"] == "rejected" and states[400]["reason"]
    assert any("Ignoring version 400" in r.getMessage() for r in caplog.records)
    response = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(0, 7)})
    assert response.status_code == 200 and response.json()["model"]["version"] == 100

    # A good newer version still goes live past the rejected ones.
    tiny_model.publish(models[1], str(model_dir), version=500)
    assert wait_for(lambda: backend.live_version() == 500)
    assert client.get("/healthz").json()["live_version"] == 500


def test_the_start_command_parses_into_a_typed_config():
    from serving.__main__ import parse_flags

    config = parse_flags(["--serving-base", "runs/serving", "--port", "8123"])
    assert (config.backend, config.model_dir, config.port, config.host) == (
        "inprocess", os.path.join("runs/serving", MODEL), 8123, "127.0.0.1")
    with pytest.raises(SystemExit):
        parse_flags(["--backend", "tfserving"])


def test_removing_the_live_version_rolls_back_to_the_newest_remaining(service, serving_base,
                                                                     models):
    client, backend = service
    tiny_model.publish(models[1], str(serving_base / MODEL), version=200)
    assert wait_for(lambda: backend.live_version() == 200)
    shutil.rmtree(serving_base / MODEL / "200")
    assert wait_for(lambda: backend.live_version() == 100)
    response = client.post("/v1/stations/seattle/predict", json={"days": seattle_days(0, 7)})
    assert response.json()["model"]["version"] == 100


def test_a_station_id_that_is_not_valid_unicode_is_answered_not_a_500(service):
    client, _ = service
    response = client.post("/v1/stations/%ED%A0%80x/predict", json={"days": seattle_days(0, 7)})
    assert response.status_code < 500, response.text
