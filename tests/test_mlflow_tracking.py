"""MLflow tracking and the model registry (issue #14, "MLflow"), against a real MLflow.

Fast tests run the real VersionedPusher executor (and the real Evaluator
executor before it, on the "oracle" SavedModel of tests/test_slice_gates.py,
so the metrics are TFMA's own) with a SQLite tracking store in a temporary
directory, and read everything back through `mlflow.MlflowClient`: the run,
its params, metrics and tags, the registered version and the `serving` alias.
The slow test runs local_runner.py on the bundled data and asks a real
`mlflow server` subprocess (same SQLite store) for the run over REST.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from tfx.dsl.components.base import base_executor
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import standard_artifacts

from components.experiment_tracking import pusher as push_tracking
from components.experiment_tracking import tracking
from components.versioned_pusher import executor as pusher_executor
from pipeline.config import BlessingThresholds
from serving import model_dir as serving_dir
from tests.test_slice_gates import evaluate, station_rows, _oracle_model

mlflow = pytest.importorskip("mlflow")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_NAME = "rain_tomorrow"
PIPELINE = "rain-tomorrow-test"
GOOD = station_rows("alpha", 300, "good", 1) + station_rows("beta", 300, "good", 2)
NOISE = station_rows("alpha", 300, "noise", 4) + station_rows("beta", 300, "noise", 5)
SETTINGS = {"training": {"learning_rate": 0.003, "hidden_units": [32, 16], "train_steps": 500},
            "thresholds": {"min_auc": 0.65}, "span_window": 1}


def _model(work, name="model"):
    model = standard_artifacts.Model()
    model.uri = os.path.join(work, name)
    _oracle_model(os.path.join(model.uri, "Format-Serving"))
    return model


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    """(model, blessing, evaluation) for a blessed and a rejected candidate."""
    work = str(tmp_path_factory.mktemp("evaluations"))
    out = {}
    for kind, rows in (("blessed", GOOD), ("rejected", NOISE)):
        sub = os.path.join(work, kind)
        model = _model(sub)
        blessing, evaluation = evaluate(sub, model, rows, BlessingThresholds())
        out[kind] = (model, blessing, evaluation)
    assert out["blessed"][1].get_int_custom_property("blessed") == 1
    assert out["rejected"][1].get_int_custom_property("blessed") == 0
    return out


def _inputs(work, model, blessing, evaluation, naive=True):
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(work, "examples")
    examples.set_int_custom_property("span", 7)
    examples.set_string_custom_property("input_fingerprint", "split:single_split,num_files:1,total_bytes:42")
    schema = standard_artifacts.Schema()
    schema.uri = os.path.join(work, "schema")
    os.makedirs(schema.uri, exist_ok=True)
    shutil.copy(os.path.join(REPO, "schema", "schema.pbtxt"), schema.uri)
    model_run = standard_artifacts.ModelRun()
    model_run.uri = os.path.join(work, "model_run")
    os.makedirs(model_run.uri, exist_ok=True)
    with open(os.path.join(model_run.uri, push_tracking.HYPERPARAMETERS_FILE), "w") as f:
        json.dump({"hparams": {"learning_rate": 0.01, "hidden_units": [8]}, "train_steps": 120,
                   "eval_steps": 10, "tuned": True}, f)
    inputs = {pusher_executor.MODEL_KEY: [model], pusher_executor.MODEL_BLESSING_KEY: [blessing],
              pusher_executor.EVALUATION_KEY: [evaluation], pusher_executor.EXAMPLES_KEY: [examples],
              push_tracking.SCHEMA_KEY: [schema], push_tracking.MODEL_RUN_KEY: [model_run]}
    if naive:
        baselines = standard_artifacts.Model()  # any artifact type: only its uri is read
        baselines.uri = os.path.join(work, "naive")
        os.makedirs(baselines.uri, exist_ok=True)
        with open(os.path.join(baselines.uri, push_tracking.NAIVE_BASELINES_FILE), "w") as f:
            json.dump({"baselines": {
                "persistence": {"auc": 0.714, "auc_note": None,
                                "per_station": {"alpha": {"auc": 0.7, "examples": 300}}},
                "climatology": {"auc": 0.61}, "linear": {"auc": 0.782}}}, f)
        inputs[push_tracking.NAIVE_BASELINES_KEY] = [baselines]
    return inputs


def push(work, candidate, uri, run_id="2026-11-27T10:00:00.000001", naive=True):
    """Runs the VersionedPusher executor with MLflow at `uri`; returns the PushedModel."""
    model, blessing, evaluation = candidate
    pushed = standard_artifacts.PushedModel()
    pushed.uri = os.path.join(work, "pushed")
    context = base_executor.BaseExecutor.Context(
        pipeline_info=pipeline_pb2.PipelineInfo(id=PIPELINE), pipeline_run_id=run_id)
    pusher_executor.Executor(context).Do(
        _inputs(work, model, blessing, evaluation, naive=naive),
        {pusher_executor.PUSHED_MODEL_KEY: [pushed]},
        {pusher_executor.SERVING_BASE_KEY: os.path.join(work, "serving"),
         pusher_executor.MODEL_NAME_KEY: MODEL_NAME, pusher_executor.KEEP_VERSIONS_KEY: 0,
         push_tracking.TRACKING_URI_KEY: uri, push_tracking.PARAMS_KEY: json.dumps(SETTINGS)})
    return pushed


def _prop(artifact, name):
    return artifact.get_string_custom_property(name) if artifact.has_custom_property(name) else ""


def test_a_push_is_a_run_with_params_metrics_tags_and_a_registered_version(evaluations, tmp_path):
    uri = tracking.default_local_uri(str(tmp_path / "runs"))
    pushed = push(str(tmp_path), evaluations["blessed"], uri)
    assert pushed.get_int_custom_property(pusher_executor.PUSHED) == 1
    assert _prop(pushed, push_tracking.ERROR) == ""
    run_id = _prop(pushed, push_tracking.RUN_ID)
    version_dir = pushed.get_string_custom_property(pusher_executor.PUSHED_DESTINATION)
    serving_version = os.path.basename(version_dir)

    # push_metadata.json names the MLflow run; MLflow names the MLMD run.
    metadata = json.load(open(os.path.join(version_dir, serving_dir.METADATA_FILE)))
    assert metadata["mlflow"]["run_id"] == run_id
    assert metadata["mlflow"]["experiment"] == PIPELINE

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == PIPELINE
    tags = run.data.tags
    assert tags[tracking.TAG_PIPELINE_RUN_ID] == "2026-11-27T10:00:00.000001"
    assert tags[tracking.TAG_OUTCOME] == "pushed"
    assert tags[tracking.TAG_TF_SERVING_VERSION] == serving_version
    params = run.data.params
    assert params["training.learning_rate"] == "0.003"
    assert params["training.hidden_units"] == "[32, 16]"
    assert params["trained.train_steps"] == "120" and params["trained.tuned"] == "true"
    assert params["data.spans"] == "[7]"
    assert params["data.fingerprint"] == "split:single_split,num_files:1,total_bytes:42"
    assert params["evaluated_thresholds.auc.lower_bound"] == "0.65"
    assert params["code_version"].startswith(("git ", "package "))
    metrics = run.data.metrics
    # The Evaluator's own numbers, overall and per station.
    assert metrics["eval.auc"] == pytest.approx(metadata["metrics"]["candidate"]["auc"])
    assert metrics["eval.auc"] > 0.65
    assert metrics["eval_examples"] == 600
    assert metrics["slice.station_alpha.example_count"] == 300
    assert 0.65 < metrics["slice.station_beta.auc"] <= 1
    assert metrics["naive.persistence.auc"] == pytest.approx(0.714)
    assert metrics["naive.linear.auc"] == pytest.approx(0.782)
    assert metrics["naive.persistence.station_alpha.auc"] == pytest.approx(0.7)
    assert metrics["blessed"] == 1 and metrics["pushed"] == 1
    artifacts = {a.path for a in client.list_artifacts(run_id, push_tracking.PUSH_ARTIFACTS)}
    assert {"push/push_metadata.json", "push/schema.pbtxt"} <= artifacts
    assert "model/saved_model.pb" in {a.path for a in client.list_artifacts(run_id, "model")}
    # The artifacts sit beside the SQLite store, not in ./mlruns.
    assert run.info.artifact_uri.startswith((tmp_path / "runs" / "mlflow" / "artifacts").as_uri())

    # Registered under the serving model name, tagged, alias "serving".
    version = client.get_model_version_by_alias(MODEL_NAME, tracking.SERVING_ALIAS)
    assert str(version.version) == _prop(pushed, push_tracking.MODEL_VERSION) == "1"
    assert version.run_id == run_id
    assert version.tags[tracking.TAG_TF_SERVING_VERSION] == serving_version
    assert version.tags[tracking.TAG_BLESSED] == "true"
    assert float(version.tags[tracking.TAG_AUC]) == pytest.approx(metrics["eval.auc"], abs=1e-6)


def test_a_rejected_candidate_is_a_run_but_no_registered_version(evaluations, tmp_path):
    uri = tracking.default_local_uri(str(tmp_path / "runs"))
    pushed = push(str(tmp_path), evaluations["rejected"], uri, naive=False)
    assert pushed.get_int_custom_property(pusher_executor.PUSHED) == 0
    assert not os.path.isdir(os.path.join(tmp_path, "serving", MODEL_NAME))
    run_id = _prop(pushed, push_tracking.RUN_ID)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.TAG_OUTCOME] == "rejected"
    assert run.data.tags[tracking.TAG_REASON] == "model not blessed by the Evaluator"
    assert run.data.metrics["blessed"] == 0 and run.data.metrics["pushed"] == 0
    assert run.data.metrics["eval.auc"] < 0.65
    assert not any(k.startswith("naive.") for k in run.data.metrics)  # no baselines input
    assert client.search_registered_models() == []
    assert _prop(pushed, push_tracking.MODEL_VERSION) == ""


def test_a_second_push_moves_the_alias(evaluations, tmp_path):
    uri = tracking.default_local_uri(str(tmp_path / "runs"))
    first = push(str(tmp_path / "one"), evaluations["blessed"], uri, run_id="run-1")
    # Another model (a new Model artifact URI) into the same serving base.
    model, blessing, evaluation = evaluations["blessed"]
    other = standard_artifacts.Model()
    other.uri = str(tmp_path / "model-2")
    shutil.copytree(model.uri, other.uri)
    work_two = str(tmp_path / "one")  # same serving base as the first push
    second = push(work_two, (other, blessing, evaluation), uri, run_id="run-2")
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    serving = client.get_model_version_by_alias(MODEL_NAME, tracking.SERVING_ALIAS)
    assert str(serving.version) == "2" == _prop(second, push_tracking.MODEL_VERSION)
    assert serving.run_id == _prop(second, push_tracking.RUN_ID) != _prop(first, push_tracking.RUN_ID)
    assert serving.tags[tracking.TAG_TF_SERVING_VERSION] == os.path.basename(
        second.get_string_custom_property(pusher_executor.PUSHED_DESTINATION))
    old = client.get_model_version(MODEL_NAME, "1")
    assert old.aliases == [] and old.tags[tracking.TAG_TF_SERVING_VERSION] != serving.tags[
        tracking.TAG_TF_SERVING_VERSION]
    # The same model again is not pushed: a run tagged already_pushed, alias unchanged.
    third = push(work_two, (other, blessing, evaluation), uri, run_id="run-3")
    assert third.get_int_custom_property(pusher_executor.PUSHED) == 0
    assert client.get_run(_prop(third, push_tracking.RUN_ID)).data.tags[
        tracking.TAG_OUTCOME] == "already_pushed"
    assert str(client.get_model_version_by_alias(MODEL_NAME, tracking.SERVING_ALIAS).version) == "2"


def test_an_unreachable_tracking_server_does_not_stop_the_push(evaluations, tmp_path, monkeypatch):
    # tracking.client() bounds MLflow's retries (about 10 s here, not minutes).
    for name in tracking._HTTP_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pushed = push(str(tmp_path), evaluations["blessed"], f"http://127.0.0.1:{port}")
    assert pushed.get_int_custom_property(pusher_executor.PUSHED) == 1
    version_dir = pushed.get_string_custom_property(pusher_executor.PUSHED_DESTINATION)
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    error = _prop(pushed, push_tracking.ERROR)
    assert f"127.0.0.1:{port}" in error and "could not start a run" in error
    metadata = json.load(open(os.path.join(version_dir, serving_dir.METADATA_FILE)))
    assert "could not start a run" in metadata["mlflow"]["error"]
    assert _prop(pushed, push_tracking.RUN_ID) == ""


def test_tracking_off_records_nothing(evaluations, tmp_path):
    pushed = push(str(tmp_path), evaluations["blessed"], "")
    assert pushed.get_int_custom_property(pusher_executor.PUSHED) == 1
    assert not pushed.has_custom_property(push_tracking.RUN_ID)
    metadata = json.load(open(os.path.join(
        pushed.get_string_custom_property(pusher_executor.PUSHED_DESTINATION),
        serving_dir.METADATA_FILE)))
    assert "mlflow" not in metadata


# --- the runner's part: durations, row counts, anomalies, report, failed runs ---


def _summary(pusher_status="COMPLETE", mlflow_run_id=""):
    from pipeline.run_summary import ComponentRun, RunSummary

    return RunSummary(PIPELINE, "2026-11-27T11:00:00", [
        ComponentRun("ExampleGen", "COMPLETE", 3.5), ComponentRun("Pusher", pusher_status, 1.25)],
        anomalies=[], mlflow_run_id=mlflow_run_id)


def test_the_runner_adds_durations_rows_and_the_report_to_the_pushers_run(tmp_path, monkeypatch):
    from components.experiment_tracking import runner

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    uri = tracking.default_local_uri(str(tmp_path))
    run = tracking.start_run(uri, PIPELINE, "pusher's run")
    run.end()
    assert list(work.iterdir()) == []  # no ./mlruns where the process happens to run
    report = tmp_path / "report.html"
    report.write_text("<html>run report</html>")
    curation = type("Curation", (), {"rows_in": 1461, "rows_written": 1459, "rows_quarantined": 2})
    logged = runner.log_pipeline_run(uri, _summary(mlflow_run_id=run.run_id), str(report), 0, curation)
    assert (logged.run_id, logged.created, logged.error) == (run.run_id, False, "")
    client = mlflow.MlflowClient(uri)
    data = client.get_run(run.run_id).data
    assert data.metrics["duration_seconds.ExampleGen"] == 3.5
    assert data.metrics["duration_seconds.Pusher"] == 1.25
    assert data.metrics["rows.curation_in"] == 1461 and data.metrics["rows.curation_quarantined"] == 2
    assert data.metrics["anomalies"] == 0 and data.metrics["exit_code"] == 0
    assert data.tags["component.Pusher"] == "COMPLETE"
    assert [a.path for a in client.list_artifacts(run.run_id, "report")] == ["report/report.html"]


@pytest.mark.parametrize("exit_code, pusher, outcome, status", [
    (1, None, "data_rejected", "FAILED"), (3, None, "failed", "FAILED"),
    (0, "CACHED", "cached", "FINISHED")])
def test_a_run_without_a_pusher_run_of_its_own_is_logged_by_the_runner(
        tmp_path, exit_code, pusher, outcome, status):
    from components.experiment_tracking import runner

    uri = tracking.default_local_uri(str(tmp_path))
    # A cached pusher carries an earlier run's MLflow id: not this run's.
    earlier = tracking.start_run(uri, PIPELINE, "earlier").run_id
    summary = None if pusher is None else _summary(pusher, mlflow_run_id=earlier)
    logged = runner.log_pipeline_run(uri, summary, None, exit_code,
                                     pipeline_name=PIPELINE, pipeline_run_id="run-9")
    assert logged.created and logged.run_id != earlier and not logged.error
    run = mlflow.MlflowClient(uri).get_run(logged.run_id)
    assert run.info.status == status
    assert run.data.tags[tracking.TAG_OUTCOME] == outcome
    assert run.data.tags[tracking.TAG_PIPELINE_RUN_ID] == (
        "run-9" if summary is None else summary.run_id)
    assert run.data.metrics["exit_code"] == exit_code
    assert "FAILED" not in logged.describe() and logged.run_id in logged.describe()


def test_tracking_off_and_a_broken_store_are_reported_not_raised(tmp_path):
    from components.experiment_tracking import runner

    assert runner.log_pipeline_run("none", _summary(), None, 0) is None
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    logged = runner.log_pipeline_run(f"sqlite:///{blocker}/mlflow.db", None, None, 1,
                                     pipeline_name=PIPELINE, pipeline_run_id="run-1")
    assert logged.error and str(blocker) in logged.error
    assert logged.describe().startswith("MLflow: FAILED")


def test_the_summary_names_the_mlflow_run_and_version_and_a_failure_loudly():
    from pipeline.run_summary import format_mlflow

    summary = _summary(mlflow_run_id="abc123")
    summary.mlflow_registered_model, summary.mlflow_model_version = MODEL_NAME, "4"
    assert format_mlflow(summary) == [
        "MLflow: run abc123; registered model rain_tomorrow version 4 (alias serving)"]
    summary.mlflow_error = "MLflow (http://x) failed at registering the version: boom"
    assert format_mlflow(summary)[1].startswith("MLflow: FAILED (the push itself stands)")
    assert format_mlflow(_summary("CACHED", mlflow_run_id="old")) == []
    from pipeline.report import render_report

    html = render_report(summary)
    assert "MLflow: run abc123; registered model rain_tomorrow version 4 (alias serving)" in html


# --- flags: the local default, off, Kubeflow's run parameter --------------------


def test_local_default_is_a_sqlite_store_under_the_runs_dir_and_none_turns_it_off(tmp_path):
    import local_runner
    from pipeline.runner_settings import pipeline_config_from_flags

    flags = local_runner.parse_flags(["--runs-dir", str(tmp_path)])
    assert flags.mlflow_tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert tracking.artifact_root_for(flags.mlflow_tracking_uri) == str(tmp_path / "mlflow" / "artifacts")
    off = local_runner.parse_flags(["--runs-dir", str(tmp_path), "--mlflow-tracking-uri", "none"])
    config = pipeline_config_from_flags(off, pipeline_root="p", curated_root="c", schema_path="s",
                                        serving_base="b")
    assert config.mlflow_tracking_uri == ""
    server = local_runner.parse_flags(["--runs-dir", str(tmp_path),
                                       "--mlflow-tracking-uri", "http://mlflow:5000"])
    assert pipeline_config_from_flags(server, pipeline_root="p", curated_root="c", schema_path="s",
                                      serving_base="b").mlflow_tracking_uri == "http://mlflow:5000"


def test_kubeflow_default_is_the_in_cluster_server_as_a_run_parameter(tmp_path):
    import kubeflow_runner
    from pipeline.kubeflow import settings as kf

    argv = ["--image", "r/rain-tomorrow:1", "--pipeline-root", "minio://b/p",
            "--output", str(tmp_path / "p.yaml"), "--namespace", "team"]
    settings = kubeflow_runner.settings_from_flags(kubeflow_runner.parse_flags(argv))
    (parameter,) = [p for p in settings.parameters if p.name == "mlflow_tracking_uri"]
    assert parameter.default == "http://rain-tomorrow-mlflow.team.svc.cluster.local:5000"
    assert settings.pipeline.mlflow_tracking_uri == parameter.default
    given = kubeflow_runner.settings_from_flags(kubeflow_runner.parse_flags(
        argv + ["--mlflow-tracking-uri", "none"]))
    assert [p.default for p in given.parameters if p.name == "mlflow_tracking_uri"] == [""]


# --- deploy/mlflow: rendered, validated offline, wired to the runner's default ---


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not on PATH")
def test_the_mlflow_server_manifests_render_validate_and_match_the_runner():
    import yaml

    from pipeline.kubeflow import settings as kf

    out = subprocess.run(["kubectl", "kustomize", os.path.join(REPO, "deploy", "mlflow")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    resources = {doc["kind"]: doc for doc in yaml.safe_load_all(out.stdout) if doc}
    assert set(resources) == {"Deployment", "Service", "PersistentVolumeClaim"}
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for resource in resources.values():
        kubernetes_validate.validate(resource, "1.32.0", strict=True)
    service, deployment, pvc = (resources[k] for k in ("Service", "Deployment", "PersistentVolumeClaim"))
    assert service["metadata"]["name"] == kf.MLFLOW_SERVICE
    assert service["spec"]["ports"][0]["port"] == kf.MLFLOW_PORT
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "rain-tomorrow"  # the pipeline image (kustomize edit set image)
    assert container["command"] == ["mlflow", "server"]
    args = container["args"]
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in args
    assert "--artifacts-destination=/mlflow/artifacts" in args and "--serve-artifacts" in args
    assert "--host=0.0.0.0" in args and f"--port={kf.MLFLOW_PORT}" in args
    (mount,) = container["volumeMounts"]
    (volume,) = pod["spec"]["volumes"]
    assert mount["mountPath"] == "/mlflow" and mount["name"] == volume["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


# --- slow: a whole local run, then a real `mlflow server` on the same store ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_a_local_run_leaves_a_run_and_a_registered_version_the_server_answers_for(tmp_path):
    import re

    runs_dir = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "local_runner.py"), "--runs-dir", str(runs_dir),
         "--train-steps", "200", "--eval-steps", "20"],
        capture_output=True, text=True, timeout=1200, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.search(r"^MLflow: run (\w+); registered model rain_tomorrow version (\d+) "
                      r"\(alias serving\)$", proc.stdout, re.MULTILINE)
    assert found, proc.stdout[-3000:]
    run_id, version = found.groups()
    assert "MLflow: FAILED" not in proc.stdout + proc.stderr  # the runner's part is below
    uri = tracking.default_local_uri(str(runs_dir))
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    run = client.get_run(run_id)
    assert run.data.tags[tracking.TAG_OUTCOME] == "pushed"
    assert run.data.metrics["eval.auc"] > 0.5 and run.data.metrics["rows.curation_in"] > 1000
    assert run.data.metrics["duration_seconds.Trainer"] > 0
    assert run.data.params["training.train_steps"] == "200"
    assert "report" in {a.path for a in client.list_artifacts(run_id)}
    serving = client.get_model_version_by_alias(MODEL_NAME, tracking.SERVING_ALIAS)
    assert str(serving.version) == version and serving.run_id == run_id
    # push_metadata.json of the served version names the same run, and MLflow the MLMD run.
    version_dir = os.path.join(runs_dir, "serving", MODEL_NAME, serving.tags["tf_serving_version"])
    metadata = json.load(open(os.path.join(version_dir, serving_dir.METADATA_FILE)))
    assert metadata["mlflow"]["run_id"] == run_id
    assert run.data.tags[tracking.TAG_PIPELINE_RUN_ID] == metadata["pipeline_run_id"]

    # The MLflow UI's REST API, served by a real `mlflow server` on the same store.
    port = _free_port()
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    server = subprocess.Popen(
        [mlflow_cli, "server", "--backend-store-uri", uri,
         "--artifacts-destination", str(runs_dir / "mlflow" / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    assert response.read().decode().strip() == "OK"
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not answer in 90 s"
                time.sleep(1)
        answer = _get_json(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}")
        assert answer["run"]["info"]["run_id"] == run_id
        assert answer["run"]["info"]["status"] == "FINISHED"
        metrics = {m["key"]: m["value"] for m in answer["run"]["data"]["metrics"]}
        assert metrics["eval.auc"] == pytest.approx(run.data.metrics["eval.auc"])
        alias = _get_json(f"{base}/api/2.0/mlflow/registered-models/alias?"
                          f"name={MODEL_NAME}&alias={tracking.SERVING_ALIAS}")
        assert alias["model_version"]["version"] == version
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_a_new_store_leaves_the_processs_logging_handlers_open_and_in_place(tmp_path):
    """A new SQLite store runs Alembic's fileConfig, which closes every handler:
    absl's would close its stream (the runner's log, a test's capture)."""
    import io
    import logging

    from absl import logging as absl_logging

    absl_handler = absl_logging.get_absl_handler()
    python_handler = absl_handler.python_handler
    stream, root_stream = io.StringIO(), io.StringIO()
    root_handler = logging.StreamHandler(root_stream)
    root = logging.getLogger()
    saved_stream, saved_handlers, saved_level = python_handler.stream, list(root.handlers), root.level
    python_handler.stream = stream
    root.handlers[:] = [absl_handler, root_handler]
    try:
        tracking.client(f"sqlite:///{tmp_path}/fresh/mlflow.db")
        assert os.path.exists(tmp_path / "fresh" / "mlflow.db")  # the migrations did run
        assert not stream.closed and not root_stream.closed
        assert root.handlers == [absl_handler, root_handler]
        assert python_handler.stream is stream
        logging.getLogger("tfx.test").warning("still logged")
        assert "still logged" in root_stream.getvalue()
    finally:
        python_handler.stream = saved_stream
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
