"""`--beam-workers auto` (local default): worker processes only for large spans."""
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import local_runner
from pipeline import runner_settings
from pipeline.config import beam_args


def _span(root, span, rows):
    os.makedirs(root / f"span-{span}")
    pq.write_table(pa.table({"x": list(range(rows))}), root / f"span-{span}" / "part-0.parquet")


def test_local_runner_defaults_to_auto_and_accepts_counts(tmp_path):
    assert local_runner.parse_flags(["--runs-dir", str(tmp_path)]).beam_workers == "auto"
    assert local_runner.parse_flags(["--runs-dir", str(tmp_path),
                                     "--beam-workers", "3"]).beam_workers == 3


def test_auto_reads_the_latest_span_and_picks_workers_by_its_rows(tmp_path, monkeypatch):
    curated = tmp_path / "curated"
    _span(curated, 1, 50)
    _span(curated, 10, 7)  # numerically the latest, not span-9 sorted as text
    _span(curated, 9, 500)
    assert runner_settings.latest_span_rows(str(curated)) == 7
    assert runner_settings.latest_span_rows(str(tmp_path / "none")) == 0

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert runner_settings.resolve_beam_workers("auto", str(curated)) == 0
    monkeypatch.setattr(runner_settings, "AUTO_MIN_ROWS", 7)
    assert runner_settings.resolve_beam_workers("auto", str(curated)) == 2
    assert runner_settings.resolve_beam_workers(0, str(curated)) == 0
    assert runner_settings.resolve_beam_workers(5, str(curated)) == 5
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert runner_settings.resolve_beam_workers("auto", str(curated)) == 0


@pytest.mark.parametrize("rows, mode", [(3, "in_memory"), (400_000, "multi_processing")])
def test_the_pipeline_config_gets_the_resolved_beam_args(rows, mode, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runner_settings, "latest_span_rows", lambda root: rows)
    flags = local_runner.parse_flags(["--runs-dir", str(tmp_path)])
    config = runner_settings.pipeline_config_from_flags(
        flags, pipeline_root=str(tmp_path / "p"), curated_root=str(tmp_path / "c"),
        schema_path="schema.pbtxt", serving_base=str(tmp_path / "s"))
    assert f"--direct_running_mode={mode}" in config.beam_pipeline_args
    expected = beam_args(2 if mode == "multi_processing" else 0)
    assert list(config.beam_pipeline_args) == expected


def test_kubeflow_runner_refuses_auto(capsys):
    import kubeflow_runner

    base = ["--image", "registry.example/rain:1", "--pipeline-root", "/mnt/pipeline"]
    with pytest.raises(SystemExit) as exited:
        kubeflow_runner.parse_flags(base + ["--beam-workers", "auto"])
    assert exited.value.code == 2
    assert "--beam-workers auto sizes the workers by the curated span on this machine" in (
        capsys.readouterr().err)
    assert kubeflow_runner.parse_flags(base).beam_workers == 2
