"""`NaiveBaselineMetrics`: the artifact type holding `baselines.json`.

Its TYPE_NAME is `components.NaiveBaselineMetrics`, not the bare class
name, because of Kubeflow: TFX's KubeflowV2 compiler accepts a custom type
only under a `<namespace>.<Name>` title, and TFX's container entrypoint
imports the class from that title as a Python path. `components` (this
repository's package) exposes the class lazily (components/__init__.py), so
the same name works in ML Metadata, in the compiled pipeline and in the
task image.
"""
import json
import os
from typing import Optional

from tfx.dsl.io import fileio
from tfx.types import artifact

BASELINES_FILE = "baselines.json"


class NaiveBaselineMetrics(artifact.Artifact):
    """Naive baselines (persistence, climatology, linear) scored on the eval split.

    The artifact's directory holds `baselines.json` (see
    components/naive_baselines/baselines.compute_baselines for its layout).
    """

    TYPE_NAME = "components.NaiveBaselineMetrics"


def baselines_path(uri: str) -> str:
    return os.path.join(uri, BASELINES_FILE)


def read_baselines(uri: str) -> Optional[dict]:
    """The baselines.json of an artifact directory (None if it has none).

    Raises:
      ValueError: the file exists but is not a JSON object with "baselines".
    """
    path = baselines_path(uri)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("baselines"), dict):
        raise ValueError(f"{path} has no \"baselines\" object: not a naive-baselines file")
    return data
