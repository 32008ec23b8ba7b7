"""Transform's statistics are on by default (the notebook reads them) and can be turned off."""
import os

import local_runner
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _transform(pipeline):
    (transform,) = [c for c in pipeline.components if c.id == "Transform"]
    return transform


def test_transform_statistics_default_on_and_flag_turns_them_off(tmp_path):
    config = PipelineConfig(pipeline_root=str(tmp_path / "p"), curated_root=str(tmp_path / "c"),
                            schema_path=os.path.join(REPO, "schema", "schema.pbtxt"),
                            serving_base=str(tmp_path / "s"))
    default = _transform(create_pipeline(config))
    assert not default.exec_properties["disable_statistics"]
    assert "post_transform_stats" in default.outputs
    off = _transform(create_pipeline(config, transform_statistics=False))
    assert off.exec_properties["disable_statistics"]
    assert "post_transform_stats" not in off.outputs

    assert local_runner.parse_flags(["--runs-dir", str(tmp_path)]).transform_statistics
    assert not local_runner.parse_flags(
        ["--runs-dir", str(tmp_path), "--no-transform-statistics"]).transform_statistics


def test_direct_runner_args_stop_tfx_packaging_itself_but_remote_runners_keep_it():
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx.utils import dependency_utils

    from pipeline.config import beam_args

    for args in (beam_args(0), beam_args(2), beam_args(0, ("--runner=DirectRunner",))):
        # TFX's own check: a dependency flag is present, so no sdist is built.
        assert dependency_utils.make_beam_dependency_flags(list(args)) == list(args), args
        assert PipelineOptions(args).get_all_options()["sdk_container_image"].startswith(
            "apache/beam_python3.")
    dataflow = beam_args(0, ("--runner=DataflowRunner",))
    assert not any(arg.startswith("--sdk_container_image") for arg in dataflow)
    own = beam_args(0, ("--setup_file=./setup.py",))
    assert not any(arg.startswith("--sdk_container_image") for arg in own)
