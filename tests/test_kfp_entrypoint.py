"""The launcher-I/O entrypoint: artifact URIs to KFP's local paths and back."""
import json

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import kfp_entrypoint


def test_local_paths_are_the_launchers():
    assert kfp_entrypoint.local_path("minio://mlpipeline/v2/artifacts/x") == "/minio/mlpipeline/v2/artifacts/x"
    assert kfp_entrypoint.local_path("gs://bucket/a/b") == "/gcs/bucket/a/b"
    assert kfp_entrypoint.local_path("s3://bucket/k", root="/tmp/r") == "/tmp/r/s3/bucket/k"
    assert kfp_entrypoint.local_path("/mnt/data/curated") is None
    assert kfp_entrypoint.local_path("https://example.com/x") is None


def _executor_input(output_file):
    return json_format.ParseDict({
        "inputs": {"artifacts": {"examples": {"artifacts": [
            {"name": "e", "uri": "minio://mlpipeline/v2/artifacts/run/ExampleGen/examples"}]}}},
        "outputs": {
            "artifacts": {
                "statistics": {"artifacts": [
                    {"name": "s", "uri": "minio://mlpipeline/v2/artifacts/run/StatisticsGen/statistics"}]},
                "local": {"artifacts": [{"name": "l", "uri": "/mnt/data/out"}]},
            },
            "outputFile": output_file,
        },
    }, pipeline_spec_pb2.ExecutorInput())


def test_localize_then_restore_round_trips_the_uris(tmp_path):
    output_file = str(tmp_path / "output_metadata.json")
    executor_input = _executor_input(output_file)
    originals = kfp_entrypoint.localize(executor_input, root="/r")

    assert executor_input.inputs.artifacts["examples"].artifacts[0].uri == \
        "/r/minio/mlpipeline/v2/artifacts/run/ExampleGen/examples"
    statistics = executor_input.outputs.artifacts["statistics"].artifacts[0]
    assert statistics.uri == "/r/minio/mlpipeline/v2/artifacts/run/StatisticsGen/statistics"
    assert executor_input.outputs.artifacts["local"].artifacts[0].uri == "/mnt/data/out"  # unchanged

    # What TFX's entrypoint writes: the artifacts at the URIs it was given, with metadata.
    with open(output_file, "w") as f:
        json.dump({"artifacts": {
            "statistics": {"artifacts": [{"name": "s", "uri": statistics.uri,
                                          "metadata": {"split_names": "[\"train\"]"}}]},
            "local": {"artifacts": [{"name": "l", "uri": "/mnt/data/out"}]},
        }}, f)
    kfp_entrypoint.restore_uris(output_file, originals)
    with open(output_file) as f:
        written = json.load(f)["artifacts"]
    (restored,) = written["statistics"]["artifacts"]
    assert restored["uri"] == "minio://mlpipeline/v2/artifacts/run/StatisticsGen/statistics"
    assert restored["metadata"] == {"split_names": "[\"train\"]"}
    assert written["local"]["artifacts"][0]["uri"] == "/mnt/data/out"


def test_restore_without_an_output_file_is_a_no_op(tmp_path):
    kfp_entrypoint.restore_uris(str(tmp_path / "missing.json"), {"/a": "gs://a"})
    assert not (tmp_path / "missing.json").exists()
