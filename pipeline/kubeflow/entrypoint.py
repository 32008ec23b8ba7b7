"""Container entrypoint for KFP's open-source backend: TFX's, on the launcher's paths.

TFX's `kubeflow_v2_run_executor` reads and writes every artifact at its URI
with TensorFlow's file system. That suits Vertex AI, where URIs are gs:// and
TensorFlow speaks GCS. On the open-source KFP 2.x backend, URIs live in the
cluster's object store (`minio://...` on a default install, or `s3://`,
`gs://`), and KFP's launcher works on local copies: before the command it
downloads each input artifact to a local path (`minio://b/k` ->
`/minio/b/k`, likewise `/s3/`, `/gcs/`), after it uploads each output
artifact's local path. TensorFlow cannot open `minio://` at all, and an
executor writing straight to `gs://` leaves the launcher nothing to upload.

This entrypoint takes TFX's arguments unchanged and, before running TFX's
entrypoint in-process:
* points every artifact at the launcher's local path, and records the
  original URI on each input artifact (`remote_uri` in its metadata, which
  TFX turns into a custom property, so executors can write object-store
  URIs into what they publish, e.g. the pusher's push_metadata.json);
* removes the outputs the launcher itself manages: from KFP 2.5 on, with
  log publishing on (the manifests' default), the driver adds an
  `executor-logs` output of type `system.Artifact` to every task, which TFX
  cannot import ("Could not import system.Artifact"); the launcher writes
  and uploads that file itself.
Afterwards it writes the original URIs back into the executor output, so the
artifacts recorded in ML Metadata (and handed to downstream tasks) keep
their object-store URIs. URIs of other schemes are left alone.
"""
import os
from typing import Dict, List, Optional

from absl import app, logging
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

from components.artifact_uris import REMOTE_URI_PROPERTY

# KFP's launcher: LocalPathForURI in backend/src/v2/component/launcher_v2.go.
LAUNCHER_LOCAL_PREFIXES = {"gs://": "gcs/", "minio://": "minio/", "s3://": "s3/"}
# Outputs KFP's driver adds for the launcher's own use (backend/src/v2/driver:
# provisionOutputs, with PUBLISH_LOGS=true, KFP >= 2.5).
LAUNCHER_MANAGED_OUTPUTS = ("executor-logs",)
# Where the launcher's local paths start ("/" in a pod; a directory in tests).
LOCAL_ROOT_ENV = "KFP_LAUNCHER_LOCAL_ROOT"


def local_path(uri: str, root: str = "/") -> Optional[str]:
    """The launcher's local path for `uri`, or None if the launcher does not map it."""
    for scheme, prefix in LAUNCHER_LOCAL_PREFIXES.items():
        if uri.startswith(scheme):
            return os.path.join(root, prefix + uri[len(scheme):])
    return None


def drop_launcher_outputs(executor_input: pipeline_spec_pb2.ExecutorInput) -> List[str]:
    """Removes the outputs the launcher manages itself, in place; returns their keys."""
    dropped = [key for key in LAUNCHER_MANAGED_OUTPUTS if key in executor_input.outputs.artifacts]
    for key in dropped:
        del executor_input.outputs.artifacts[key]
    return dropped


def localize(executor_input: pipeline_spec_pb2.ExecutorInput, root: str) -> Dict[str, str]:
    """Points every input and output artifact at its local path, in place.

    Input artifacts keep their original URI in `metadata[remote_uri]`.

    Returns:
      {local path: original URI} for the artifacts that were changed.
    """
    originals = {}
    for is_input, artifact_map in ((True, executor_input.inputs.artifacts),
                                   (False, executor_input.outputs.artifacts)):
        for artifact_list in artifact_map.values():
            for artifact in artifact_list.artifacts:
                path = local_path(artifact.uri, root)
                if path is None:
                    continue
                originals[path] = artifact.uri
                if is_input:
                    artifact.metadata[REMOTE_URI_PROPERTY] = artifact.uri
                artifact.uri = path
    return originals


def restore_uris(output_file: str, originals: Dict[str, str]) -> None:
    """Rewrites artifact URIs in the executor output file back to the originals."""
    if not os.path.exists(output_file):
        return
    executor_output = pipeline_spec_pb2.ExecutorOutput()
    with open(output_file) as f:
        json_format.Parse(f.read(), executor_output, ignore_unknown_fields=True)
    for artifact_list in executor_output.artifacts.values():
        for artifact in artifact_list.artifacts:
            artifact.uri = originals.get(artifact.uri, artifact.uri)
    staging = output_file + ".tmp"
    with open(staging, "w") as f:
        f.write(json_format.MessageToJson(executor_output))
    os.replace(staging, output_file)


def main(parsed_argv) -> None:
    args, beam_args = parsed_argv
    root = os.environ.get(LOCAL_ROOT_ENV, "/")
    executor_input = pipeline_spec_pb2.ExecutorInput()
    json_format.Parse(args.json_serialized_invocation_args, executor_input,
                      ignore_unknown_fields=True)
    dropped = drop_launcher_outputs(executor_input)
    if dropped:
        logging.info("Outputs the KFP launcher manages itself, not passed to TFX: %s", dropped)
    originals = localize(executor_input, root)
    args.json_serialized_invocation_args = json_format.MessageToJson(executor_input)
    kubeflow_v2_run_executor.main((args, beam_args))
    restore_uris(executor_input.outputs.output_file, originals)


def parse_flags(argv: List[str]):
    """TFX's own flags (executor class, executor input, inputs spec; the rest for Beam)."""
    return kubeflow_v2_run_executor._parse_flags(argv)  # pylint: disable=protected-access


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
