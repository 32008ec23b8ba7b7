"""Training/serving skew in the prediction service (#12: "serving-time skew uses the same thresholds").

A small real model (`serving.tiny_model`) is pushed by the real
VersionedPusher executor together with training statistics computed the way
StatisticsGen computes them (TFDV's Beam pipeline over the curated Seattle
rows as tf.Examples, the StatisticsGen layout `Split-train/FeatureStats.pb`)
and the repository's curated schema. The service then answers requests and
`GET /v1/skew` compares the rows it sent to the model with those statistics.
"""
import logging
import os
import random
import shutil

import pytest
import tensorflow as tf
from fastapi.testclient import TestClient
from tfx.types import artifact_utils, standard_artifacts

from components.versioned_pusher import executor as pusher_executor
from serving import features as serving_features
from serving import model_dir as serving_dir
from serving import skew, tiny_model
from serving.__main__ import parse_flags
from serving.api import ApiConfig, create_app
from serving.backend import Backend, Prediction, serialize_row
from serving.inprocess import InProcessBackend
from serving.tfserving import TFServingBackend

MODEL = "rain_tomorrow"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(REPO, "schema", "schema.pbtxt")
COMPARED = ["precipitation", "temp_max", "temp_min", "temp_range", "weather", "wind"]


# ------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def curated():
    return serving_features.curated_rows("seattle", tiny_model.seattle_observations())


@pytest.fixture(scope="module")
def pipeline_artifacts(tmp_path_factory, curated):
    """A StatisticsGen-like ExampleStatistics and an ImportSchemaGen-like Schema artifact."""
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    work = tmp_path_factory.mktemp("artifacts")
    schema = text_format.Parse(open(SCHEMA_PATH).read(), schema_pb2.Schema())
    kinds = {f.name: {schema_pb2.FLOAT: "float", schema_pb2.BYTES: "bytes"}.get(f.type, "int")
             for f in schema.feature}
    records = str(work / "train.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for row in curated:  # every curated column, label and date included
            writer.write(serialize_row(row, kinds))
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(work / "statistics")
    statistics.split_names = artifact_utils.encode_split_names(["train", "eval"])
    for split in ("train", "eval"):
        os.makedirs(os.path.join(statistics.uri, f"Split-{split}"))
    stats = tfdv.generate_statistics_from_tfrecord(records)
    with open(os.path.join(statistics.uri, "Split-train", "FeatureStats.pb"), "wb") as f:
        f.write(stats.SerializeToString())
    schema_artifact = standard_artifacts.Schema()
    schema_artifact.uri = str(work / "schema")
    os.makedirs(schema_artifact.uri)
    shutil.copy(SCHEMA_PATH, os.path.join(schema_artifact.uri, "schema.pbtxt"))
    return statistics, schema_artifact


def read_schema():
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(open(SCHEMA_PATH).read(), schema_pb2.Schema())


def push(work, export_dir, statistics=None, schema=None):
    """Runs VersionedPusher's executor on a blessed model; returns (model dir, version)."""
    model = standard_artifacts.Model()
    model.uri = os.path.join(work, "model")
    shutil.copytree(export_dir, os.path.join(model.uri, "Format-Serving"))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(work, "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = os.path.join(work, "pushed")
    inputs = {pusher_executor.MODEL_KEY: [model], pusher_executor.MODEL_BLESSING_KEY: [blessing]}
    if statistics is not None:
        inputs[pusher_executor.STATISTICS_KEY] = [statistics]
    if schema is not None:
        inputs[pusher_executor.SCHEMA_KEY] = [schema]
    serving = os.path.join(work, "serving")
    pusher_executor.Executor().Do(
        inputs, {pusher_executor.PUSHED_MODEL_KEY: [pushed]},
        {pusher_executor.SERVING_BASE_KEY: serving, pusher_executor.MODEL_NAME_KEY: MODEL,
         pusher_executor.KEEP_VERSIONS_KEY: 0})
    assert pushed.get_int_custom_property(pusher_executor.PUSHED) == 1
    return os.path.join(serving, MODEL), int(pushed.get_string_custom_property(
        pusher_executor.PUSHED_VERSION))


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, pipeline_artifacts):
    statistics, schema = pipeline_artifacts
    model = tiny_model.build_once()[0]
    return push(str(tmp_path_factory.mktemp("push")), model.export_dir, statistics, schema)


def service(model_dir, **config):
    backend = InProcessBackend(model_dir, poll_seconds=60)
    config = dict(dict(max_rows=1000), **config)  # skew: the defaults, 1000 rows, 300 minimum
    return TestClient(create_app(backend, ApiConfig(**config)))


def training_like_rows(curated, count, seed):
    """`count` curated rows drawn at random: requests from the training distribution."""
    return [serving_features.model_input(r) for r in random.Random(seed).sample(curated, count)]


def heated(rows):
    return [dict(r, temp_max=r["temp_max"] + 15, temp_min=r["temp_min"] + 15) for r in rows]


def seattle_days(first, count, warmer=0.0):
    days = tiny_model.seattle_observations()[first:first + count]
    return [{"date": d.date.isoformat(), "precipitation": d.precipitation,
             "temp_max": d.temp_max + warmer, "temp_min": d.temp_min + warmer,
             "wind": d.wind, "weather": d.weather} for d in days]


def send(client, rows=(), station_windows=(), warmer=0.0):
    for start in station_windows:
        response = client.post("/v1/stations/seattle/predict",
                               json={"days": seattle_days(start, 7, warmer)})
        assert response.status_code == 200, response.text
    rows = list(rows)
    for i in range(0, len(rows), 1000):
        response = client.post("/v1/predict", json={"rows": rows[i:i + 1000]})
        assert response.status_code == 200, response.text


def by_feature(body):
    return {f["feature"]: f for f in body["features"]}


# ------------------------------------------------------------ the pusher ships what skew needs


def test_the_pushed_version_carries_statistics_and_schema_and_still_loads(
        pushed, pipeline_artifacts):
    model_dir, version = pushed
    statistics, schema = pipeline_artifacts
    path = serving_dir.version_path(model_dir, version)
    shipped_stats = os.path.join(path, "assets.extra", "training_statistics", "FeatureStats.pb")
    shipped_schema = os.path.join(path, "assets.extra", "schema.pbtxt")
    assert open(shipped_stats, "rb").read() == open(
        os.path.join(statistics.uri, "Split-train", "FeatureStats.pb"), "rb").read()
    assert open(shipped_schema).read() == open(SCHEMA_PATH).read()
    assert not os.path.exists(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    metadata = serving_dir.read_metadata(model_dir, version)
    assert metadata["training_statistics"] == {
        "file": "assets.extra/training_statistics/FeatureStats.pb", "split": "train",
        "uri": statistics.uri}
    assert metadata["schema"] == {"file": "assets.extra/schema.pbtxt", "uri": schema.uri}
    assert serving_dir.incomplete_reason(model_dir, version) is None
    assert sorted(n for n in os.listdir(model_dir)) == [str(version)]  # no staging left

    # The SavedModel loads and answers exactly like the export it was copied from.
    row = training_like_rows_from_days()
    example = tf.constant([serialize_row(row)])
    loaded = tf.saved_model.load(path).signatures["serving_default"]
    original = tf.saved_model.load(tiny_model.build_once()[0].export_dir).signatures[
        "serving_default"]
    assert loaded(examples=example)["rain_probability"].numpy().tolist() == \
        original(examples=example)["rain_probability"].numpy().tolist()
    assert serving_dir.read_training_statistics(model_dir, version).datasets[0].num_examples > 1000
    assert [f.name for f in serving_dir.read_schema(model_dir, version).feature][:2] == [
        "station", "date"]


def training_like_rows_from_days():
    days = tiny_model.seattle_observations()[100:107]
    return serving_features.model_input(serving_features.feature_rows("seattle", days)[-1])


def test_statistics_without_a_train_split_push_nothing(tmp_path, pipeline_artifacts):
    statistics, schema = pipeline_artifacts
    broken = standard_artifacts.ExampleStatistics()
    broken.uri = str(tmp_path / "stats")
    broken.split_names = artifact_utils.encode_split_names(["eval"])
    os.makedirs(os.path.join(broken.uri, "Split-eval"))
    with pytest.raises(FileNotFoundError, match=r"no 'train' split .*splits: eval.*nothing pushed"):
        push(str(tmp_path), tiny_model.build_once()[0].export_dir, broken, schema)
    model_dir = tmp_path / "serving" / MODEL
    assert not model_dir.exists() or os.listdir(model_dir) == []


@pytest.mark.parametrize("relative", ["schema.pbtxt", "/abs/assets.extra/x",
                                      "assets.extra/../saved_model.pb",
                                      "assets.extra/tf_serving_warmup_requests"])
def test_extra_files_only_go_under_assets_extra(tmp_path, relative):
    source = tmp_path / "export"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph")
    (source / "variables" / "variables.index").write_bytes(b"index")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="assets.extra|warmup"):
        serving_dir.publish_version(str(source), str(tmp_path / "rain"), {},
                                    extra_files={relative: str(tmp_path / "f")})
    assert not (tmp_path / "rain").exists() or os.listdir(tmp_path / "rain") == []


# ------------------------------------------------------------ the route


def test_requests_from_the_training_distribution_show_no_skew(pushed, curated):
    model_dir, version = pushed
    with service(model_dir) as client:
        send(client, training_like_rows(curated, 400, seed=1), station_windows=range(0, 700, 70))
        response = client.get("/v1/skew")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "no_skew", body
    assert body["model"] == {"name": MODEL, "version": version, "backend": "inprocess"}
    assert body["rows_in_window"] == 410 and body["rows_by_version"] == {str(version): 410}
    assert body["window_size"] == 1000 and body["min_rows"] == 300
    assert body["skewed_features"] == []
    features = by_feature(body)
    assert sorted(features) == COMPARED
    for name, feature in features.items():
        assert feature["skewed"] is False
        assert 0 <= feature["distance"] < feature["threshold"], feature
    # The schema's skew comparators, the drift gate's thresholds.
    assert {name: (f["comparator"], f["threshold"]) for name, f in features.items()} == \
        skew.skew_comparators(read_schema())
    assert features["temp_max"]["comparator"] == "jensen_shannon_divergence"
    assert features["weather"]["comparator"] == "infinity_norm"
    assert body["training_statistics"]["uri"].endswith("statistics")


def test_fifteen_degrees_warmer_requests_are_skewed_in_temp_max_and_temp_min(
        pushed, curated, caplog):
    model_dir, version = pushed
    with service(model_dir) as client:
        send(client, heated(training_like_rows(curated, 400, seed=2)),
             station_windows=range(0, 700, 70), warmer=15.0)
        with caplog.at_level(logging.WARNING, logger="serving.skew"):
            body = client.get("/v1/skew").json()
    assert body["status"] == "skew", body
    assert body["skewed_features"] == ["temp_max", "temp_min"]
    features = by_feature(body)
    for name in ("temp_max", "temp_min"):
        assert features[name]["skewed"] is True
        assert features[name]["distance"] > features[name]["threshold"]
        assert "Jensen-Shannon divergence" in features[name]["description"]
    for name in ("precipitation", "wind", "temp_range", "weather"):
        assert features[name]["skewed"] is False
        assert features[name]["distance"] < features[name]["threshold"]
    assert f"against version {version}" in body["message"] and "temp_max 0." in body["message"]
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "skew against version" in warning.getMessage()
    assert "temp_max" in warning.getMessage() and "temp_min" in warning.getMessage()


def test_the_window_keeps_only_the_newest_rows(pushed, curated):
    model_dir, _ = pushed
    with service(model_dir, skew_window=400, skew_min_rows=300) as client:
        send(client, training_like_rows(curated, 400, seed=3))
        assert client.get("/v1/skew").json()["status"] == "no_skew"
        send(client, heated(training_like_rows(curated, 400, seed=4)))
        body = client.get("/v1/skew").json()
    assert body["rows_in_window"] == 400
    assert body["status"] == "skew" and body["skewed_features"] == ["temp_max", "temp_min"]
    # All of the window is the heated rows: the distance is that of heated traffic alone.
    assert by_feature(body)["temp_min"]["distance"] > 0.5


def test_too_few_rows_say_so(pushed, curated):
    model_dir, _ = pushed
    with service(model_dir) as client:
        send(client, heated(training_like_rows(curated, 60, seed=5)), station_windows=[0, 7])
        body = client.get("/v1/skew").json()
    assert body["status"] == "too_few_rows"
    assert body["rows_in_window"] == 62 and body["features"] == []
    assert "62 rows in the window, fewer than the 300" in body["message"]


def test_a_version_pushed_without_statistics_says_so(tmp_path, curated):
    model_dir, version = push(str(tmp_path), tiny_model.build_once()[0].export_dir)
    assert not os.path.exists(os.path.join(model_dir, str(version), "assets.extra"))
    assert "training_statistics" not in serving_dir.read_metadata(model_dir, version)
    with service(model_dir) as client:
        send(client, training_like_rows(curated, 350, seed=6))
        response = client.get("/v1/skew")
        predict = client.post("/v1/predict", json={"rows": training_like_rows(curated, 2, 7)})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "no_training_statistics"
    assert body["model"]["version"] == version and body["rows_in_window"] == 350
    assert f"version {version} carries no training statistics" in body["message"]
    assert "assets.extra/training_statistics/FeatureStats.pb" in body["message"]
    assert body["features"] == [] and body["training_statistics"] is None
    assert predict.status_code == 200  # predictions are unaffected


class _NoDirectoryBackend(Backend):
    """Answers 0.5 from version 7 and cannot read any version directory (like
    --backend tfserving without --serving-base)."""

    name = "stub"

    def predict(self, rows):
        return Prediction([0.5] * len(rows), 7)

    def live_version(self):
        return 7

    def versions(self):
        return []


def test_no_readable_serving_directory_says_so(curated):
    with TestClient(create_app(_NoDirectoryBackend(), ApiConfig(skew_min_rows=1))) as client:
        send(client, training_like_rows(curated, 3, seed=8))
        body = client.get("/v1/skew").json()
    assert body["status"] == "no_training_statistics" and body["rows_in_window"] == 3
    assert "no serving directory readable by the service (--serving-base)" in body["message"]
    assert body["model"] == {"name": MODEL, "version": 7, "backend": "stub"}


def test_the_tfserving_backend_reads_statistics_from_the_mounted_directory(tmp_path):
    assert TFServingBackend("http://x:8501", MODEL, model_dir=str(tmp_path)).version_dir(5) == \
        os.path.join(str(tmp_path), "5")
    assert TFServingBackend("http://x:8501", MODEL).version_dir(5) is None


def test_window_zero_turns_skew_off_and_no_model_is_503(tmp_path, curated):
    with TestClient(create_app(_NoDirectoryBackend(), ApiConfig(skew_window=0))) as client:
        send(client, training_like_rows(curated, 3, seed=9))
        body = client.get("/v1/skew").json()
    assert body["status"] == "disabled" and body["rows_in_window"] == 0
    with service(str(tmp_path / "empty")) as client:
        response = client.get("/v1/skew")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_model_loaded"


def test_skew_flags():
    base = ["--serving-base", "runs/serving"]
    config = parse_flags(base)
    assert (config.api.skew_window, config.api.skew_min_rows) == (1000, 300)
    config = parse_flags(base + ["--skew-window", "50", "--skew-min-rows", "20"])
    assert (config.api.skew_window, config.api.skew_min_rows) == (50, 20)
    assert parse_flags(base + ["--skew-window", "0"]).api.skew_window == 0


@pytest.mark.parametrize("argv, message", [
    (["--skew-window", "-1"], "--skew-window must be >= 0"),
    (["--skew-min-rows", "0"], "--skew-min-rows must be >= 1"),
    (["--skew-window", "50", "--skew-min-rows", "60"], "larger than --skew-window 50"),
])
def test_bad_skew_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_flags(["--serving-base", "runs/serving"] + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_window_is_bounded_and_thread_safe():
    import threading

    window = skew.SkewWindow(100)
    threads = [threading.Thread(target=lambda i=i: [window.add([{"n": i}], 1) for _ in range(500)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(window.snapshot()) == 100
    window.add([{"n": "last"}], 2)
    assert window.snapshot()[-1] == (2, {"n": "last"}) and len(window.snapshot()) == 100


def test_the_pipeline_passes_statistics_and_schema_to_the_pusher():
    from pipeline.config import PipelineConfig
    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(PipelineConfig(
        pipeline_root="/root", curated_root="/data/curated",
        schema_path="/schema/schema.pbtxt", serving_base="/serving"))
    nodes = {c.id: c for c in pipeline.components}
    inputs = nodes["Pusher"].inputs
    assert inputs[pusher_executor.STATISTICS_KEY].producer_component_id == "StatisticsGen"
    assert inputs[pusher_executor.STATISTICS_KEY].output_key == "statistics"
    assert inputs[pusher_executor.SCHEMA_KEY].producer_component_id == "ImportSchemaGen"
