"""The Kubeflow runner: the compiled KFP IR, its portability, and --submit wiring.

The pipeline is compiled once per format, with every socket connection
refused, into a temporary directory; the spec is read back with KFP's own
PipelineSpec / PipelineJob protos and compared with the graph the local
runner builds from the same `create_pipeline`.
"""
import contextlib
import json
import os
import re
import socket
from unittest import mock
from types import SimpleNamespace
from typing import Dict, Set

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_runner
from pipeline import node_ids
from pipeline.kubeflow import compile as kf_compile
from pipeline.kubeflow import settings as kf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "registry.example.com/rain-tomorrow:test"
PIPELINE_ROOT = "gs://rain-tomorrow-test/pipelines"
# Absolute paths of a developer machine or CI runner; none may reach the spec.
LOCAL_PATH_PREFIXES = (REPO_ROOT, "/home/", "/tmp/", "/Users/", "/work/", "/root/")
TFX_COMMAND = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
LAUNCHER_COMMAND = ["python", "-m", "pipeline.kubeflow.entrypoint"]
# Vertex AI mounts no volumes: the JSON (Vertex) compile uses Cloud Storage.
VERTEX_LOCATIONS = ["--data-root", "/gcs/rain-tomorrow-test/data",
                    "--serving-base", "gs://rain-tomorrow-test/models"]
CURATION_TASK = node_ids.SPARK_CURATION
EXAMPLE_GEN_TASK = node_ids.EXAMPLE_GEN


def flags(output: str, *extra: str):
    return ["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--output", output, *extra]


@contextlib.contextmanager
def no_network():
    """Refuses (and records) every attempt to open a connection or resolve a name."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError(f"network access during compilation: {args!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        yield attempts


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{format: (path, PipelineSpec)} compiled offline, YAML (KFP) and JSON (Vertex)."""
    directory = tmp_path_factory.mktemp("compiled")
    result = {}
    with no_network() as attempts:
        with pytest.raises(OSError):  # the guard is in force
            socket.create_connection(("kfp.example", 80))
        attempts.clear()
        for name, extra in (("pipeline.yaml", []), ("pipeline.json", VERTEX_LOCATIONS)):
            path = str(directory / name)
            assert kubeflow_runner.main(flags(path, *extra)) == 0
            result[name.split(".")[1]] = (path, read_spec(path))
    assert attempts == [], "compilation tried to use the network"
    return result


def read_spec(path: str) -> pipeline_spec_pb2.PipelineSpec:
    with open(path) as f:
        if path.endswith(".json"):
            job = json_format.Parse(f.read(), pipeline_spec_pb2.PipelineJob())
            spec_dict = json_format.MessageToDict(job.pipeline_spec)
        else:  # the PipelineSpec, then (optionally) the Kubernetes platform spec
            spec_dict = next(yaml.safe_load_all(f))
    return json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope="module")
def spec(compiled) -> pipeline_spec_pb2.PipelineSpec:
    return compiled["yaml"][1]


@pytest.fixture(scope="module")
def settings():
    return kubeflow_runner.settings_from_flags(kubeflow_runner.parse_flags(flags("unused.yaml")))


def expected_dag(settings) -> Dict[str, Set[str]]:
    """{task: dependent tasks} from the local runner's graph plus the curation task."""
    from pipeline.pipeline import create_pipeline

    local = create_pipeline(settings.pipeline)
    dag = {node.id: {upstream.id for upstream in node.upstream_nodes} for node in local.components}
    dag[CURATION_TASK] = set()
    dag[EXAMPLE_GEN_TASK].add(CURATION_TASK)
    return dag


def executors(spec) -> Dict[str, pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec]:
    """{task: its executor}; the deployment spec is a Struct inside PipelineSpec."""
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig())
    return {name: deployment.executors[spec.components[task.component_ref.name].executor_label]
            for name, task in spec.root.dag.tasks.items()}


def containers(spec):
    """{task: container spec} of the tasks that run a container."""
    return {name: executor.container for name, executor in executors(spec).items()
            if executor.HasField("container")}


def test_task_graph_is_the_local_graph_after_spark_curation(spec, settings):
    actual = {name: set(task.dependent_tasks) for name, task in spec.root.dag.tasks.items()}
    assert actual == expected_dag(settings)
    assert actual[CURATION_TASK] == set() and actual[EXAMPLE_GEN_TASK] == {CURATION_TASK}
    # The Evaluator's baseline comes from the serving directory, through a task.
    edge = spec.root.dag.tasks["Evaluator"].inputs.artifacts["baseline_model"].task_output_artifact
    assert (edge.producer_task, edge.output_artifact_key) == (node_ids.BASELINE_MODEL, "model")
    assert actual[node_ids.BASELINE_MODEL] == {"Trainer"}


def test_every_task_is_a_container_the_open_source_backend_runs(spec):
    """KFP's open-source backend refuses a whole run if any executor is a resolver."""
    kinds = {name: executor.WhichOneof("spec") for name, executor in executors(spec).items()}
    assert set(kinds.values()) == {"container"}, kinds
    assert containers(spec)["Evaluator"].args[1] == (
        "components.serving_baseline.executor.EvaluatorExecutor")


def test_every_container_runs_the_image_through_the_launcher_io_entrypoint(spec, compiled):
    """KFP (YAML): our wrapper of TFX's entrypoint; Vertex (JSON): TFX's own."""
    tasks = containers(spec)
    vertex = containers(compiled["json"][1])
    assert set(vertex) == set(tasks)
    for name, container in tasks.items():
        assert container.image == IMAGE and vertex[name].image == IMAGE
        assert list(container.command) == LAUNCHER_COMMAND
        assert list(vertex[name].command) == TFX_COMMAND
        assert container.args[0] == "--executor_class_path"
        assert container.args[:2] == vertex[name].args[:2]
    assert set(tasks) == set(spec.root.dag.tasks)
    example_gen = tasks[EXAMPLE_GEN_TASK]
    assert list(example_gen.lifecycle.pre_cache_check.command) == [
        "python", "-m", "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"]


def test_runtime_parameters_are_pipeline_inputs_with_defaults(spec, settings):
    parameters = spec.root.input_definitions.parameters
    assert set(parameters) == {"raw_data", "station", "train_args", "eval_args",
                               "mlflow_tracking_uri"}
    for name, definition in parameters.items():
        assert definition.parameter_type == pipeline_spec_pb2.ParameterType.STRING
        assert definition.is_optional and definition.description
    assert parameters["raw_data"].default_value.string_value == "/mnt/data/raw/*.csv"
    assert parameters["station"].default_value.string_value == ""
    assert json.loads(parameters["train_args"].default_value.string_value) == {
        "num_steps": settings.pipeline.training.train_steps}
    assert json.loads(parameters["eval_args"].default_value.string_value) == {
        "num_steps": settings.pipeline.training.eval_steps}


def test_runtime_parameters_feed_the_curation_and_trainer_tasks(spec):
    def bound(task):
        return {name: p.component_input_parameter
                for name, p in spec.root.dag.tasks[task].inputs.parameters.items()
                if p.component_input_parameter}

    # MLflow: the pusher's tracking URI is a run parameter too (issue #14); the
    # curation task and the AnomalyGate log the runs they reject with it.
    assert bound(CURATION_TASK) == {"raw_data": "raw_data", "station": "station",
                                    "mlflow_tracking_uri": "mlflow_tracking_uri"}
    assert bound("Trainer") == {"train_args": "train_args", "eval_args": "eval_args"}
    assert bound("Pusher") == {"mlflow_tracking_uri": "mlflow_tracking_uri"}
    assert bound(node_ids.ANOMALY_GATE) == {"mlflow_tracking_uri": "mlflow_tracking_uri"}


def test_json_is_a_vertex_pipeline_job_with_the_same_graph(compiled):
    path, spec = compiled["json"]
    yaml_spec = compiled["yaml"][1]
    assert {n: set(t.dependent_tasks) for n, t in spec.root.dag.tasks.items()} == {
        n: set(t.dependent_tasks) for n, t in yaml_spec.root.dag.tasks.items()}
    assert set(spec.root.input_definitions.parameters) == set(yaml_spec.root.input_definitions.parameters)
    with open(path) as f:
        runtime_config = json.load(f)["runtimeConfig"]
    assert runtime_config["gcsOutputDirectory"] == PIPELINE_ROOT
    assert set(runtime_config["parameterValues"]) == set(spec.root.input_definitions.parameters)


def test_yaml_is_what_kfp_client_submits(compiled):
    from kfp.client import client as kfp_client

    path, spec = compiled["yaml"]
    document = kfp_client._extract_pipeline_yaml(path)  # what create_run_* uploads
    assert document.pipeline_spec == spec
    assert spec.default_pipeline_root == PIPELINE_ROOT
    assert spec.schema_version == "2.1.0"


def test_no_local_path_and_user_code_by_module_path(compiled, spec):
    for path, _ in compiled.values():
        with open(path) as f:
            text = f.read()
        leaked = [prefix for prefix in LOCAL_PATH_PREFIXES if prefix in text]
        assert not leaked, f"{path} contains local paths starting with {leaked}"
    constants = {
        (task_name, name): p.runtime_value.constant.string_value
        for task_name, task in spec.root.dag.tasks.items()
        for name, p in task.inputs.parameters.items()
    }
    assert constants[("Transform", "preprocessing_fn")] == "models.preprocessing.preprocessing_fn"
    assert constants[("Trainer", "run_fn")] == "models.trainer.run_fn"
    assert not [key for key in constants if key[1] in ("module_file", "module_path")]
    assert constants[("ImportSchemaGen", "schema_file")] == kf.IMAGE_SCHEMA_PATH


def test_platform_spec_mounts_the_volumes_where_they_are_used(compiled, spec):
    """The second YAML document: what kfp.Client uploads as the Kubernetes platform spec."""
    from kfp.client import client as kfp_client
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s

    document = kfp_client._extract_pipeline_yaml(compiled["yaml"][0])
    executors = document.platform_spec.platforms["kubernetes"].deployment_spec.executors
    label_of = {name: spec.components[task.component_ref.name].executor_label
                for name, task in spec.root.dag.tasks.items()}
    mounts = {}
    for task, label in label_of.items():
        if label in executors:
            config = json_format.ParseDict(
                json_format.MessageToDict(executors[label]), k8s.KubernetesExecutorConfig())
            mounts[task] = [(m.constant, m.mount_path) for m in config.pvc_mount]
    data = [(kf.DEFAULT_DATA_CLAIM, "/mnt/data")]
    models = [(kf.DEFAULT_SERVING_CLAIM, "/mnt/models")]
    assert mounts == {CURATION_TASK: data, EXAMPLE_GEN_TASK: data, node_ids.DRIFT_VALIDATOR: data,
                      node_ids.BASELINE_MODEL: models, node_ids.PUSHER: models}


@pytest.mark.parametrize("kind, history_root", [
    ("yaml", "/mnt/data/drift_history"),
    ("json", "/gcs/rain-tomorrow-test/data/drift_history"),
])
def test_drift_node_feeds_the_gate_with_its_history_on_the_data_volume(compiled, kind, history_root):
    """The same drift gate as the local runner, its history beside the curated data."""
    path, spec = compiled[kind]
    tasks = spec.root.dag.tasks
    drift_task = tasks[node_ids.DRIFT_VALIDATOR]
    assert set(drift_task.dependent_tasks) == {node_ids.STATISTICS_GEN, node_ids.SCHEMA_GEN, EXAMPLE_GEN_TASK}
    statistics = drift_task.inputs.artifacts["statistics"].task_output_artifact
    assert (statistics.producer_task, statistics.output_artifact_key) == (node_ids.STATISTICS_GEN, "statistics")
    examples = drift_task.inputs.artifacts["examples"].task_output_artifact  # their span
    assert (examples.producer_task, examples.output_artifact_key) == (EXAMPLE_GEN_TASK, "examples")
    assert drift_task.inputs.parameters["history_root"].runtime_value.constant.string_value == history_root
    gate = tasks[node_ids.ANOMALY_GATE]
    edge = gate.inputs.artifacts["drift_anomalies"].task_output_artifact
    assert (edge.producer_task, edge.output_artifact_key) == (node_ids.DRIFT_VALIDATOR, "anomalies")
    assert node_ids.DRIFT_VALIDATOR in gate.dependent_tasks
    assert node_ids.ANOMALY_GATE in tasks[node_ids.TRANSFORM].dependent_tasks
    assert containers(spec)[node_ids.DRIFT_VALIDATOR].args[1] == "components.data_validation.drift.Executor"
    if kind == "yaml":  # the history's directory is on the data volume the task mounts
        with open(path) as f:
            _, platform = yaml.safe_load_all(f)
        label = spec.components[drift_task.component_ref.name].executor_label
        (mount,) = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label]["pvcMount"]
        assert mount == {"constant": kf.DEFAULT_DATA_CLAIM, "mountPath": "/mnt/data"}
        assert history_root.startswith(mount["mountPath"] + "/")


def _run_task_in_process(backend, task_name: str, results: dict, work_dir):
    """One task of a compiled spec, in this process, as KFP's driver and launcher give it.

    The inputs are resolved by tests/kfp_launcher.py's model of the driver;
    the command is the task's own (pipeline.kubeflow.entrypoint, then TFX's
    Kubeflow v2 entrypoint) with the executor input in place of `{{$}}`;
    object-store URIs map to local paths under KFP_LAUNCHER_LOCAL_ROOT.
    Returns (status, executor output dict or the exception).
    """
    from pipeline.kubeflow import entrypoint as kfp_entrypoint

    spec = backend.spec
    task = spec.root.dag.tasks[task_name]
    component = spec.components[task.component_ref.name]
    container = backend.deployment.executors[component.executor_label].container
    assert list(container.command) == LAUNCHER_COMMAND
    parameters, artifacts = backend._inputs(task, {}, results)
    output_file = str(work_dir / f"{task_name}-output_metadata.json")
    outputs = {key: {"name": f"artifacts/{task_name}-{key}", "uri": backend.uri("run-1", task_name, key),
                     "type": json_format.MessageToDict(definition.artifact_type)}
               for key, definition in component.output_definitions.artifacts.items()}
    executor_input = {
        "inputs": {"parameterValues": parameters, "artifacts": artifacts},
        "outputs": {"artifacts": {k: {"artifacts": [v]} for k, v in outputs.items()},
                    "outputFile": output_file},
    }
    argv = [json.dumps(executor_input) if a == "{{$}}" else a for a in container.args]
    try:
        kfp_entrypoint.main(kfp_entrypoint.parse_flags(["entrypoint"] + argv))
    except Exception as error:  # the task's pod would exit non-zero
        return "FAILED", error
    with open(output_file) as f:
        return "COMPLETE", json.load(f)


def test_drift_task_runs_on_the_compiled_spec_and_stops_the_gate(tmp_path, monkeypatch):
    """The DriftValidator and AnomalyGate tasks of a compiled YAML, through TFX's Kubeflow v2
    entrypoint: the span arrives as the Examples' metadata (ExampleGen's custom property, as
    TFX's entrypoint writes it into ExampleGen's executor output), the history lives on the
    "data volume" (--data-root), a +15 degC span stops the gate."""
    import pandas as pd
    import tensorflow_data_validation as tfdv
    from tfx.components.example_gen import driver as example_gen_driver
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
    from tfx.types import artifact_utils, standard_artifacts
    from vega_datasets import local_data

    from components.data_validation.component import DataAnomaliesError
    from pipeline.kubeflow import entrypoint as kfp_entrypoint
    from tests.kfp_launcher import PodmanBackend, TaskResult

    volume = tmp_path / "volume"  # the data claim, mounted at --data-root
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path, "--data-root", str(volume))) == 0
    with open(path) as f:
        spec_dict, platform = yaml.safe_load_all(f)
    spec = json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())
    backend = PodmanBackend(spec, platform, IMAGE, str(tmp_path / "store"), {}, str(tmp_path), podman=None)
    local_root = tmp_path / "pod"
    monkeypatch.setenv(kfp_entrypoint.LOCAL_ROOT_ENV, str(local_root))

    def output_type(task, key):
        component = spec.components[spec.root.dag.tasks[task].component_ref.name]
        return json_format.MessageToDict(component.output_definitions.artifacts[key].artifact_type)

    def produced(task, key, run, artifact, files):
        """A producer task's recorded output: its files where the launcher downloads them,
        its metadata as TFX's entrypoint writes it into the executor output."""
        uri = backend.uri(run, task, key)
        for relative, data in files.items():
            target = local_root / backend.pod_path(uri).lstrip("/") / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        artifact.uri = uri
        runtime = json_format.MessageToDict(kubeflow_v2_entrypoint_utils.to_runtime_artifact(artifact, {}))
        return {"name": f"artifacts/{run}-{task}-{key}", "type": output_type(task, key),
                "uri": uri, "metadata": runtime.get("metadata", {})}

    seattle = pd.read_csv(local_data.seattle_weather.filepath)
    columns = ["precipitation", "temp_max", "temp_min", "wind", "weather"]
    early = seattle[seattle.date < "2014"][columns].reset_index(drop=True)
    heated = seattle[seattle.date >= "2014"][columns].reset_index(drop=True)
    heated[["temp_max", "temp_min"]] += 15.0
    with open(os.path.join(REPO_ROOT, "schema", "schema.pbtxt"), "rb") as f:
        schema_file = f.read()

    def run(span, frame):
        name = f"run-{span}"
        examples = standard_artifacts.Examples()  # what our ExampleGen executor records
        example_gen_driver.update_output_artifact(
            {"span": span, "version": None, "input_fingerprint": name}, examples.mlmd_artifact)
        statistics = standard_artifacts.ExampleStatistics()
        statistics.span = examples.span  # what StatisticsGen copies: 0, not the span
        statistics.split_names = artifact_utils.encode_split_names(["train"])
        stats = tfdv.generate_statistics_from_dataframe(frame).SerializeToString()
        schema = standard_artifacts.Schema()
        clean = standard_artifacts.ExampleAnomalies()
        clean.split_names = statistics.split_names
        results = {
            node_ids.STATISTICS_GEN: TaskResult("COMPLETE", {"statistics": produced(
                node_ids.STATISTICS_GEN, "statistics", name, statistics,
                {"Split-train/FeatureStats.pb": stats})}),
            node_ids.SCHEMA_GEN: TaskResult("COMPLETE", {"schema": produced(
                node_ids.SCHEMA_GEN, "schema", name, schema, {"schema.pbtxt": schema_file})}),
            node_ids.EXAMPLE_VALIDATOR: TaskResult("COMPLETE", {"anomalies": produced(
                node_ids.EXAMPLE_VALIDATOR, "anomalies", name, clean, {"Split-train/SchemaDiff.pb": b""})}),
            EXAMPLE_GEN_TASK: TaskResult("COMPLETE", {"examples": produced(
                EXAMPLE_GEN_TASK, "examples", name, examples, {})}),
        }
        status, output = _run_task_in_process(backend, node_ids.DRIFT_VALIDATOR, results, tmp_path)
        assert status == "COMPLETE", output
        (anomalies,) = output["artifacts"]["anomalies"]["artifacts"]
        # The launcher records the output at its object-store URI, with the drift note.
        assert anomalies["uri"] == backend.uri("run-1", node_ids.DRIFT_VALIDATOR, "anomalies")
        results[node_ids.DRIFT_VALIDATOR] = TaskResult("COMPLETE", {"anomalies": dict(
            anomalies, name=f"artifacts/{name}-drift", type=output_type(node_ids.DRIFT_VALIDATOR, "anomalies"))})
        gate_status, gate_output = _run_task_in_process(backend, node_ids.ANOMALY_GATE, results, tmp_path)
        return anomalies["metadata"], gate_status, gate_output

    history = volume / "drift_history"
    metadata, gate_status, _ = run(1, early)
    assert metadata["drift_note"].startswith("span 1 is the first span: nothing to compare with")
    assert metadata["drift_span"] == 1 and metadata["drift_recorded"] == 1
    assert gate_status == "COMPLETE"
    assert (history / "span-1" / "Split-train" / "FeatureStats.pb").is_file()
    assert (history / "span-1" / "RECORDED.json").is_file()

    metadata, gate_status, error = run(2, heated)
    assert metadata["drift_note"].startswith("span 2 compared with span 1 (train: ")
    assert metadata["drift_previous_span"] == 1 and metadata["drift_recorded"] == 0
    assert gate_status == "FAILED" and isinstance(error, DataAnomaliesError)
    message = str(error)
    assert "temp_max" in message and "temp_min" in message
    assert "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in message
    assert "Jensen-Shannon divergence between current and previous is 0." in message
    assert sorted(os.listdir(history)) == ["span-1"]


def test_object_store_locations_need_no_volumes(tmp_path):
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path, "--serving-base", "gs://bucket/models",
                                      "--serving-volume-claim", "")) == 0
    with open(path) as f:
        _, platform = yaml.safe_load_all(f)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {f"{CURATION_TASK}_executor", f"{EXAMPLE_GEN_TASK}_executor",
                              f"{node_ids.DRIFT_VALIDATOR}_executor"}


def test_direct_artifact_io_keeps_tfxs_entrypoint(tmp_path):
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path, "--artifact-io", "direct")) == 0
    assert {tuple(c.command) for c in containers(read_spec(path)).values()} == {tuple(TFX_COMMAND)}


@pytest.mark.parametrize("kind", ["yaml", "json"])
def test_only_the_spark_task_skips_the_cache(compiled, kind):
    """ExampleGen's key sees new data through the Spark task's fingerprint (and, on
    Vertex, through TFX's driver hook too); the Spark task must always look."""
    spec = compiled[kind][1]
    caching = {name: spec.root.dag.tasks[name].caching_options.enable_cache for name in containers(spec)}
    assert {name for name, enabled in caching.items() if not enabled} == {CURATION_TASK}


def test_example_gen_takes_the_spark_tasks_data_fingerprint(spec):
    source = spec.root.dag.tasks[EXAMPLE_GEN_TASK].inputs.parameters["data_fingerprint"]
    producer = source.task_output_parameter
    # TFX 1.16 names the producer '<id>_task'; the spec must name the real task.
    assert (producer.producer_task, producer.output_parameter_key) == (CURATION_TASK, "data_fingerprint")
    curation = spec.components[spec.root.dag.tasks[CURATION_TASK].component_ref.name]
    assert curation.output_definitions.parameters["data_fingerprint"].parameter_type == (
        pipeline_spec_pb2.ParameterType.STRING)
    example_gen = spec.components[spec.root.dag.tasks[EXAMPLE_GEN_TASK].component_ref.name]
    assert "data_fingerprint" in example_gen.input_definitions.parameters


def test_task_names_are_valid_argo_dag_task_names(compiled):
    """KFP's backend makes Argo DAG tasks `<task>` and `<task>-driver` (argocompiler/dag.go);
    Argo rejects the workflow unless both match its name pattern."""
    argo = r"^[a-zA-Z0-9][-a-zA-Z0-9]*$"
    for _, spec in compiled.values():
        for name in spec.root.dag.tasks:
            assert re.match(argo, name) and re.match(argo, name + "-driver"), name


def test_a_task_name_argo_would_reject_is_refused_at_compile_time(spec):
    broken = pipeline_spec_pb2.PipelineSpec()
    broken.CopyFrom(spec)
    broken.root.dag.tasks["baseline_model"].CopyFrom(broken.root.dag.tasks[node_ids.BASELINE_MODEL])
    with pytest.raises(ValueError, match=r"\['baseline_model'\].*letters, digits, hyphens"):
        kf_compile.check_task_names(broken)


def test_every_task_has_requests_and_limits(spec):
    tasks = containers(spec)
    for name, container in tasks.items():
        resources = container.resources
        assert 0 < resources.cpu_request <= resources.cpu_limit, name
        assert 0 < resources.memory_request <= resources.memory_limit, name
    assert tasks["Trainer"].resources.memory_limit == kf.DEFAULT_HEAVY_RESOURCES.memory_limit_gb
    assert tasks["ImportSchemaGen"].resources.memory_limit == kf.DEFAULT_RESOURCES.memory_limit_gb


def test_task_resources_flag_overrides_one_task(tmp_path):
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path, "--task-resources", "Trainer=2,8,4,16")) == 0
    trainer = containers(read_spec(path))["Trainer"].resources
    assert (trainer.cpu_request, trainer.memory_request, trainer.cpu_limit, trainer.memory_limit) == (2, 8, 4, 16)


def test_curation_fails_with_the_jobs_message(tmp_path):
    from components.spark_curation.component import curate, split_raw_data
    from components.spark_curation.job import CurationError

    assert split_raw_data(" a.csv, raw/*.csv ,") == ["a.csv", "raw/*.csv"]
    with pytest.raises(CurationError, match="matches no file"):
        curate(str(tmp_path / "missing" / "*.csv"), str(tmp_path / "data"), "", "local[1]")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["--span-window", "3"], "SpanRangeStrategy"),
    (["--submit"], "--submit needs --endpoint"),
    (["--submit", "--endpoint", "http://kfp", "--output", "p.json"], "use --output *.yaml"),
    (["--schedule", "0 6 * *"], "has 4 fields"),
    (["--output", "p.json"], "--data-root /mnt/data does not exist on Vertex AI"),
    (["--output", "p.json", *VERTEX_LOCATIONS, "--data-volume-claim", "x"], "mounts no volumes"),
    (["--serving-volume-claim", ""], "--serving-base /mnt/models is a file system path but "
                                     "--serving-volume-claim is ''"),
    (["--data-volume-claim", ""], "the pod's ephemeral disk"),
    (["--resources", "1,2,3"], "give four positive numbers"),
    (["--heavy-resources", "2,8,1,16"], "a limit is below its request"),
    (["--task-resources", "Trainr=1,1,1,1"], "unknown tasks ['Trainr']"),
    (["--keep-versions", "1"], "keep at least 2 versions"),
])
def test_bad_flag_combinations_are_refused(argv, message, capsys):
    base = ["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT]
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.parse_flags(base + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cron_gets_kfps_seconds_field():
    assert kf.kfp_cron("0 6 * * *") == "0 0 6 * * *"
    assert kf.kfp_cron("30 0 6 * * 1-5") == "30 0 6 * * 1-5"


@pytest.fixture
def fake_client():
    """kfp.Client with its real signatures: a misspelt argument fails as it would for real."""
    import kfp

    client_class = mock.create_autospec(kfp.Client)
    client_class.return_value.create_experiment.return_value = SimpleNamespace(experiment_id="exp-1")
    return client_class


def test_the_fake_client_refuses_what_kfp_client_refuses(fake_client):
    with pytest.raises(TypeError):
        fake_client(hots="http://kfp")
    with pytest.raises(TypeError):
        fake_client(host="http://kfp").create_run_from_pipeline_package("p.yaml", experiment="x")


def submit_flags(tmp_path, *extra):
    return flags(str(tmp_path / "p.yaml"), "--submit", "--endpoint", "http://kfp.example:8080",
                 "--namespace", "team-weather", "--experiment", "rain", *extra)


def test_submit_creates_a_run_of_the_compiled_package(tmp_path, fake_client, capsys):
    assert kubeflow_runner.main(submit_flags(tmp_path, "--run-name", "nightly-1"), fake_client) == 0
    fake_client.assert_called_once_with(host="http://kfp.example:8080", namespace="team-weather")
    client = fake_client.return_value
    client.create_experiment.assert_called_once_with(name="rain", namespace="team-weather")
    client.create_run_from_pipeline_package.assert_called_once_with(
        str(tmp_path / "p.yaml"), run_name="nightly-1", experiment_id="exp-1",
        namespace="team-weather", pipeline_root=PIPELINE_ROOT)
    assert os.path.isfile(tmp_path / "p.yaml")
    assert "Submitted run 'nightly-1'" in capsys.readouterr().out


def test_submit_authenticates_with_a_token_cookies_or_service_account(tmp_path, fake_client):
    from kfp.client import ServiceAccountTokenVolumeCredentials

    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOi.token\n")
    assert kubeflow_runner.main(submit_flags(
        tmp_path, "--token-file", str(token_file), "--cookies", "authservice_session=abc",
        "--sa-token-path", "/var/run/secrets/kubeflow/pipelines/token",
        "--ssl-ca-cert", "/etc/ssl/kfp-ca.pem"), fake_client) == 0
    kwargs = fake_client.call_args.kwargs
    assert kwargs["existing_token"] == "eyJhbGciOi.token"
    assert kwargs["cookies"] == "authservice_session=abc"
    assert kwargs["ssl_ca_cert"] == "/etc/ssl/kfp-ca.pem"
    assert isinstance(kwargs["credentials"], ServiceAccountTokenVolumeCredentials)
    assert kwargs["credentials"]._token_path == "/var/run/secrets/kubeflow/pipelines/token"


def test_schedule_creates_a_recurring_run(tmp_path, fake_client):
    assert kubeflow_runner.main(submit_flags(tmp_path, "--schedule", "0 6 * * *"), fake_client) == 0
    kwargs = fake_client.return_value.create_recurring_run.call_args.kwargs
    assert kwargs["cron_expression"] == "0 0 6 * * *"
    assert kwargs["pipeline_package_path"] == str(tmp_path / "p.yaml")
    assert kwargs["experiment_id"] == "exp-1" and kwargs["pipeline_root"] == PIPELINE_ROOT
    assert kwargs["job_name"].startswith("rain-tomorrow-") and kwargs["max_concurrency"] == 1


def test_endpoint_failure_names_the_endpoint_and_exits_non_zero(tmp_path, capsys):
    def unreachable(**kwargs):
        raise ConnectionError("[Errno 111] Connection refused")

    assert kubeflow_runner.main(submit_flags(tmp_path), unreachable) == 1
    err = capsys.readouterr().err
    assert "KFP endpoint http://kfp.example:8080 failed" in err
    assert "ConnectionError: [Errno 111] Connection refused" in err


def test_an_unauthorised_endpoint_points_at_the_auth_flags(tmp_path, capsys):
    def unauthorised(**kwargs):
        raise RuntimeError("(401) Reason: Unauthorized")

    assert kubeflow_runner.main(submit_flags(tmp_path), unauthorised) == 1
    assert "--token-file, --cookies or --sa-token-path" in capsys.readouterr().err


def test_spark_on_kubernetes_settings_reach_the_curation_task(tmp_path):
    """With a k8s:// master the task's pod is the Spark driver and executors are pods of the
    same image (components/spark_curation/cluster.py); local masters pass no conf."""
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path, "--spark-master", "k8s://https://kubernetes.default.svc",
                                      "--namespace", "team-weather", "--spark-executor-instances", "3")) == 0
    parameters = read_spec(path).root.dag.tasks[CURATION_TASK].inputs.parameters
    assert parameters["spark_master"].runtime_value.constant.string_value == "k8s://https://kubernetes.default.svc"
    conf = json.loads(parameters["spark_conf"].runtime_value.constant.string_value)
    assert conf["spark.kubernetes.container.image"] == IMAGE
    assert conf["spark.kubernetes.namespace"] == "team-weather"
    assert conf["spark.executor.instances"] == "3"
    claim_keys = [k for k, v in conf.items() if v == kf.DEFAULT_DATA_CLAIM]
    assert claim_keys and claim_keys[0].startswith("spark.kubernetes.executor.volumes.persistentVolumeClaim.")
    local = str(tmp_path / "local.yaml")
    assert kubeflow_runner.main(flags(local)) == 0
    assert read_spec(local).root.dag.tasks[CURATION_TASK].inputs.parameters[
        "spark_conf"].runtime_value.constant.string_value == ""
