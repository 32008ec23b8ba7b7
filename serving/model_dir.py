"""The TF Serving model directory: `<base>/<model>/<integer version>/`.

Plain helpers (no TFX) so tests and tools can call them directly. TF Serving
only loads children whose names are integers, so a version is staged in a
hidden `.tmp-*` sibling and renamed into place: a version directory appears
complete or not at all, and an existing one is never overwritten.
"""
import json
import os
import time
import uuid
from typing import Callable, Dict, List, Optional

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tfx.dsl.io import fileio
from tfx.utils import io_utils

METADATA_FILE = "push_metadata.json"
MODELS_CONFIG_FILE = "models.config"
_STAGING_PREFIX = ".tmp-"

# What training/serving skew needs travels with the model, inside the version
# directory, in SavedModel's `assets.extra/` (tf.saved_model.EXTRA_ASSETS_DIRECTORY:
# "unmanaged files from higher-level APIs"). Loading a SavedModel never reads
# it; TF Serving reads one name there only, `tf_serving_warmup_requests`,
# which these are not.
EXTRA_ASSETS_DIR = "assets.extra"
TRAINING_STATISTICS_FILE = os.path.join(EXTRA_ASSETS_DIR, "training_statistics", "FeatureStats.pb")
SCHEMA_FILE = os.path.join(EXTRA_ASSETS_DIR, "schema.pbtxt")
_TF_SERVING_WARMUP_FILE = os.path.join(EXTRA_ASSETS_DIR, "tf_serving_warmup_requests")


class VersionExistsError(RuntimeError):
    """Raised when a version directory is already taken."""


def existing_versions(model_dir: str) -> List[int]:
    """Sorted integer versions present under `model_dir`."""
    if not fileio.exists(model_dir):
        return []
    names = [n.rstrip("/") for n in fileio.listdir(model_dir)]
    return sorted(int(n) for n in names if n.isdigit())


def next_version(model_dir: str, clock: Callable[[], float] = time.time) -> int:
    """A new version number: epoch seconds, but always above every existing one."""
    versions = existing_versions(model_dir)
    return max([int(clock())] + [v + 1 for v in versions])


def read_metadata(model_dir: str, version: int) -> Optional[dict]:
    """The metadata file of one version, or None if it has none."""
    path = os.path.join(model_dir, str(version), METADATA_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.loads(f.read())


def find_version_of_model(model_dir: str, model_uri: str) -> Optional[int]:
    """The version already holding the model exported at `model_uri`, if any."""
    for version in reversed(existing_versions(model_dir)):
        metadata = read_metadata(model_dir, version) or {}
        if metadata.get("model_uri") == model_uri:
            return version
    return None


def publish_version(
    source_dir: str,
    model_dir: str,
    metadata: Dict,
    version: Optional[int] = None,
    extra_files: Optional[Dict[str, str]] = None,
) -> str:
    """Copies a SavedModel into a new version directory atomically.

    Args:
      source_dir: the exported SavedModel (holds saved_model.pb).
      model_dir: `<serving_base>/<model_name>`.
      metadata: JSON-serializable facts written as push_metadata.json inside
        the version (TF Serving ignores extra files).
      version: a specific version; defaults to `next_version(model_dir)`.
      extra_files: {path inside the version under `assets.extra/`: source
        file}, copied in the same staged write (e.g. TRAINING_STATISTICS_FILE
        and SCHEMA_FILE for the service's skew check).

    Returns:
      The path of the new version directory.

    Raises:
      FileNotFoundError: if `source_dir` holds no saved_model.pb, or an extra
        file's source is missing.
      ValueError: if an extra file's path is not a plain path under
        `assets.extra/` or is TF Serving's warmup file.
      VersionExistsError: if the version directory already exists.
    """
    if not fileio.exists(os.path.join(source_dir, "saved_model.pb")):
        raise FileNotFoundError(f"No saved_model.pb in {source_dir}; nothing to push.")
    extra_files = dict(extra_files or {})
    for relative, source in extra_files.items():
        _check_extra_path(relative)
        if not fileio.exists(source):
            raise FileNotFoundError(
                f"No file at {source} to publish as {relative}; nothing pushed.")
    fileio.makedirs(model_dir)
    version = next_version(model_dir) if version is None else version
    target = os.path.join(model_dir, str(version))
    if fileio.exists(target):
        raise VersionExistsError(f"Version {version} already exists at {target}; refusing to overwrite.")
    staging = os.path.join(model_dir, f"{_STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    try:
        io_utils.copy_dir(source_dir, staging)
        for relative, source in sorted(extra_files.items()):
            destination = os.path.join(staging, relative)
            fileio.makedirs(os.path.dirname(destination))
            fileio.copy(source, destination, overwrite=True)
        io_utils.write_string_file(
            os.path.join(staging, METADATA_FILE),
            json.dumps(dict(metadata, version=version), indent=2, sort_keys=True),
        )
        fileio.rename(staging, target, overwrite=False)
    finally:
        if fileio.exists(staging):
            fileio.rmtree(staging)
    return target


def _check_extra_path(relative: str) -> None:
    parts = relative.replace("\\", "/").split("/")
    if (os.path.isabs(relative) or len(parts) < 2 or parts[0] != EXTRA_ASSETS_DIR
            or any(p in ("", ".", "..") for p in parts)):
        raise ValueError(f"extra file path {relative!r} must be a relative path under "
                         f"{EXTRA_ASSETS_DIR}/ (TF Serving and SavedModel loading ignore it)")
    if os.path.normpath(relative) == _TF_SERVING_WARMUP_FILE:
        raise ValueError(f"{relative!r} is TF Serving's warmup file, not an extra file")


def write_models_config(serving_base: str, model_name: str, server_base_path: str) -> str:
    """Adds or updates the model's entry in `<serving_base>/models.config`.

    Other models' entries are kept. The file is replaced atomically so a TF
    Serving instance polling it never reads half a config.
    """
    path = os.path.join(serving_base, MODELS_CONFIG_FILE)
    config = model_server_config_pb2.ModelServerConfig()
    if fileio.exists(path):
        with fileio.open(path) as f:
            text_format.Parse(f.read(), config)
    entries = config.model_config_list.config
    entry = next((c for c in entries if c.name == model_name), None) or entries.add()
    entry.name = model_name
    entry.base_path = server_base_path
    entry.model_platform = "tensorflow"
    staging = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    io_utils.write_string_file(staging, text_format.MessageToString(config))
    fileio.rename(staging, path, overwrite=True)
    return path


# ---------------------------------------------------------------- read-only helpers
# For readers that must not trust a version directory blindly (the prediction
# service): TF Serving's own check is "it loads", but a directory copied in by
# hand, or by a writer other than `publish_version`, may be half there.

_REQUIRED_FILES = ("saved_model.pb", os.path.join("variables", "variables.index"))


def version_path(model_dir: str, version: int) -> str:
    """The directory of one version."""
    return os.path.join(model_dir, str(version))


def incomplete_reason(model_dir: str, version: int) -> Optional[str]:
    """Why a version directory is not a complete push, or None if it looks complete.

    Complete means: saved_model.pb, the variables index and a parseable
    push_metadata.json naming this version (publish_version writes it last,
    before the rename). Whether the SavedModel loads is for the reader to try.
    """
    path = version_path(model_dir, version)
    for name in _REQUIRED_FILES:
        if not fileio.exists(os.path.join(path, name)):
            return f"missing {name}"
    try:
        metadata = read_metadata(model_dir, version)
    except (ValueError, OSError) as error:
        return f"unreadable {METADATA_FILE}: {error}"
    if metadata is None:
        return f"missing {METADATA_FILE}"
    if metadata.get("version") != version:
        return f"{METADATA_FILE} names version {metadata.get('version')!r}, not {version}"
    return None


def read_training_statistics(model_dir: str, version: int):
    """The training statistics shipped with a version (DatasetFeatureStatisticsList), or None.

    Versions pushed before the pusher shipped them have none. Raises on a file
    that is there but does not parse.
    """
    from tensorflow_metadata.proto.v0 import statistics_pb2

    path = os.path.join(version_path(model_dir, version), TRAINING_STATISTICS_FILE)
    if not fileio.exists(path):
        return None
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with fileio.open(path, "rb") as f:
        stats.ParseFromString(f.read())
    return stats


def read_schema(model_dir: str, version: int):
    """The curated schema shipped with a version (schema_pb2.Schema), or None."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = os.path.join(version_path(model_dir, version), SCHEMA_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def complete_versions(model_dir: str) -> List[int]:
    """Sorted versions for which `incomplete_reason` finds nothing missing."""
    return [v for v in existing_versions(model_dir) if incomplete_reason(model_dir, v) is None]


def prune_versions(model_dir: str, keep: int) -> List[int]:
    """Removes all but the newest `keep` versions; returns the removed ones.

    The newest versions are the one TF Serving serves (its default policy
    serves the latest) and, with keep >= 2, the one it served until it loads
    a new push. A version is first renamed to a hidden `.tmp-` name, which
    TF Serving ignores, then deleted: it is never seen half-removed.

    Args:
      model_dir: `<serving_base>/<model_name>`.
      keep: how many of the newest versions to keep; 0 keeps all.
    """
    if keep <= 0:
        return []
    removed = []
    for version in existing_versions(model_dir)[:-keep]:
        doomed = os.path.join(model_dir, f"{_STAGING_PREFIX}removed-{version}-{uuid.uuid4().hex[:8]}")
        fileio.rename(os.path.join(model_dir, str(version)), doomed, overwrite=False)
        fileio.rmtree(doomed)
        removed.append(version)
    return removed
