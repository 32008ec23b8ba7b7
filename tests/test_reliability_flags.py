"""Flags are validated before any work (issue #12, item 3).

Each bad flag is a usage error (exit 2) naming the flag, printed without a
traceback, and neither curation (Spark) nor the pipeline starts.
"""
import os

import pytest

import local_runner
from pipeline import runner_settings


@pytest.fixture
def no_work(monkeypatch):
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("work started despite a bad flag")

    monkeypatch.setattr(local_runner, "curate", forbidden)
    monkeypatch.setattr(local_runner, "run_pipeline", forbidden)
    return calls


@pytest.mark.parametrize("flag, value, says", [
    ("--train-steps", "-5", "must be > 0"),
    ("--train-steps", "0", "must be > 0"),
    ("--train-steps", "ten", "is not an integer"),
    ("--eval-steps", "0", "must be > 0"),
    ("--batch-size", "0", "must be > 0"),
    ("--learning-rate", "-1", "must be > 0"),
    ("--learning-rate", "nan", "not a finite number"),
    ("--min-auc", "2", "must be > 0 and <= 1"),
    ("--min-auc", "0", "must be > 0 and <= 1"),
    ("--min-auc", "-0.5", "must be > 0 and <= 1"),
    ("--max-auc-decrease", "-0.1", "must be >= 0"),
    ("--hidden-units", "abc", "is not an integer layer size"),
    ("--hidden-units", "32,0", "layer sizes must be > 0"),
    ("--hidden-units", "32,,16", "comma-separated positive layer sizes"),
    ("--hidden-units", "", "comma-separated positive layer sizes"),
    ("--span-window", "0", "must be > 0"),
    ("--seed", "-1", "must be >= 0"),
    ("--beam-workers", "-2", "must be >= 0"),
    ("--keep-versions", "1", "keep at least 2 versions"),
    ("--min-eval-examples", "0", "must be > 0"),
])
def test_bad_value_is_a_usage_error_naming_the_flag(flag, value, says, tmp_path, no_work, capsys):
    code = local_runner.main(["--runs-dir", str(tmp_path / "runs"), flag, value])
    err = capsys.readouterr().err
    assert code == local_runner.EXIT_USAGE == 2
    assert f"argument {flag}: " in err and says in err, err
    assert "Traceback" not in err
    assert no_work == []
    assert not os.path.exists(tmp_path / "runs")  # nothing created either


@pytest.mark.parametrize("flag", ["--runs-dir", "--data-dir", "--pipeline-root", "--serving-base"])
def test_location_under_a_file_is_a_usage_error_naming_the_flag(flag, tmp_path, no_work, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    argv = ["--runs-dir", str(tmp_path / "runs"), flag, str(blocker / "sub")]
    code = local_runner.main(argv)
    err = capsys.readouterr().err
    assert code == local_runner.EXIT_USAGE
    assert f"argument {flag}: " in err and "is not writable" in err and "is not a directory" in err
    assert "Traceback" not in err and no_work == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_read_only_serving_base_is_a_usage_error(tmp_path, no_work, capsys):
    serving = tmp_path / "serving"
    serving.mkdir()
    serving.chmod(0o555)
    try:
        code = local_runner.main(["--runs-dir", str(tmp_path / "runs"), "--serving-base", str(serving)])
    finally:
        serving.chmod(0o755)
    err = capsys.readouterr().err
    assert code == local_runner.EXIT_USAGE and "argument --serving-base: " in err


def test_unwritable_reason_probes_the_nearest_existing_ancestor(tmp_path):
    assert runner_settings.unwritable_reason(str(tmp_path / "not" / "yet" / "there")) is None
    assert not os.path.exists(tmp_path / "not")  # probing creates nothing
    (tmp_path / "f").write_text("x")
    assert "is not a directory" in runner_settings.unwritable_reason(str(tmp_path / "f" / "x"))


def test_valid_flags_reach_the_pipeline_config(tmp_path):
    flags = local_runner.parse_flags([
        "--runs-dir", str(tmp_path), "--train-steps", "7", "--hidden-units", "8, 4",
        "--learning-rate", "0.5", "--min-auc", "1", "--max-auc-decrease", "0"])
    config = runner_settings.pipeline_config_from_flags(
        flags, pipeline_root="p", curated_root="c", schema_path="s", serving_base="b")
    assert config.training.train_steps == 7
    assert config.training.hidden_units == (8, 4)
    assert config.thresholds.min_auc == 1.0 and config.thresholds.max_auc_decrease == 0.0


def test_unexpected_error_is_one_line_unless_verbose(tmp_path, monkeypatch, capsys):
    def broken(flags, run_id=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_runner, "_run", broken)
    argv = ["--runs-dir", str(tmp_path / "runs")]
    assert local_runner.main(argv) == local_runner.EXIT_FAILED == 3
    err = capsys.readouterr().err
    assert "Failed: OSError: [Errno 28] No space left on device" in err
    assert "Traceback" not in err and "--verbose" in err

    assert local_runner.main(argv + ["--verbose"]) == local_runner.EXIT_FAILED
    assert "Traceback (most recent call last)" in capsys.readouterr().err
