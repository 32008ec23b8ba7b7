"""The launcher-I/O entrypoint: artifact URIs to KFP's local paths and back."""
import json

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.kubeflow import entrypoint as kfp_entrypoint


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

    examples = executor_input.inputs.artifacts["examples"].artifacts[0]
    assert examples.uri == "/r/minio/mlpipeline/v2/artifacts/run/ExampleGen/examples"
    # Executors can still name the object-store URI (components.artifact_uris).
    assert examples.metadata["remote_uri"] == "minio://mlpipeline/v2/artifacts/run/ExampleGen/examples"
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


def test_launcher_managed_outputs_are_not_passed_to_tfx(tmp_path):
    """KFP >= 2.5 adds `executor-logs` (system.Artifact), which TFX cannot import."""
    executor_input = _executor_input(str(tmp_path / "out.json"))
    executor_input.outputs.artifacts["executor-logs"].artifacts.add(
        uri="minio://mlpipeline/v2/artifacts/run/StatisticsGen/executor-logs").type.schema_title = "system.Artifact"
    assert kfp_entrypoint.drop_launcher_outputs(executor_input) == ["executor-logs"]
    assert set(executor_input.outputs.artifacts) == {"statistics", "local"}
    assert kfp_entrypoint.drop_launcher_outputs(executor_input) == []


def test_tfx_cannot_parse_the_executor_logs_artifact():
    """The failure the entrypoint avoids (tensorflow/tfx#7768), shown on TFX's own parser."""
    import pytest
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

    logs = pipeline_spec_pb2.ArtifactList()
    logs.artifacts.add(uri="/minio/x").type.schema_title = "system.Artifact"
    with pytest.raises(ImportError, match="system.Artifact"):
        kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict({"executor-logs": logs}, {})


def test_remote_uri_falls_back_to_the_uri():
    from tfx.types import standard_artifacts

    from components.artifact_uris import REMOTE_URI_PROPERTY, remote_uri

    model = standard_artifacts.Model()
    model.uri = "/minio/mlpipeline/v2/artifacts/run/Trainer/model"
    assert remote_uri(model) == model.uri
    model.set_string_custom_property(REMOTE_URI_PROPERTY, "minio://mlpipeline/v2/artifacts/run/Trainer/model")
    assert remote_uri(model) == "minio://mlpipeline/v2/artifacts/run/Trainer/model"
