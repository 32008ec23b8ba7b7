"""Typed settings of the Kubeflow compile and submission, resolved from flags."""
import dataclasses
import datetime
import posixpath
from typing import Dict, List, Optional, Tuple

from pipeline import node_ids
from pipeline.config import PipelineConfig

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
# deploy/mlflow's tracking server (Service rain-tomorrow-mlflow, port 5000).
MLFLOW_SERVICE = "rain-tomorrow-mlflow"
MLFLOW_PORT = 5000
ARTIFACT_IO_MODES = ("launcher", "direct")
VERTEX_STORAGE_PREFIXES = ("gs://", "/gcs/")
# Which tasks read or write which volume.
# The DriftValidator keeps its statistics history on the data volume.
DATA_TASKS = (node_ids.SPARK_CURATION, node_ids.EXAMPLE_GEN, node_ids.DRIFT_VALIDATOR)
SERVING_TASKS = (node_ids.BASELINE_MODEL, node_ids.PUSHER)


@dataclasses.dataclass(frozen=True)
class Resources:
    """A task's Kubernetes requests and limits (CPU cores, memory in GB)."""

    cpu_request: float
    memory_request_gb: float
    cpu_limit: float
    memory_limit_gb: float

    @classmethod
    def parse(cls, text: str) -> "Resources":
        """'CPU_REQUEST,MEMORY_REQUEST_GB,CPU_LIMIT,MEMORY_LIMIT_GB', e.g. '1,4,2,8'."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or min(values) <= 0:
            raise ValueError(f"'{text}': give four positive numbers, "
                             "CPU_REQUEST,MEMORY_REQUEST_GB,CPU_LIMIT,MEMORY_LIMIT_GB (e.g. 1,4,2,8)")
        resources = cls(*values)
        if resources.cpu_limit < resources.cpu_request or resources.memory_limit_gb < resources.memory_request_gb:
            raise ValueError(f"'{text}': a limit is below its request")
        return resources


# Every task by default; the tasks that hold a whole split in memory or run
# Spark get more. Sized for the bundled data and about a million rows.
DEFAULT_RESOURCES = Resources(cpu_request=0.5, memory_request_gb=1, cpu_limit=2, memory_limit_gb=4)
DEFAULT_HEAVY_RESOURCES = Resources(cpu_request=1, memory_request_gb=4, cpu_limit=2, memory_limit_gb=8)
HEAVY_TASKS = (node_ids.SPARK_CURATION, node_ids.EXAMPLE_GEN, node_ids.STATISTICS_GEN,
               node_ids.TRANSFORM, node_ids.TUNER, node_ids.TRAINER, node_ids.EVALUATOR)


@dataclasses.dataclass(frozen=True)
class RunParameter:
    """A pipeline parameter a KFP run may override; its default comes from flags."""

    name: str
    default: str
    description: str


@dataclasses.dataclass(frozen=True)
class ClientAuth:
    """How `kfp.Client` authenticates (multi-user Kubeflow behind Dex/oauth2-proxy).

    Attributes:
      existing_token: a bearer token (e.g. from `kubectl create token`).
      cookies: a Cookie header value, e.g. 'authservice_session=...'
        (copied from a logged-in browser session).
      service_account_token_path: in-cluster: the projected ServiceAccount
        token file KFP accepts (kfp.client.ServiceAccountTokenVolumeCredentials).
      ssl_ca_cert: CA bundle for an endpoint with a private certificate.
    """

    existing_token: Optional[str] = None
    cookies: Optional[str] = None
    service_account_token_path: Optional[str] = None
    ssl_ca_cert: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Submission:
    """Where and how `--submit` sends the compiled pipeline."""

    endpoint: str
    namespace: Optional[str]
    experiment: str
    run_name: str
    schedule: Optional[str]  # 6-field KFP cron; None for a single run
    auth: ClientAuth = ClientAuth()


@dataclasses.dataclass(frozen=True)
class KubeflowSettings:
    """Everything the Kubeflow compile needs."""

    image: str
    output: str
    data_root: str
    spark_master: str
    pipeline: PipelineConfig
    raw_data: str  # default of the `raw_data` run parameter
    station: str  # default of the `station` run parameter
    submission: Optional[Submission]
    artifact_io: str = "launcher"
    # Spark conf for the curation task as JSON ('' = none): executors on
    # Kubernetes (components/spark_curation/cluster.py).
    spark_conf: str = ""
    # {task: [(claim, mount path)]}: the KFP Kubernetes platform spec's PVC mounts.
    volume_mounts: Dict[str, List[Tuple[str, str]]] = dataclasses.field(default_factory=dict)
    # {task: resources}; every task of the pipeline has an entry.
    resources: Dict[str, Resources] = dataclasses.field(default_factory=dict)
    # The curation task's station-from-file-name mode and quarantine ceiling
    # (as local_runner.py's --station-from-filename / --max-quarantine-share).
    station_from_filename: bool = False
    max_quarantine_share: float = 0.05

    @property
    def parameters(self) -> List[RunParameter]:
        """The pipeline's run parameters, in the order the KFP UI lists them."""
        training = self.pipeline.training
        return [
            RunParameter("raw_data", self.raw_data,
                         "raw CSV path or glob the Spark task curates; comma-separated for several"),
            RunParameter("station", self.station,
                         "station id for CSVs without a station column ('' = none)"),
            RunParameter("train_args", f'{{"num_steps": {training.train_steps}}}',
                         'Trainer train_args as proto JSON, e.g. {"num_steps": 200}'),
            RunParameter("eval_args", f'{{"num_steps": {training.eval_steps}}}',
                         'Trainer eval_args as proto JSON, e.g. {"num_steps": 50}'),
            RunParameter("mlflow_tracking_uri", self.pipeline.mlflow_tracking_uri,
                         "MLflow tracking URI the pusher logs to and registers versions in "
                         "('' = no tracking)"),
        ]


def default_mlflow_uri(namespace: Optional[str]) -> str:
    """The in-cluster URL of deploy/mlflow's server, in the pipeline's namespace."""
    return f"http://{MLFLOW_SERVICE}.{namespace or 'kubeflow'}.svc.cluster.local:{MLFLOW_PORT}"


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


def volume_mounts(data_claim: str, data_root: str, serving_claim: str,
                  serving_base: str, train_workers: int = 1) -> Dict[str, List[Tuple[str, str]]]:
    """{task: [(claim, mount path)]} for the claims given (empty claim: no mount).

    With train_workers > 1 the Trainer mounts the data claim too: it stages its
    inputs there for the TFJob's pods and collects the chief's export.
    """
    mounts: Dict[str, List[Tuple[str, str]]] = {}
    data_tasks = DATA_TASKS + ((node_ids.TRAINER,) if train_workers > 1 else ())
    for claim, path, tasks in ((data_claim, data_root, data_tasks),
                               (serving_claim, serving_base, SERVING_TASKS)):
        if claim and not is_uri(path):
            for task in tasks:
                mounts.setdefault(task, []).append((claim, path))
    return mounts


def task_resources(default: Resources, heavy: Resources,
                   overrides: Dict[str, Resources]) -> Dict[str, Resources]:
    """Resources for every task: the default, the heavy default, then overrides."""
    tasks = [value for name, value in vars(node_ids).items()
             if name.isupper() and value != node_ids.SPAN_WINDOW]
    unknown = sorted(set(overrides) - set(tasks))
    if unknown:
        raise ValueError(f"--task-resources names unknown tasks {unknown}; tasks are {sorted(tasks)}")
    resources = {task: heavy if task in HEAVY_TASKS else default for task in tasks}
    resources.update(overrides)
    return resources


def default_run_name(pipeline_name: str) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{pipeline_name}-{stamp}"


def default_raw_data(data_root: str) -> str:
    return posixpath.join(data_root, RAW_DIR, "*.csv")


def is_uri(path: str) -> bool:
    return "://" in path
