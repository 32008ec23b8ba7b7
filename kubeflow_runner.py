"""Compiles the pipeline for Kubeflow Pipelines (KFP v2 IR), optionally submits it.

Usage:
  python kubeflow_runner.py --image REGISTRY/rain-tomorrow:TAG \\
      --pipeline-root minio://mlpipeline/v2/artifacts [--output rain-tomorrow-pipeline.yaml]
  python kubeflow_runner.py ... --submit --endpoint http://KFP_HOST \\
      [--experiment rain-tomorrow] [--schedule '0 6 * * *']

The compiled pipeline is the local one (`pipeline.pipeline.create_pipeline`)
with a first task that curates the raw CSVs with Spark (local mode, inside the
image); ExampleGen runs after it. Every path is an in-cluster path or URI taken
from the flags, user code is referenced by module path, so compiling needs no
network, no credentials and no cluster. `--output *.yaml` writes the
PipelineSpec that `kfp.Client` and the KFP UI take, followed by the
Kubernetes platform spec that mounts the data and serving volumes; every
task runs `pipeline.kfp_entrypoint` (TFX's entrypoint on the local artifact
copies KFP's launcher manages). `*.json` writes the PipelineJob that Vertex
AI Pipelines takes (TFX's entrypoint, Cloud Storage paths, no volumes).

Per-run parameters (editable in the KFP UI, defaults from the flags below):
`raw_data`, `station`, `train_args`, `eval_args`.

Exit codes: 0 compiled (and submitted), 1 submission failed, 2 bad flags.
"""
import argparse
import dataclasses
import datetime
import json
import os
import posixpath
import sys
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from pipeline.config import PipelineConfig
from pipeline.runner_settings import add_shared_flags, pipeline_config_from_flags

if TYPE_CHECKING:  # TFX is imported where it is used: --help and flag errors stay fast
    from tfx import v1 as tfx

IMAGE_SCHEMA_PATH = "/app/schema/schema.pbtxt"
DEFAULT_DATA_ROOT = "/mnt/data"
DEFAULT_SERVING_BASE = "/mnt/models"
# Where the TF Serving Deployment (deploy/) mounts the serving volume.
SERVER_MODELS_DIR = "/models"
DEFAULT_OUTPUT = "rain-tomorrow-pipeline.yaml"
DEFAULT_EXPERIMENT = "rain-tomorrow"
RAW_DIR = "raw"
# deploy/pipeline-data and deploy/base create these claims.
DEFAULT_DATA_CLAIM = "rain-tomorrow-data"
DEFAULT_SERVING_CLAIM = "rain-tomorrow-models"
ARTIFACT_IO_MODES = ("launcher", "direct")
VERTEX_STORAGE_PREFIXES = ("gs://", "/gcs/")
LAUNCHER_ENTRYPOINT = ["python", "-m", "pipeline.kfp_entrypoint"]
CURATION_TASK = "SparkCuration"
EXAMPLE_GEN_TASK = "FileBasedExampleGen"
# Which tasks read or write which volume.
DATA_TASKS = (CURATION_TASK, EXAMPLE_GEN_TASK)
SERVING_TASKS = ("baseline_model", "pusher")


@dataclasses.dataclass(frozen=True)
class RunParameter:
    """A pipeline parameter a KFP run may override; its default comes from flags."""

    name: str
    default: str
    description: str


@dataclasses.dataclass(frozen=True)
class Submission:
    """Where and how `--submit` sends the compiled pipeline."""

    endpoint: str
    namespace: Optional[str]
    experiment: str
    run_name: str
    schedule: Optional[str]  # 6-field KFP cron; None for a single run


@dataclasses.dataclass(frozen=True)
class KubeflowSettings:
    """Everything the Kubeflow runner needs, resolved from the flags."""

    image: str
    output: str
    data_root: str
    spark_master: str
    pipeline: PipelineConfig
    raw_data: str  # default of the `raw_data` run parameter
    station: str  # default of the `station` run parameter
    submission: Optional[Submission]
    artifact_io: str = "launcher"
    # {task: [(claim, mount path)]}: the KFP Kubernetes platform spec's PVC mounts.
    volume_mounts: Dict[str, List[Tuple[str, str]]] = dataclasses.field(default_factory=dict)


def parse_flags(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parses and cross-checks the flags; exits with status 2 and a message if they clash."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_argument_group("image and locations (as the pipeline's pods see them)")
    group.add_argument("--image", required=True,
                       help="container image built from ./Dockerfile, e.g. REGISTRY/rain-tomorrow:TAG")
    group.add_argument("--pipeline-root", required=True,
                       help="artifact root every task can write, e.g. gs://BUCKET/pipelines")
    group.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                       help="holds raw/ and the curated/ and quarantine/ spans Spark writes")
    group.add_argument("--serving-base", default=DEFAULT_SERVING_BASE,
                       help="TF Serving base directory the pusher writes <model>/<version>/ to")
    group.add_argument("--server-model-base-path", default=None,
                       help=f"the model directory as TF Serving sees it (default {SERVER_MODELS_DIR}/<model-name>)")
    group.add_argument("--schema-path", default=IMAGE_SCHEMA_PATH,
                       help="curated schema inside the image")
    group.add_argument("--data-volume-claim", default=None,
                       help="PersistentVolumeClaim mounted at --data-root in the Spark and "
                            f"ExampleGen tasks (default {DEFAULT_DATA_CLAIM}, from "
                            "deploy/pipeline-data; '' = none)")
    group.add_argument("--serving-volume-claim", default=None,
                       help="PersistentVolumeClaim mounted at --serving-base in the baseline and "
                            f"pusher tasks (default {DEFAULT_SERVING_CLAIM}, the claim deploy/ "
                            "mounts into TF Serving; '' = none)")
    group.add_argument("--artifact-io", choices=ARTIFACT_IO_MODES, default=None,
                       help="'launcher': tasks work on the local copies KFP's launcher downloads "
                            "and uploads (open-source KFP, any object store, minio:// included); "
                            "'direct': TFX reads and writes artifact URIs itself (Vertex AI, gs://). "
                            "Default: launcher for *.yaml, direct for *.json")
    group = parser.add_argument_group("data (defaults of the per-run parameters)")
    group.add_argument("--raw-data", default=None,
                       help=f"raw CSV path/glob, comma-separated for several (default <data-root>/{RAW_DIR}/*.csv)")
    group.add_argument("--station", default="",
                       help="station id for CSVs without a station column")
    group.add_argument("--spark-master", default="local[*]")
    group = parser.add_argument_group("output and submission")
    group.add_argument("--output", default=DEFAULT_OUTPUT,
                       help="compiled pipeline: *.yaml (KFP PipelineSpec) or *.json (Vertex AI PipelineJob)")
    group.add_argument("--submit", action="store_true", help="send the compiled pipeline to --endpoint")
    group.add_argument("--endpoint", default=None, help="KFP API endpoint, e.g. http://localhost:8080")
    group.add_argument("--namespace", default=None, help="KFP namespace (multi-user installs)")
    group.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    group.add_argument("--run-name", default=None, help="default <pipeline-name>-<UTC timestamp>")
    group.add_argument("--schedule", default=None,
                       help="cron ('m h dom mon dow', or KFP's 6 fields with seconds first): "
                            "create a recurring run instead of a single run")
    # Each pod runs Beam's DirectRunner on its own: worker processes use the
    # pod's cores, which pays off on cluster-sized data.
    add_shared_flags(parser, default_beam_workers=2)
    flags = parser.parse_args(argv)

    if flags.span_window > 1:
        parser.error("--span-window > 1 needs a SpanRangeStrategy resolver, which TFX's "
                     "KubeflowV2 compiler does not support (only LatestArtifactStrategy and "
                     "LatestBlessedModelStrategy); Kubeflow runs train on the latest span")
    if flags.submit and not flags.endpoint:
        parser.error("--submit needs --endpoint (the KFP API, e.g. http://localhost:8080)")
    if flags.submit and not flags.output.endswith((".yaml", ".yml")):
        parser.error("--submit sends a YAML PipelineSpec (kfp.Client does not take the JSON "
                     "PipelineJob, which is Vertex AI's format): use --output *.yaml")
    if flags.artifact_io is None:
        flags.artifact_io = "direct" if flags.output.endswith(".json") else "launcher"
    if flags.output.endswith(".json"):
        # Vertex AI Pipelines mounts no volumes; Cloud Storage is reachable as
        # gs:// and, through Cloud Storage FUSE, as /gcs/.
        if flags.data_volume_claim or flags.serving_volume_claim:
            parser.error("Vertex AI (the *.json output) mounts no volumes: drop "
                         "--data-volume-claim/--serving-volume-claim and use gs:// or /gcs/ paths")
        for flag, path in (("--data-root", flags.data_root), ("--serving-base", flags.serving_base)):
            if not path.startswith(VERTEX_STORAGE_PREFIXES):
                parser.error(f"{flag} {path} does not exist on Vertex AI (no volumes there): "
                             "give a Cloud Storage path, gs://BUCKET/... or /gcs/BUCKET/...")
        flags.data_volume_claim = flags.serving_volume_claim = ""
    else:
        if flags.data_volume_claim is None:
            flags.data_volume_claim = DEFAULT_DATA_CLAIM
        if flags.serving_volume_claim is None:
            flags.serving_volume_claim = DEFAULT_SERVING_CLAIM
    if flags.schedule is not None:
        try:
            flags.schedule = kfp_cron(flags.schedule)
        except ValueError as error:
            parser.error(str(error))
    return flags


def kfp_cron(expression: str) -> str:
    """KFP's 6-field cron (seconds first) for a 5- or 6-field expression.

    KFP schedules with seconds as the first field, so the usual
    '0 6 * * *' (daily at 06:00) would mean "minute 6 of every hour" there;
    5-field expressions get '0' seconds prepended.
    """
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0"] + fields)
    if len(fields) == 6:
        return " ".join(fields)
    raise ValueError(
        f"--schedule '{expression}' has {len(fields)} fields; give a cron expression of 5 "
        "(minute hour day-of-month month day-of-week) or 6 (seconds first, KFP's format) fields")


def settings_from_flags(flags: argparse.Namespace) -> KubeflowSettings:
    """Resolves in-cluster defaults and builds the typed settings."""
    from components.spark_curation.job import CURATED_DIR

    config = pipeline_config_from_flags(
        flags,
        pipeline_root=flags.pipeline_root,
        curated_root=posixpath.join(flags.data_root, CURATED_DIR),
        schema_path=flags.schema_path,
        serving_base=flags.serving_base,
        server_model_base_path=(flags.server_model_base_path
                                or posixpath.join(SERVER_MODELS_DIR, flags.model_name)),
    )
    submission = None
    if flags.submit:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        submission = Submission(
            endpoint=flags.endpoint,
            namespace=flags.namespace,
            experiment=flags.experiment,
            run_name=flags.run_name or f"{config.pipeline_name}-{stamp}",
            schedule=flags.schedule,
        )
    volume_mounts: Dict[str, List[Tuple[str, str]]] = {}
    for claim, path, tasks in ((flags.data_volume_claim, flags.data_root, DATA_TASKS),
                               (flags.serving_volume_claim, flags.serving_base, SERVING_TASKS)):
        if claim and not _is_uri(path):
            for task in tasks:
                volume_mounts.setdefault(task, []).append((claim, path))
    return KubeflowSettings(
        image=flags.image,
        output=os.path.abspath(flags.output),
        data_root=flags.data_root,
        spark_master=flags.spark_master,
        pipeline=config,
        raw_data=flags.raw_data or posixpath.join(flags.data_root, RAW_DIR, "*.csv"),
        station=flags.station,
        submission=submission,
        artifact_io=flags.artifact_io,
        volume_mounts=volume_mounts,
    )


def _is_uri(path: str) -> bool:
    return "://" in path


def build_pipeline(settings: KubeflowSettings) -> Tuple["tfx.dsl.Pipeline", List[RunParameter]]:
    """The shared pipeline, led by the Spark curation task, and its run parameters."""
    from tfx import v1 as tfx

    from components.spark_curation.component import SparkCuration
    from pipeline.pipeline import create_pipeline

    parameters = [
        RunParameter("raw_data", settings.raw_data,
                     "raw CSV path or glob the Spark task curates; comma-separated for several"),
        RunParameter("station", settings.station,
                     "station id for CSVs without a station column ('' = none)"),
    ]
    curation = SparkCuration(
        raw_data=_runtime_parameter(parameters[0]),
        output_dir=settings.data_root,
        station=_runtime_parameter(parameters[1]),
        spark_master=settings.spark_master,
    )
    pipeline = create_pipeline(settings.pipeline, data_preparation=curation)
    # The factory builds the Trainer's TrainArgs/EvalArgs from the configured
    # steps (stored as proto JSON); a KFP run may replace that JSON, which is
    # TFX's form of a proto runtime parameter. The default is the factory's
    # own JSON, so a run that keeps it trains exactly as configured. TFX's
    # runners edit `exec_properties` the same way (the Airflow runner's
    # templated fields).
    trainer = _single(pipeline, tfx.components.Trainer)
    for key, example in (("train_args", 200), ("eval_args", 50)):
        compiled_json = json.dumps(json.loads(trainer.exec_properties[key]))
        parameter = RunParameter(key, compiled_json,
                                 f"Trainer {key} as proto JSON, e.g. {{\"num_steps\": {example}}}")
        trainer.exec_properties[key] = _runtime_parameter(parameter)
        parameters.append(parameter)
    return pipeline, parameters


def _runtime_parameter(parameter: RunParameter):
    from tfx import v1 as tfx

    return tfx.dsl.experimental.RuntimeParameter(
        name=parameter.name, ptype=str, default=parameter.default,
        description=parameter.description)


def _single(pipeline, component_type):
    nodes = [node for node in pipeline.components if isinstance(node, component_type)]
    if len(nodes) != 1:
        raise ValueError(f"Expected one {component_type.__name__} in the pipeline, found {len(nodes)}.")
    return nodes[0]


def compile_pipeline(settings: KubeflowSettings) -> str:
    """Compiles to `settings.output` (YAML PipelineSpec or JSON PipelineJob).

    Returns:
      The path written.
    """
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
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
    pipeline, parameters = build_pipeline(settings)
    # The runner returns the PipelineJob; it is written below, once
    # `_finish_spec` has added what TFX leaves out.
    job = runner.run(
        pipeline,
        parameter_values={p.name: p.default for p in parameters},
        write_out=False,
    )
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    _finish_spec(spec, parameters, settings.pipeline.pipeline_root,
                 uncached_tasks=uncached_tasks(settings.artifact_io),
                 launcher_io=settings.artifact_io == "launcher")
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


def uncached_tasks(artifact_io: str) -> List[str]:
    """Tasks whose cache key cannot see new data, so they must always run.

    KFP computes a task's cache key from its parameters and input artifacts
    before it starts. The Spark task's glob may match new files while its
    parameters stay equal (the job itself skips raw data it has curated).
    ExampleGen's parameters hold the pattern `span-{SPAN}/*.parquet`; only
    where TFX's driver hook runs first (Vertex AI, `direct`) does its key
    include the resolved span and the data's fingerprint. Without the hook
    (the open-source backend), a cached ExampleGen would never see a new span.
    """
    return [CURATION_TASK, EXAMPLE_GEN_TASK] if artifact_io == "launcher" else [CURATION_TASK]


def platform_spec(spec, volume_mounts: Dict[str, List[Tuple[str, str]]]) -> dict:
    """KFP's Kubernetes platform spec: PVC mounts per task, keyed by executor label.

    The second YAML document of a compiled package, as kfp-kubernetes writes
    it; `kfp.Client` uploads both documents and the backend's driver adds the
    volumes to the task's pod. TFX's compiler has no way to express volumes.
    """
    from google.protobuf import json_format
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s

    executors = {}
    for task, mounts in volume_mounts.items():
        label = spec.components[spec.root.dag.tasks[task].component_ref.name].executor_label
        config = k8s.KubernetesExecutorConfig(pvc_mount=[
            k8s.PvcMount(constant=claim, mount_path=path) for claim, path in mounts])
        executors[label] = json_format.MessageToDict(config)
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def _finish_spec(spec, parameters: Sequence[RunParameter], pipeline_root: str,
                 uncached_tasks: Sequence[str], launcher_io: bool) -> None:
    """What TFX's compiler leaves out of the PipelineSpec.

    * Parameter defaults: TFX puts them only in a PipelineJob's runtimeConfig,
      which a YAML PipelineSpec does not have; the KFP UI pre-fills a run's
      parameters from `defaultValue`.
    * The pipeline root, for the same reason (`defaultPipelineRoot`).
    * No caching for tasks whose inputs are not all in their parameters: the
      Spark task's glob may match new files while its parameters stay equal
      (the job itself skips raw data it has curated before).
    * With `launcher_io`, every task runs `pipeline.kfp_entrypoint`, TFX's
      entrypoint on the local copies of artifacts that KFP's launcher
      downloads and uploads (TFX's own reads URIs directly, which only works
      where TensorFlow speaks the object store's scheme).
    """
    spec.default_pipeline_root = pipeline_root
    for parameter in parameters:
        definition = spec.root.input_definitions.parameters[parameter.name]
        definition.default_value.string_value = parameter.default
        definition.is_optional = True
        definition.description = parameter.description
    for task in uncached_tasks:
        spec.root.dag.tasks[task].caching_options.enable_cache = False
    if launcher_io:
        executors = spec.deployment_spec["executors"]
        for label in executors.keys():
            container = executors[label]["container"]
            del container["command"][:]
            container["command"].extend(LAUNCHER_ENTRYPOINT)


def submit(
    submission: Submission,
    package_path: str,
    pipeline_root: str,
    client_factory: Callable[..., object],
) -> int:
    """Creates a run (or a recurring run) of the compiled package; returns the exit code."""
    client_args = {"host": submission.endpoint}
    if submission.namespace:
        client_args["namespace"] = submission.namespace
    try:
        client = client_factory(**client_args)
        experiment = client.create_experiment(
            name=submission.experiment, namespace=submission.namespace)
        if submission.schedule:
            client.create_recurring_run(
                experiment_id=experiment.experiment_id,
                job_name=submission.run_name,
                cron_expression=submission.schedule,
                pipeline_package_path=package_path,
                pipeline_root=pipeline_root,
            )
            what = f"recurring run '{submission.run_name}' ({submission.schedule})"
        else:
            client.create_run_from_pipeline_package(
                package_path,
                run_name=submission.run_name,
                experiment_id=experiment.experiment_id,
                namespace=submission.namespace,
                pipeline_root=pipeline_root,
            )
            what = f"run '{submission.run_name}'"
    except Exception as error:  # any client/transport/auth error: report it, signal by exit code
        print(f"Submitting {package_path} to the KFP endpoint {submission.endpoint} failed: "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"Submitted {what} to {submission.endpoint}, experiment '{submission.experiment}'.")
    return 0


def main(argv: Optional[List[str]] = None, client_factory: Optional[Callable[..., object]] = None) -> int:
    """Compiles, then submits with `--submit`; `client_factory` stands in for kfp.Client."""
    settings = settings_from_flags(parse_flags(argv))
    path = compile_pipeline(settings)
    print(f"Compiled {settings.pipeline.pipeline_name} for image {settings.image}: {path}")
    if settings.submission is None:
        return 0
    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    return submit(settings.submission, path, settings.pipeline.pipeline_root, client_factory)


if __name__ == "__main__":
    sys.exit(main())
