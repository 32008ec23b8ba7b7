"""Transform's statistics are on by default (the notebook reads them) and can be turned off."""
import os

import local_runner
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _transform(pipeline):
    (transform,) = [c for c in pipeline.components if c.id == "Transform"]
    return transform


def test_transform_statistics_default_off_and_flag_turns_them_on(tmp_path):
    config = PipelineConfig(pipeline_root=str(tmp_path / "p"), curated_root=str(tmp_path / "c"),
                            schema_path=os.path.join(REPO, "schema", "schema.pbtxt"),
                            serving_base=str(tmp_path / "s"))
    default = _transform(create_pipeline(config))
    assert default.exec_properties["disable_statistics"]
    assert "post_transform_stats" not in default.outputs
    on = _transform(create_pipeline(config, transform_statistics=True))
    assert not on.exec_properties["disable_statistics"]
    assert "post_transform_stats" in on.outputs

    assert not local_runner.parse_flags(["--runs-dir", str(tmp_path)]).transform_statistics
    assert local_runner.parse_flags(
        ["--runs-dir", str(tmp_path), "--transform-statistics"]).transform_statistics
    assert not local_runner.parse_flags(
        ["--runs-dir", str(tmp_path), "--no-transform-statistics"]).transform_statistics
