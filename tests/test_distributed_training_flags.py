"""--train-workers / --train-timeout reach the Trainer (issue #15 wiring).

Locally the Trainer's custom_config carries the worker count (run_fn hands it
to components.distributed_training); on Kubeflow it also carries the TFJob
settings, and the Trainer task mounts the data volume the TFJob's pods read.
"""
import yaml

import kubeflow_runner
import local_runner
from pipeline import node_ids, runner_settings
from pipeline.kubeflow import settings as kf
from tests.test_kubeflow_runner import IMAGE, flags as kfp_flags
from tests.test_reliability_flags import no_work  # noqa: F401 (a fixture)


def config_of(argv, tmp_path):
    flags = local_runner.parse_flags(["--runs-dir", str(tmp_path), *argv])
    return runner_settings.pipeline_config_from_flags(
        flags, pipeline_root="p", curated_root="c", schema_path="s", serving_base="b")


def test_single_process_keeps_its_custom_config_and_cache_keys(tmp_path):
    assert set(config_of([], tmp_path).training.custom_config()) == {
        "batch_size", "learning_rate", "hidden_units", "seed"}
    assert "train_workers" not in config_of(["--train-workers", "1"], tmp_path).training.custom_config()


def test_several_workers_reach_the_trainers_custom_config(tmp_path):
    custom = config_of(["--train-workers", "2", "--train-timeout", "600"],
                       tmp_path).training.custom_config()
    assert custom["train_workers"] == 2 and custom["train_timeout_seconds"] == 600
    assert "tfjob" not in custom  # local: processes on 127.0.0.1, no TFJob


def test_zero_workers_is_a_usage_error_before_any_work(tmp_path, no_work, capsys):
    code = local_runner.main(["--runs-dir", str(tmp_path / "runs"), "--train-workers", "0"])
    assert code == 2
    assert "argument --train-workers: " in capsys.readouterr().err
    assert no_work == []


def test_kubeflow_trainer_gets_the_tfjob_settings_and_the_data_volume(tmp_path):
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(kfp_flags(path, "--train-workers", "3")) == 0
    with open(path) as f:
        text = f.read()
    spec, platform = yaml.safe_load_all(text)
    assert '\\"train_workers\\": 3' in text or '"train_workers": 3' in text, "custom_config"
    assert IMAGE in text and kf.DEFAULT_DATA_CLAIM in text
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    trainer = executors[f"{node_ids.TRAINER}_executor"]
    assert [(m["constant"], m["mountPath"]) for m in trainer["pvcMount"]] == [
        (kf.DEFAULT_DATA_CLAIM, "/mnt/data")]


def test_kubeflow_single_process_trainer_mounts_nothing(tmp_path):
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(kfp_flags(path)) == 0
    with open(path) as f:
        _, platform = yaml.safe_load_all(f)
    assert f"{node_ids.TRAINER}_executor" not in platform["platforms"]["kubernetes"][
        "deploymentSpec"]["executors"]


def test_mirrored_strategy_reaches_the_trainer(tmp_path):
    custom = config_of(["--train-strategy", "mirrored"], tmp_path).training.custom_config()
    assert custom["train_strategy"] == "mirrored" and "train_workers" not in custom
    from components import distributed_training

    assert distributed_training.wants_distributed(custom)
    assert distributed_training.strategy_from_config(custom) == (1, "mirrored")


def test_mirrored_with_several_workers_is_a_usage_error_in_both_runners(tmp_path, no_work, capsys):
    argv = ["--train-strategy", "mirrored", "--train-workers", "2"]
    assert local_runner.main(["--runs-dir", str(tmp_path / "runs"), *argv]) == 2
    assert "give one or the other" in capsys.readouterr().err
    assert no_work == []
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.parse_flags(kfp_flags(str(tmp_path / "p.yaml"), *argv))
    assert exit_info.value.code == 2
    assert "give one or the other" in capsys.readouterr().err
