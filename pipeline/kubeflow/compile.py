"""Compiles the pipeline to KFP's v2 IR, with what TFX's compiler leaves out.

The graph is the local one (`pipeline.pipeline.create_pipeline`) led by the
Spark curation task. TFX's KubeflowV2DagRunner writes the PipelineSpec; this
module then makes it run on the open-source KFP 2.x backend as well as on
Vertex AI (see `finish_spec`) and adds the Kubernetes platform spec that
mounts the data and serving volumes.
"""
import json
import os
import re
from typing import List

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import node_ids
from pipeline.kubeflow.platform_spec import platform_spec
from pipeline.kubeflow.settings import KubeflowSettings, Resources, RunParameter

# Every task runs this in launcher mode (the open-source backend).
LAUNCHER_ENTRYPOINT = ["python", "-m", "pipeline.kubeflow.entrypoint"]
# KFP's backend compiler (backend/src/v2/compiler/argocompiler) names the Argo
# DAG tasks of a KFP task `<task>` and `<task>-driver`; Argo validates DAG
# task names against this pattern and rejects the whole workflow otherwise.
ARGO_TASK_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
ARGO_DRIVER_SUFFIX = "-driver"
CURATED_FINGERPRINT_OUTPUT = "data_fingerprint"


def build_pipeline(settings: KubeflowSettings):
    """The shared pipeline, led by the Spark curation task, with run parameters."""
    from tfx import v1 as tfx

    from components.spark_curation.component import SparkCuration
    from pipeline.pipeline import create_pipeline

    parameters = {p.name: _runtime_parameter(p) for p in settings.parameters}
    curation = SparkCuration(
        raw_data=parameters["raw_data"],
        output_dir=settings.data_root,
        station=parameters["station"],
        spark_master=settings.spark_master,
        spark_conf=settings.spark_conf,
        max_quarantine_share=settings.max_quarantine_share,
        station_from_filename=int(settings.station_from_filename),
        mlflow_tracking_uri=parameters["mlflow_tracking_uri"],
        pipeline_name=settings.pipeline.pipeline_name,
    ).with_id(node_ids.SPARK_CURATION)
    fingerprint = None
    if CURATED_FINGERPRINT_OUTPUT in curation.outputs:
        fingerprint = curation.outputs[CURATED_FINGERPRINT_OUTPUT].future()[0].value
    return create_pipeline(
        settings.pipeline,
        data_preparation=curation,
        data_fingerprint=fingerprint,
        # The Trainer's args as proto JSON: TFX's form of a proto run parameter.
        train_args=parameters["train_args"],
        eval_args=parameters["eval_args"],
        # The pusher's MLflow tracking URI, also a run parameter.
        mlflow_tracking_uri=parameters["mlflow_tracking_uri"],
        log_rejections=True,
    )


def _runtime_parameter(parameter: RunParameter):
    from tfx import v1 as tfx

    return tfx.dsl.experimental.RuntimeParameter(
        name=parameter.name, ptype=str, default=parameter.default,
        description=parameter.description)


def compile_pipeline(settings: KubeflowSettings) -> str:
    """Compiles to `settings.output` (YAML PipelineSpec or JSON PipelineJob).

    Returns:
      The path written.
    """
    from tfx import v1 as tfx

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=settings.image,
            # Schema 2.1 passes parameters as `parameterValues` (what the KFP
            # 2.x launcher fills in) and adds each task's inputs spec so TFX's
            # entrypoint reads them; with 2.0 it reads the deprecated
            # `parameters` field, which KFP 2.x leaves empty.
            use_pipeline_spec_2_1=True,
        )
    )
    pipeline = build_pipeline(settings)
    # The runner returns the PipelineJob; it is written below, once
    # `finish_spec` has added what TFX leaves out.
    job = runner.run(
        pipeline,
        parameter_values={p.name: p.default for p in settings.parameters},
        write_out=False,
    )
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    finish_spec(spec, settings)
    job["pipelineSpec"] = json_format.MessageToDict(spec)
    os.makedirs(os.path.dirname(settings.output), exist_ok=True)
    with open(settings.output, "w") as f:
        if settings.output.endswith(".json"):
            json.dump(job, f, indent=2, sort_keys=True)
        else:
            documents = [job["pipelineSpec"]]
            if settings.volume_mounts:
                documents.append(platform_spec(spec, settings.volume_mounts))
            yaml.safe_dump_all(documents, f, sort_keys=True)
    return settings.output


def uncached_tasks(spec: pipeline_spec_pb2.PipelineSpec) -> List[str]:
    """Tasks whose cache key cannot see new data, so they must always run.

    KFP computes a task's cache key from its parameters and input artifacts
    before it starts. The Spark task's glob may match new files while its
    parameters stay equal (the job itself skips raw data it has curated), so
    it always runs. ExampleGen's parameters hold the pattern
    `span-{SPAN}/*.parquet`; its key sees new data when it takes the Spark
    task's data fingerprint as a parameter, or where TFX's driver hook runs
    first (Vertex AI). Otherwise a cached ExampleGen would never see a new span.
    """
    tasks = [node_ids.SPARK_CURATION]
    example_gen = spec.root.dag.tasks[node_ids.EXAMPLE_GEN]
    fed = any(p.task_output_parameter.producer_task for p in example_gen.inputs.parameters.values())
    executor = _executors(spec)[spec.components[example_gen.component_ref.name].executor_label]
    launcher_io = list(executor["container"]["command"]) == LAUNCHER_ENTRYPOINT
    if not fed and launcher_io:
        tasks.append(node_ids.EXAMPLE_GEN)
    return tasks


def finish_spec(spec: pipeline_spec_pb2.PipelineSpec, settings: KubeflowSettings) -> None:
    """What TFX's compiler leaves out of the PipelineSpec, in place.

    * Parameter defaults: TFX puts them only in a PipelineJob's runtimeConfig,
      which a YAML PipelineSpec does not have; the KFP UI pre-fills a run's
      parameters from `defaultValue`. Likewise the pipeline root.
    * Task-output parameters name their producer as it is in the spec (TFX
      1.16 appends '_task' to the producer's id).
    * With launcher I/O, every task runs `pipeline.kubeflow.entrypoint`.
    * Caching off where the key cannot see new data (`uncached_tasks`).
    * Requests and limits for every task's container.
    Raises ValueError if a task name is one Argo would reject.
    """
    check_task_names(spec)
    spec.default_pipeline_root = settings.pipeline.pipeline_root
    for parameter in settings.parameters:
        definition = spec.root.input_definitions.parameters[parameter.name]
        definition.default_value.string_value = parameter.default
        definition.is_optional = True
        definition.description = parameter.description
    for task in spec.root.dag.tasks.values():
        for parameter in task.inputs.parameters.values():
            source = parameter.task_output_parameter
            if source.producer_task and source.producer_task not in spec.root.dag.tasks:
                source.producer_task = source.producer_task.removesuffix("_task")
    executors = _executors(spec)
    if settings.artifact_io == "launcher":
        for label in executors.keys():
            container = executors[label]["container"]
            del container["command"][:]
            container["command"].extend(LAUNCHER_ENTRYPOINT)
    for name in uncached_tasks(spec):
        spec.root.dag.tasks[name].caching_options.enable_cache = False
    for name, task in spec.root.dag.tasks.items():
        resources = settings.resources.get(name)
        if resources is not None:
            label = spec.components[task.component_ref.name].executor_label
            executors[label]["container"]["resources"] = _resource_spec(resources)


def _resource_spec(resources: Resources) -> dict:
    """PipelineContainerSpec.ResourceSpec: CPUs, memory in GB (the backend appends 'G')."""
    return {"cpuRequest": resources.cpu_request, "memoryRequest": resources.memory_request_gb,
            "cpuLimit": resources.cpu_limit, "memoryLimit": resources.memory_limit_gb}


def _executors(spec: pipeline_spec_pb2.PipelineSpec):
    """The deployment spec's executors (a Struct inside PipelineSpec), editable in place."""
    return spec.deployment_spec["executors"]


def check_task_names(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    """Refuses task names the KFP backend would turn into invalid Argo names."""
    bad = [name for name in spec.root.dag.tasks
           if not ARGO_TASK_NAME.match(name) or not ARGO_TASK_NAME.match(name + ARGO_DRIVER_SUFFIX)]
    if bad:
        raise ValueError(
            f"Task names {bad} would become Argo DAG task names, which must match "
            f"{ARGO_TASK_NAME.pattern} (letters, digits, hyphens): rename the nodes "
            "(pipeline/node_ids.py)")
