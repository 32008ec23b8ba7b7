"""Compiles the pipeline for Kubeflow Pipelines (KFP v2 IR), optionally submits it.

Usage:
  python kubeflow_runner.py --image REGISTRY/rain-tomorrow:TAG \\
      --pipeline-root minio://mlpipeline/v2/artifacts [--output rain-tomorrow-pipeline.yaml]
  python kubeflow_runner.py ... --submit --endpoint http://KFP_HOST \\
      [--token-file F | --cookies 'authservice_session=...'] [--schedule '0 6 * * *']

`*.yaml` is the PipelineSpec `kfp.Client` and the KFP UI take, followed by the
Kubernetes platform spec mounting the data and serving volumes; `*.json` is
the PipelineJob Vertex AI Pipelines takes. Compiling needs no network, no
credentials and no cluster. The work is in `pipeline/kubeflow/`.

Exit codes: 0 compiled (and submitted), 1 submission failed, 2 bad flags.
"""
import argparse
import os
import posixpath
import sys
from typing import Callable, List, Optional

from components.spark_curation import cluster as spark_cluster
from components.spark_curation.inputs import (
    DEFAULT_MAX_QUARANTINE_SHARE, StationMappingError, pair_stations, share_flag)
from pipeline import node_ids
from pipeline.kubeflow import settings as kf
from pipeline.runner_settings import (AUTO, add_shared_flags, check_shared_flags,
                                      pipeline_config_from_flags)


def _resources(text: str) -> kf.Resources:
    try:
        return kf.Resources.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error))


def parse_flags(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parses and cross-checks the flags; exits with status 2 and a message if they clash."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_argument_group("image and locations (as the pipeline's pods see them)")
    group.add_argument("--image", required=True, help="image built from ./Dockerfile, REGISTRY/rain-tomorrow:TAG")
    group.add_argument("--pipeline-root", required=True, help="artifact root, e.g. minio://mlpipeline/v2/artifacts")
    group.add_argument("--data-root", default=kf.DEFAULT_DATA_ROOT, help="raw/, curated/ and quarantine/")
    group.add_argument("--serving-base", default=kf.DEFAULT_SERVING_BASE, help="where the pusher writes <model>/<version>/")
    group.add_argument("--server-model-base-path", default=None,
                       help=f"the model directory as TF Serving sees it (default {kf.SERVER_MODELS_DIR}/<model-name>)")
    group.add_argument("--schema-path", default=kf.IMAGE_SCHEMA_PATH, help="curated schema inside the image")
    group.add_argument("--data-volume-claim", default=None,
                       help=f"PVC mounted at --data-root (default {kf.DEFAULT_DATA_CLAIM}; '' = none)")
    group.add_argument("--serving-volume-claim", default=None,
                       help=f"PVC mounted at --serving-base, the one TF Serving mounts (default {kf.DEFAULT_SERVING_CLAIM})")
    group.add_argument("--artifact-io", choices=kf.ARTIFACT_IO_MODES, default=None,
                       help="launcher: local copies KFP's launcher manages (open-source KFP); direct: TFX "
                            "reads URIs itself (Vertex AI). Default: launcher for *.yaml, direct for *.json")
    group = parser.add_argument_group("data (defaults of the per-run parameters)")
    group.add_argument("--raw-data", default=None, help="raw CSV path/glob, comma-separated (default <data-root>/raw/*.csv)")
    group.add_argument("--station", default="", help="station id for CSVs without a station column; "
                       "comma-separated: one per --raw-data entry, paired in order")
    group.add_argument("--station-from-filename", action="store_true",
                       help="each file's station is its file name without the extension "
                            "(raw/KSEA.csv -> KSEA); excludes --station")
    group.add_argument("--max-quarantine-share", type=share_flag, default=DEFAULT_MAX_QUARANTINE_SHARE,
                       help="the curation task stops (nothing written) when more than this share of "
                            "the rows (0-1) is quarantined (default %(default)s; 1 = no ceiling)")
    group.add_argument("--spark-master", default="local[*]",
                       help="Spark inside the curation task's pod, or k8s://https://kubernetes.default.svc "
                            "for executor pods (see the --spark-k8s-* flags and deploy/spark-rbac)")
    group = parser.add_argument_group("task resources (CPU_REQUEST,MEMORY_REQUEST_GB,CPU_LIMIT,MEMORY_LIMIT_GB)")
    group.add_argument("--resources", type=_resources, default=kf.DEFAULT_RESOURCES, help="light tasks, default 0.5,1,2,4")
    group.add_argument("--heavy-resources", type=_resources, default=kf.DEFAULT_HEAVY_RESOURCES,
                       help=f"{', '.join(kf.HEAVY_TASKS)}; default 1,4,2,8")
    group.add_argument("--task-resources", action="append", default=[], metavar="TASK=C,M,C,M",
                       help="one task's resources, repeatable, e.g. Trainer=2,8,4,16")
    group = parser.add_argument_group("submission")
    group.add_argument("--output", default=kf.DEFAULT_OUTPUT, help="*.yaml (KFP) or *.json (Vertex AI)")
    group.add_argument("--submit", action="store_true", help="send the compiled pipeline to --endpoint")
    group.add_argument("--endpoint", default=None, help="KFP API endpoint, e.g. http://localhost:8080")
    group.add_argument("--namespace", default=None, help="KFP namespace (multi-user installs)")
    group.add_argument("--experiment", default=kf.DEFAULT_EXPERIMENT)
    group.add_argument("--run-name", default=None, help="default <pipeline-name>-<UTC timestamp>")
    group.add_argument("--schedule", default=None, help="cron: create a recurring run instead of one run")
    group.add_argument("--token-file", default=None, help="file holding a bearer token (kfp.Client existing_token)")
    group.add_argument("--cookies", default=None, help="Cookie header for an oauth2-proxy/Dex login")
    group.add_argument("--sa-token-path", default=None,
                       help="projected ServiceAccount token file, from inside the cluster")
    group.add_argument("--ssl-ca-cert", default=None, help="CA bundle of the endpoint's certificate")
    spark_cluster.add_spark_kubernetes_flags(parser)
    # Each pod runs Beam's DirectRunner on its own: worker processes use the pod's cores.
    add_shared_flags(parser, default_beam_workers=2)
    flags = parser.parse_args(argv)
    _check(parser, flags)
    return flags


def _check(parser: argparse.ArgumentParser, flags: argparse.Namespace) -> None:
    """Cross-flag rules; fills in the format-dependent defaults."""
    check_shared_flags(parser, flags)
    if flags.beam_workers == AUTO:
        parser.error("--beam-workers auto sizes the workers by the curated span on this machine "
                     "(local_runner.py); the compiled pipeline's data is on the cluster: give a "
                     "count (default 2, the pod's worker processes)")
    vertex = flags.output.endswith(".json")
    if flags.mlflow_tracking_uri is None:  # deploy/mlflow's server; Vertex AI has none: off
        flags.mlflow_tracking_uri = "none" if vertex else kf.default_mlflow_uri(flags.namespace)
    try:
        flags.schedule = kf.kfp_cron(flags.schedule) if flags.schedule is not None else None
        flags.task_resources = kf.task_resources(
            flags.resources, flags.heavy_resources,
            dict(_task_resources(item) for item in flags.task_resources))
    except ValueError as error:
        parser.error(str(error))
    try:  # the run parameter `station` may still change the pairing per run
        pair_stations([entry for entry in (flags.raw_data or "*").split(",") if entry.strip()],
                      [entry for entry in flags.station.split(",") if entry.strip()],
                      flags.station_from_filename)
    except StationMappingError as error:
        parser.error(str(error))
    if flags.span_window > 1:
        parser.error("--span-window > 1 needs a SpanRangeStrategy resolver, which TFX's KubeflowV2 "
                     "compiler does not support; Kubeflow runs train on the latest span")
    if flags.submit and not flags.endpoint:
        parser.error("--submit needs --endpoint (the KFP API, e.g. http://localhost:8080)")
    if flags.submit and vertex:
        parser.error("--submit sends a YAML PipelineSpec (kfp.Client does not take the JSON "
                     "PipelineJob, which is Vertex AI's format): use --output *.yaml")
    if flags.artifact_io is None:
        flags.artifact_io = "direct" if vertex else "launcher"
    locations = (("--data-root", flags.data_root), ("--serving-base", flags.serving_base))
    if vertex:  # Vertex AI mounts no volumes; Cloud Storage is gs:// and, through FUSE, /gcs/.
        if flags.data_volume_claim or flags.serving_volume_claim:
            parser.error("Vertex AI (the *.json output) mounts no volumes: drop --data-volume-claim/"
                         "--serving-volume-claim and use gs:// or /gcs/ paths")
        for path_flag, path in locations:
            if not path.startswith(kf.VERTEX_STORAGE_PREFIXES):
                parser.error(f"{path_flag} {path} does not exist on Vertex AI (no volumes there): "
                             "give a Cloud Storage path, gs://BUCKET/... or /gcs/BUCKET/...")
        flags.data_volume_claim = flags.serving_volume_claim = ""
        return
    flags.data_volume_claim = kf.DEFAULT_DATA_CLAIM if flags.data_volume_claim is None else flags.data_volume_claim
    flags.serving_volume_claim = (kf.DEFAULT_SERVING_CLAIM if flags.serving_volume_claim is None
                                  else flags.serving_volume_claim)
    claims = (("--data-volume-claim", flags.data_volume_claim), ("--serving-volume-claim", flags.serving_volume_claim))
    for (claim_flag, claim), (path_flag, path) in zip(claims, locations):
        if not claim and not kf.is_uri(path):
            parser.error(f"{path_flag} {path} is a file system path but {claim_flag} is '': without a "
                         "volume it would be the pod's ephemeral disk, gone when the task ends; name a "
                         "PersistentVolumeClaim or give an object-store URI")


def _task_resources(item: str):
    name, _, values = item.partition("=")
    return name, kf.Resources.parse(values)


def settings_from_flags(flags: argparse.Namespace) -> kf.KubeflowSettings:
    """Resolves in-cluster defaults and builds the typed settings."""
    from components.data_validation import drift
    from components.spark_curation.job import CURATED_DIR

    tfjob = None
    if flags.train_workers > 1:
        if not flags.data_volume_claim:
            raise ValueError("--train-workers > 1 runs the Trainer as a TFJob whose pods read the staged "
                             "data from the data volume: give --data-volume-claim (not Vertex AI)")
        trainer = flags.task_resources[node_ids.TRAINER]
        tfjob = {"namespace": flags.namespace or "kubeflow", "image": flags.image,
                 "data_root": flags.data_root, "data_claim": flags.data_volume_claim,
                 "resources": [trainer.cpu_request, trainer.memory_request_gb,
                               trainer.cpu_limit, trainer.memory_limit_gb]}
    config = pipeline_config_from_flags(
        flags, pipeline_root=flags.pipeline_root, tfjob=tfjob,
        curated_root=posixpath.join(flags.data_root, CURATED_DIR),
        # The drift gate's statistics history, on the data volume (or object store).
        drift_history_root=drift.history_root_for(flags.data_root),
        schema_path=flags.schema_path, serving_base=flags.serving_base,
        server_model_base_path=(flags.server_model_base_path
                                or posixpath.join(kf.SERVER_MODELS_DIR, flags.model_name)))
    submission = None
    if flags.submit:
        token = None
        if flags.token_file:
            with open(flags.token_file) as f:
                token = f.read().strip()
        submission = kf.Submission(
            endpoint=flags.endpoint, namespace=flags.namespace, experiment=flags.experiment,
            run_name=flags.run_name or kf.default_run_name(config.pipeline_name), schedule=flags.schedule,
            auth=kf.ClientAuth(existing_token=token, cookies=flags.cookies,
                               service_account_token_path=flags.sa_token_path, ssl_ca_cert=flags.ssl_ca_cert))
    return kf.KubeflowSettings(
        image=flags.image, output=os.path.abspath(flags.output), data_root=flags.data_root,
        spark_master=flags.spark_master, pipeline=config,
        spark_conf=spark_cluster.spark_conf_json(spark_cluster.kubernetes_settings_from_flags(
            flags, flags.spark_master, image=flags.image, namespace=flags.namespace,
            data_volume_claim=flags.data_volume_claim, data_mount_path=flags.data_root)),
        raw_data=flags.raw_data or kf.default_raw_data(flags.data_root), station=flags.station,
        station_from_filename=flags.station_from_filename,
        max_quarantine_share=flags.max_quarantine_share,
        submission=submission, artifact_io=flags.artifact_io,
        volume_mounts=kf.volume_mounts(flags.data_volume_claim, flags.data_root,
                                       flags.serving_volume_claim, flags.serving_base,
                                       train_workers=flags.train_workers),
        resources=flags.task_resources)


def main(argv: Optional[List[str]] = None, client_factory: Optional[Callable[..., object]] = None) -> int:
    """Compiles, then submits with `--submit`; `client_factory` stands in for kfp.Client."""
    from pipeline.kubeflow.compile import compile_pipeline
    from pipeline.kubeflow.submit import submit

    flags = parse_flags(argv)
    try:
        settings = settings_from_flags(flags)
    except (ValueError, OSError) as error:
        print(f"kubeflow_runner.py: error: {error}", file=sys.stderr)
        return 2
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
