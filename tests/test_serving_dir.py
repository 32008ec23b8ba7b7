"""The versioned TF Serving directory: atomic, never overwritten, config kept."""
import json
import os

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving import model_dir as serving_dir


def _fake_saved_model(path, payload=b"graph"):
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(payload)
    with open(os.path.join(path, "variables", "variables.index"), "wb") as f:
        f.write(b"index")
    return str(path)


def test_publish_creates_integer_version_with_metadata(tmp_path):
    source = _fake_saved_model(tmp_path / "export")
    model_dir = str(tmp_path / "serving" / "rain")

    target = serving_dir.publish_version(source, model_dir, {"model_uri": "m1"})

    version = os.path.basename(target)
    assert version.isdigit()
    assert sorted(os.listdir(model_dir)) == [version]  # no staging leftovers
    assert open(os.path.join(target, "saved_model.pb"), "rb").read() == b"graph"
    assert os.path.exists(os.path.join(target, "variables", "variables.index"))
    metadata = json.load(open(os.path.join(target, serving_dir.METADATA_FILE)))
    assert metadata == {"model_uri": "m1", "version": int(version)}


def test_next_version_is_above_existing_even_if_clock_is_behind(tmp_path):
    model_dir = tmp_path / "rain"
    (model_dir / "5000").mkdir(parents=True)
    (model_dir / ".tmp-9999-abc").mkdir()  # staging dirs are not versions
    assert serving_dir.existing_versions(str(model_dir)) == [5000]
    assert serving_dir.next_version(str(model_dir), clock=lambda: 10) == 5001
    assert serving_dir.next_version(str(model_dir), clock=lambda: 7000.9) == 7000


def test_existing_version_is_never_overwritten(tmp_path):
    source = _fake_saved_model(tmp_path / "export", b"new")
    model_dir = tmp_path / "rain"
    old = model_dir / "7"
    _fake_saved_model(old, b"old")

    with pytest.raises(serving_dir.VersionExistsError, match="already exists"):
        serving_dir.publish_version(source, str(model_dir), {}, version=7)

    assert open(old / "saved_model.pb", "rb").read() == b"old"
    assert sorted(os.listdir(model_dir)) == ["7"]


def test_failed_copy_leaves_no_half_written_version(tmp_path, monkeypatch):
    source = _fake_saved_model(tmp_path / "export")
    model_dir = tmp_path / "rain"

    def broken_write(path, content):
        raise OSError("disk full")

    monkeypatch.setattr(serving_dir.io_utils, "write_string_file", broken_write)
    with pytest.raises(OSError, match="disk full"):
        serving_dir.publish_version(source, str(model_dir), {"model_uri": "m"})
    assert os.listdir(model_dir) == []


def test_source_without_saved_model_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No saved_model.pb"):
        serving_dir.publish_version(str(tmp_path / "empty"), str(tmp_path / "rain"), {})


def test_find_version_of_model_matches_model_uri(tmp_path):
    model_dir = str(tmp_path / "rain")
    first = serving_dir.publish_version(_fake_saved_model(tmp_path / "a"), model_dir, {"model_uri": "A"}, version=1)
    serving_dir.publish_version(_fake_saved_model(tmp_path / "b"), model_dir, {"model_uri": "B"}, version=2)
    assert serving_dir.find_version_of_model(model_dir, "A") == 1
    assert serving_dir.find_version_of_model(model_dir, "B") == 2
    assert serving_dir.find_version_of_model(model_dir, "C") is None
    assert serving_dir.read_metadata(model_dir, 1)["model_uri"] == "A"
    assert first.endswith("/1")


def test_models_config_keeps_other_models_and_updates_own_entry(tmp_path):
    base = str(tmp_path)
    serving_dir.write_models_config(base, "other", "/models/other")
    serving_dir.write_models_config(base, "rain", "/models/rain_old")
    path = serving_dir.write_models_config(base, "rain", "/models/rain")

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(open(path).read(), config)
    entries = {c.name: (c.base_path, c.model_platform) for c in config.model_config_list.config}
    assert entries == {
        "other": ("/models/other", "tensorflow"),
        "rain": ("/models/rain", "tensorflow"),
    }
    assert sorted(os.listdir(base)) == ["models.config"]


def test_prune_keeps_the_newest_versions_and_removes_the_rest_whole(tmp_path):
    source = _fake_saved_model(tmp_path / "export")
    model_dir = str(tmp_path / "serving" / "rain")
    for version in (10, 20, 30, 40):
        serving_dir.publish_version(source, model_dir, {"model_uri": f"m{version}"}, version=version)
    assert serving_dir.prune_versions(model_dir, keep=0) == []
    assert serving_dir.prune_versions(model_dir, keep=2) == [10, 20]
    assert sorted(os.listdir(model_dir)) == ["30", "40"]  # nothing half-removed, no hidden leftovers
    assert serving_dir.read_metadata(model_dir, 40)["model_uri"] == "m40"
    assert serving_dir.prune_versions(model_dir, keep=5) == []
