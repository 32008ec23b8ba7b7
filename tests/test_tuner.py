"""Tuning (issue #14): models/tuner.py under TFX's Tuner executor, the best
hyper-parameters reaching the Trainer's run_fn, the pipeline's Tuner -> Trainer
edge with --tune only, the flags, the Kubeflow compile and (slow) a whole
`local_runner.py --tune` run.

The unit tests train on the eight-row Transform output of tests/test_models.py
(its `transformed` fixture), so a trial takes a second or two.
"""
import json
import os

import pytest

import local_runner
from models import tuner as tuner_lib
from pipeline import node_ids, runner_settings
from pipeline.config import PipelineConfig
from tests.test_models import transformed  # noqa: F401  (the fixture)

TINY_CONFIG = {"batch_size": 4, "hidden_units": [4], "seed": 3}


def _artifacts(transformed_outputs):
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = transformed_outputs["raw_examples_dir"]
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    graph = standard_artifacts.TransformGraph()
    graph.uri = transformed_outputs["transform_dir"]
    return {"examples": [examples], "transform_graph": [graph]}


def run_tuner_executor(transformed_outputs, root, trials=2, custom_config=TINY_CONFIG,
                       eval_steps=2):
    """TFX's own Tuner executor on the tiny data; returns (best_hp_dir, results_dir)."""
    from tfx.components.tuner import executor as tuner_executor
    from tfx.proto import trainer_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import json_utils, proto_utils

    best = standard_artifacts.HyperParameters()
    best.uri = os.path.join(str(root), "best_hyperparameters")
    results = standard_artifacts.TunerResults()
    results.uri = os.path.join(str(root), "tuner_results")
    os.makedirs(best.uri)
    os.makedirs(results.uri)
    executor = tuner_executor.Executor(tuner_executor.Executor.Context(
        tmp_dir=os.path.join(str(root), "tmp"), unique_id="1"))
    executor.Do(
        _artifacts(transformed_outputs),
        {"best_hyperparameters": [best], "tuner_results": [results]},
        {"train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=500)),
         "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(num_steps=eval_steps)),
         "custom_config": json_utils.dumps({**custom_config, "tune_trials": trials}),
         "tuner_fn": "models.tuner.tuner_fn"})
    return best.uri, results.uri


@pytest.fixture(scope="module")
def tuned(transformed, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("tuner")
    best_dir, results_dir = run_tuner_executor(transformed, root)
    with open(os.path.join(best_dir, "best_hyperparameters.txt")) as f:
        best = json.load(f)
    with open(os.path.join(results_dir, "tuner_results.json")) as f:
        results = json.load(f)
    return {"best_dir": best_dir, "best": best, "results": results}


def test_the_search_space_is_the_documented_one():
    hp = tuner_lib.search_space()
    space = {p.name: p.get_config() for p in hp.space}
    assert set(space) == {"hidden_units", "learning_rate", "train_steps"}
    assert space["hidden_units"]["values"] == ["16,8", "32,16", "64,32"]
    assert (space["learning_rate"]["min_value"], space["learning_rate"]["max_value"],
            space["learning_rate"]["sampling"]) == (0.001, 0.01, "log")
    assert (space["train_steps"]["min_value"], space["train_steps"]["max_value"],
            space["train_steps"]["step"]) == (200, 800, 200)


def test_tuner_fn_under_tfx_executor_writes_the_best_of_two_trials(tuned):
    values = tuned["best"]["values"]
    assert values["hidden_units"] in tuner_lib.HIDDEN_UNITS_CHOICES
    assert 0.001 <= values["learning_rate"] <= 0.01
    assert values["train_steps"] in (200, 400, 600, 800)
    results = tuned["results"]
    assert len(results) == 2, results  # both trials completed
    assert all(0.0 <= r["score"] <= 1.0 for r in results)
    best = max(results, key=lambda r: r["score"])
    assert {k: best[k] for k in values} == values  # the file holds the best trial
    assert len({(r["hidden_units"], r["learning_rate"], r["train_steps"]) for r in results}) == 2


def test_the_search_is_seeded(transformed, tmp_path, tuned):  # noqa: F811
    _, results_dir = run_tuner_executor(transformed, tmp_path)
    with open(os.path.join(results_dir, "tuner_results.json")) as f:
        again = json.load(f)
    key = lambda r: r["trial_id"]  # noqa: E731
    assert sorted(again, key=key) == sorted(tuned["results"], key=key)


def test_a_search_whose_every_trial_fails_is_an_error_naming_the_failure(transformed, tmp_path):  # noqa: F811
    with pytest.raises(RuntimeError, match="none of .* trials completed"):
        run_tuner_executor(transformed, tmp_path, trials=1,
                           custom_config={**TINY_CONFIG, "batch_size": 0})


def test_tuner_fn_refuses_bad_arguments(tmp_path):
    from tfx.components.trainer.fn_args_utils import FnArgs

    good = dict(eval_steps=2, transform_graph_path="t", working_dir=str(tmp_path),
                custom_config={"tune_trials": 2})
    with pytest.raises(ValueError, match="eval_args.num_steps"):
        tuner_lib.tuner_fn(FnArgs(**{**good, "eval_steps": None}))
    with pytest.raises(ValueError, match="transform_graph"):
        tuner_lib.tuner_fn(FnArgs(**{**good, "transform_graph_path": None}))
    with pytest.raises(ValueError, match="tune_trials must be >= 1"):
        tuner_lib.tuner_fn(FnArgs(**{**good, "custom_config": {"tune_trials": 0}}))


def test_best_hyperparameters_reach_the_trainers_run_fn(transformed, tuned, tmp_path):  # noqa: F811
    """TFX's Trainer executor with the Tuner's output as its hyperparameters input."""
    import tensorflow as tf
    from tfx.components.trainer import executor as trainer_executor
    from tfx.proto import trainer_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import json_utils, proto_utils

    hyperparameters = standard_artifacts.HyperParameters()
    hyperparameters.uri = tuned["best_dir"]
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    model_run = standard_artifacts.ModelRun()
    model_run.uri = str(tmp_path / "model_run")
    trainer_executor.GenericExecutor().Do(
        {**_artifacts(transformed), "hyperparameters": [hyperparameters]},
        {"model": [model], "model_run": [model_run]},
        {"train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=3)),
         "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(num_steps=2)),
         "custom_config": json_utils.dumps({**TINY_CONFIG, "learning_rate": 0.5}),
         "run_fn": "models.trainer.run_fn"})

    values = tuned["best"]["values"]
    with open(os.path.join(model_run.uri, "hyperparameters.json")) as f:
        record = json.load(f)
    assert record["tuned"] is True and record["tuned_values"] == values
    assert record["train_steps"] == values["train_steps"] != 3  # tuned steps over train_args
    assert record["hparams"]["hidden_units"] == [int(u) for u in values["hidden_units"].split(",")]
    assert record["hparams"]["learning_rate"] == pytest.approx(values["learning_rate"])
    assert record["hparams"]["batch_size"] == 4 and record["hparams"]["seed"] == 3  # flags kept
    # The exported model has the tuned layers.
    loaded = tf.saved_model.load(os.path.join(model.uri, "Format-Serving"))
    kernels = sorted((v.name, v.shape[-1]) for v in loaded.variables
                     if v.name.startswith("hidden_") and "kernel" in v.name)
    assert [units for _, units in kernels] == record["hparams"]["hidden_units"]


def test_without_a_tuner_run_fn_records_the_flags_values(tmp_path):
    from tfx.components.trainer.fn_args_utils import FnArgs

    from models import trainer

    fn_args = FnArgs(model_run_dir=str(tmp_path), train_steps=7, eval_steps=2,
                     custom_config={**TINY_CONFIG, "train_workers": 1})
    path = trainer.record_hyperparameters(fn_args)
    with open(path) as f:
        record = json.load(f)
    assert record["tuned"] is False and record["tuned_values"] is None
    assert record["train_steps"] == 7 and record["hparams"]["hidden_units"] == [4]


def test_apply_best_hyperparameters_refuses_what_is_not_a_hyperparameters_config():
    from tfx.components.trainer.fn_args_utils import FnArgs

    with pytest.raises(ValueError, match="not a KerasTuner HyperParameters config"):
        tuner_lib.apply_best_hyperparameters(FnArgs(hyperparameters={"hidden_units": "8,4"}))
    with pytest.raises(ValueError, match="'x,y': expected comma-separated layer sizes"):
        tuner_lib.apply_best_hyperparameters(
            FnArgs(hyperparameters={"values": {"hidden_units": "x,y"}}, custom_config={}))


def _config(**kwargs):
    return PipelineConfig(pipeline_root="/tmp/p", curated_root="/tmp/c",
                          schema_path="/tmp/s.pbtxt", serving_base="/tmp/b", **kwargs)


def test_the_pipeline_has_a_tuner_feeding_the_trainer_only_with_tune():
    from pipeline.pipeline import create_pipeline

    plain = create_pipeline(_config())
    assert node_ids.TUNER not in [c.id for c in plain.components]
    trainer = next(c for c in plain.components if c.id == node_ids.TRAINER)
    assert "hyperparameters" not in trainer.inputs

    tuned = create_pipeline(_config(tune=True, tune_trials=3))
    components = {c.id: c for c in tuned.components}
    tuner = components[node_ids.TUNER]
    trainer = components[node_ids.TRAINER]
    assert trainer.inputs["hyperparameters"].producer_component_id == node_ids.TUNER
    assert tuner in trainer.upstream_nodes
    # Raw examples from ExampleGen, the transform graph from Transform.
    assert {n.id for n in tuner.upstream_nodes} == {
        node_ids.EXAMPLE_GEN, node_ids.TRANSFORM, node_ids.SCHEMA_GEN}
    assert tuner.inputs["examples"].producer_component_id == node_ids.EXAMPLE_GEN
    assert tuner.exec_properties["tuner_fn"] == "models.tuner.tuner_fn"
    assert json.loads(tuner.exec_properties["custom_config"])["tune_trials"] == 3
    assert [c.id for c in tuned.components].index(node_ids.TUNER) < [
        c.id for c in tuned.components].index(node_ids.TRAINER)


@pytest.fixture
def no_work(monkeypatch):
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("work started despite a bad flag")

    monkeypatch.setattr(local_runner, "curate", forbidden)
    monkeypatch.setattr(local_runner, "run_pipeline", forbidden)
    return calls


@pytest.mark.parametrize("argv, says", [
    (["--tune", "--tune-trials", "0"], "argument --tune-trials: 0: must be > 0"),
    (["--tune", "--tune-trials", "many"], "argument --tune-trials: 'many' is not an integer"),
    (["--tune-trials", "3"], "--tune-trials 3 sets the size of the --tune search: add --tune"),
])
def test_bad_tune_flags_are_usage_errors_before_any_work(argv, says, tmp_path, no_work, capsys):
    code = local_runner.main(["--runs-dir", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err
    assert code == local_runner.EXIT_USAGE == 2
    assert says in err and "Traceback" not in err, err
    assert no_work == [] and not os.path.exists(tmp_path / "runs")


def test_tune_flags_reach_the_pipeline_config(tmp_path):
    def config(*argv):
        flags = local_runner.parse_flags(["--runs-dir", str(tmp_path), *argv])
        return runner_settings.pipeline_config_from_flags(
            flags, pipeline_root="p", curated_root="c", schema_path="s", serving_base="b")

    assert (config().tune, config().tune_trials) == (False, 6)
    assert (config("--tune").tune, config("--tune").tune_trials) == (True, 6)
    assert config("--tune", "--tune-trials", "2").tune_trials == 2


def test_kubeflow_compile_has_the_tuner_only_with_tune(tmp_path):
    import kubeflow_runner
    from tests.test_kubeflow_runner import IMAGE, PIPELINE_ROOT, no_network, read_spec

    def compiled(name, *extra):
        path = str(tmp_path / name)
        with no_network():
            assert kubeflow_runner.main(["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT,
                                         "--output", path, *extra]) == 0
        return read_spec(path)

    plain = compiled("plain.yaml")
    assert node_ids.TUNER not in plain.root.dag.tasks
    spec = compiled("tuned.yaml", "--tune", "--tune-trials", "4")
    tasks = spec.root.dag.tasks
    assert node_ids.TUNER in tasks
    assert node_ids.TUNER in tasks[node_ids.TRAINER].dependent_tasks
    edge = tasks[node_ids.TRAINER].inputs.artifacts["hyperparameters"].task_output_artifact
    assert (edge.producer_task, edge.output_artifact_key) == (node_ids.TUNER, "best_hyperparameters")
    # The Tuner trains models: it gets the heavy tasks' resources.
    from pipeline.kubeflow import settings as kf

    deployment = spec.deployment_spec["executors"]
    label = spec.components[tasks[node_ids.TUNER].component_ref.name].executor_label
    assert deployment[label]["container"]["resources"]["memoryLimit"] == (
        kf.DEFAULT_HEAVY_RESOURCES.memory_limit_gb)
    parameters = tasks[node_ids.TUNER].inputs.parameters
    assert json.loads(parameters["custom_config"].runtime_value.constant.string_value)[
        "tune_trials"] == 4


def test_the_run_summary_prints_the_chosen_values_and_the_best_validation_auc():
    from pipeline.run_summary import ComponentRun, RunSummary, format_run_summary

    summary = RunSummary("p", "run-1", [ComponentRun(node_ids.TUNER, "COMPLETE", 12.0)],
                         tuned_hyperparameters={"hidden_units": "64,32", "learning_rate": 0.0041234,
                                                "train_steps": 600},
                         tuning_trials=[{"trial_id": "1", "score": 0.7712},
                                        {"trial_id": "0", "score": 0.7501}])
    text = format_run_summary(summary)
    assert "Tuning: 2 trials, best validation AUC 0.7712" in text
    assert ("Trainer's hyper-parameters from the search: hidden_units 64,32, "
            "learning_rate 0.0041234, train_steps 600") in text
    assert "Tuning" not in format_run_summary(RunSummary("p", "run-2", []))


@pytest.mark.slow
def test_local_runner_with_tune_runs_the_tuner_end_to_end(tmp_path):
    """`python local_runner.py --tune --tune-trials 2` on the bundled data, in a fresh process."""
    import re
    import subprocess
    import sys
    from types import SimpleNamespace

    from tfx import v1 as tfx

    from pipeline.config import DEFAULT_PIPELINE_NAME
    from pipeline.run_summary import collect_run_summary

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.run(
        [sys.executable, "local_runner.py", "--runs-dir", str(tmp_path / "runs"), "--train-steps",
         "400", "--eval-steps", "20", "--tune", "--tune-trials", "2"],
        cwd=repo, capture_output=True, text=True, timeout=1800)
    run = SimpleNamespace(stdout=process.stdout)
    assert process.returncode == 0, (process.stdout + process.stderr)[-3000:]
    announced = re.search(r"^Run (\S+) \(pid \d+\)$", process.stdout, re.MULTILINE)
    summary = collect_run_summary(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "runs" / "pipeline" / local_runner.METADATA_FILE)),
        DEFAULT_PIPELINE_NAME, run_id=announced.group(1))
    assert summary.status_of(node_ids.TUNER) == "COMPLETE"
    assert summary.status_of(node_ids.TRAINER) == "COMPLETE"
    pipeline_root = os.path.join(str(tmp_path / "runs"), "pipeline")
    tuner_dir = os.path.join(pipeline_root, node_ids.TUNER)
    best_files = [os.path.join(d, f) for d, _, files in os.walk(tuner_dir) for f in files
                  if f == "best_hyperparameters.txt"]
    assert len(best_files) == 1, best_files
    with open(best_files[0]) as f:
        best = json.load(f)["values"]
    assert len(summary.tuning_trials) == 2 and summary.tuned_hyperparameters == best
    # The Trainer trained with the search's best values.
    records = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(pipeline_root, "Trainer"))
               for f in files if f == "hyperparameters.json"]
    assert len(records) == 1, records
    with open(records[0]) as f:
        record = json.load(f)
    assert record["tuned"] is True and record["tuned_values"] == best
    assert record["train_steps"] == best["train_steps"]
    assert record["hparams"]["hidden_units"] == [int(u) for u in best["hidden_units"].split(",")]
    # The console names the search and its outcome, and the run pushed or said why not.
    assert "Tuning: 2 trials, best validation AUC" in run.stdout
    assert f"hidden_units {best['hidden_units']}" in run.stdout
    assert summary.pushed is not None, run.stdout[-3000:]
    assert ("Pushed: " in run.stdout) if summary.pushed else ("Not pushed: " in run.stdout)


def test_the_html_report_has_a_tuning_section_only_when_the_tuner_ran():
    from pipeline.report import render_report
    from pipeline.run_summary import RunSummary

    summary = RunSummary("p", "run-1", [], tuned_hyperparameters={"hidden_units": "16,8"},
                         tuning_trials=[{"trial_id": "0", "score": 0.7}])
    html = render_report(summary)
    assert "<h2>Tuning</h2><p>Tuning: 1 trial, best validation AUC 0.7000</p>" in html
    assert "hidden_units 16,8" in html
    assert "<h2>Tuning</h2>" not in render_report(RunSummary("p", "run-2", []))


@pytest.mark.parametrize("seed", [0, 5])
def test_the_oracle_draws_the_same_trials_for_the_same_seed_including_0(seed, tmp_path):
    def draws(directory, seed):
        tuner = tuner_lib.RainTuner({"seed": seed}, max_trials=3, seed=seed, directory=str(directory))
        values = []
        for index in range(3):
            trial = tuner.oracle.create_trial(f"tuner{index}")
            values.append(dict(trial.hyperparameters.values))
        return values

    first = draws(tmp_path / "a", seed)
    assert draws(tmp_path / "b", seed) == first
    assert len({json.dumps(v, sort_keys=True) for v in first}) == 3
    assert draws(tmp_path / "c", seed + 1) != first
