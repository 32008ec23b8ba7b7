"""Where an input artifact really lives, when the executor sees a local copy.

On KFP's open-source backend the task entrypoint
(`pipeline.kubeflow.entrypoint`) hands executors the launcher's local copies
(`/minio/...`) and records each input artifact's object-store URI as the
custom property below. Anything an executor publishes for later runs or
other systems (push_metadata.json) should name the object-store URI: the
local path exists only inside that one pod.
"""
from tfx import types

REMOTE_URI_PROPERTY = "remote_uri"


def remote_uri(artifact: types.Artifact) -> str:
    """The artifact's object-store URI where a launcher localized it, else its URI."""
    if artifact.has_custom_property(REMOTE_URI_PROPERTY):
        return artifact.get_string_custom_property(REMOTE_URI_PROPERTY)
    return artifact.uri
