"""Spark beyond local mode: settings for executors on Kubernetes, and run-time conf.

The pipeline's SparkCuration task runs the Spark driver inside its own pod
(client mode); with `--spark-master k8s://https://kubernetes.default.svc` the
driver asks the API server for executor pods built from the same image. What
Spark needs for that is a handful of conf entries (keys as in Spark 3.5's
"Running on Kubernetes" page):

* executor image, namespace, service account, count, cores and memory;
* a driver address the executors can reach: the pod's IP (`spark.driver.host`),
  fixed driver and block-manager ports, bound on all interfaces;
* the data volume (the PersistentVolumeClaim mounted at `--data-root` in the
  task) mounted at the same path in every executor, so paths mean the same;
* an executor pod template whose container command starts the executor JVM
  (`python -m components.spark_curation.k8s_executor`): the pipeline image has
  no Spark entrypoint, and Spark only appends the argument `executor`.

`kubernetes_spark_conf(settings)` is pure: it returns those entries, to be
compiled into the task's `spark_conf` parameter (JSON). Three things are only
known inside the running pod, so their values are placeholders that
`resolve_conf` fills in at run time, just before the session starts:

  `${env:NAME}`               the environment variable NAME (Spark's own syntax);
  `${hostname-ip}`            the address the pod's hostname resolves to -- in a
                              Kubernetes pod, the kubelet maps it to the pod IP
                              in /etc/hosts (no downward API needed);
  `${executor-pod-template}`  a file written with `executor_pod_template()`.
"""
import argparse
import dataclasses
import json
import os
import re
import socket
import tempfile
from typing import Callable, Dict, Mapping, Optional

import yaml

KUBERNETES_MASTER_PREFIX = "k8s://"
IN_CLUSTER_MASTER = "k8s://https://kubernetes.default.svc"
# deploy/spark-rbac creates this ServiceAccount (and the Role it is bound to).
DEFAULT_SERVICE_ACCOUNT = "rain-tomorrow-spark"
DEFAULT_DRIVER_PORT = 7078
DEFAULT_BLOCK_MANAGER_PORT = 7079
DATA_VOLUME_NAME = "data"
EXECUTOR_CONTAINER_NAME = "spark-executor"
EXECUTOR_COMMAND = ("python", "-m", "components.spark_curation.k8s_executor")

HOSTNAME_IP = "${hostname-ip}"
EXECUTOR_POD_TEMPLATE = "${executor-pod-template}"
_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def env_reference(name: str) -> str:
    """`${env:NAME}`: a conf value taken from the pod's environment at run time."""
    return "${env:" + name + "}"


def is_kubernetes_master(master: Optional[str]) -> bool:
    return bool(master) and master.startswith(KUBERNETES_MASTER_PREFIX)


@dataclasses.dataclass(frozen=True)
class KubernetesExecutors:
    """How the curation task's driver gets executor pods from Kubernetes.

    Attributes:
      image: executor container image (the pipeline's image: same Python,
        pyspark and code as the driver).
      namespace: where executor pods are created (the pipeline's namespace).
      service_account: ServiceAccount of the executor pods; the driver's pod
        must run as an account the Role in deploy/spark-rbac is bound to.
      executor_instances, executor_cores, executor_memory: executor pods, CPU
        cores each (also the pod's CPU request) and JVM heap (Spark format, "2g").
      data_volume_claim: PersistentVolumeClaim holding the raw data and spans;
        None mounts nothing (data on an object store).
      data_mount_path: where the claim is mounted: the task's `--data-root`.
      driver_host: the executors' address of the driver: `${hostname-ip}` (the
        pod IP through the pod's /etc/hosts) or `${env:POD_IP}` (a downward-API
        variable, `fieldRef: status.podIP`, where the pod spec can set one).
      driver_pod_name: None, or a value (e.g. `${env:POD_NAME}`) naming the
        driver's pod, which makes it the owner of the executor pods: they are
        garbage-collected with it. Needs `get` on pods (the Role has it).
      driver_port, block_manager_port: fixed ports the executors connect to.
    """

    image: str
    namespace: str = "kubeflow"
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    executor_instances: int = 2
    executor_cores: int = 1
    executor_memory: str = "2g"
    data_volume_claim: Optional[str] = None
    data_mount_path: str = "/mnt/data"
    driver_host: str = HOSTNAME_IP
    driver_pod_name: Optional[str] = None
    driver_port: int = DEFAULT_DRIVER_PORT
    block_manager_port: int = DEFAULT_BLOCK_MANAGER_PORT

    def __post_init__(self):
        if not self.image:
            raise ValueError("Kubernetes executors need an image.")
        for name in ("executor_instances", "executor_cores", "driver_port", "block_manager_port"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.driver_port == self.block_manager_port:
            raise ValueError("driver_port and block_manager_port must differ.")
        if not re.fullmatch(r"[0-9]+[kmgtKMGT]?", self.executor_memory):
            raise ValueError(f"executor_memory must look like 512m or 2g, got {self.executor_memory!r}.")
        if self.data_volume_claim and not self.data_mount_path.startswith("/"):
            raise ValueError(f"data_mount_path must be absolute, got {self.data_mount_path!r}.")


def kubernetes_spark_conf(settings: KubernetesExecutors) -> Dict[str, str]:
    """The Spark conf entries for client-mode executors on Kubernetes (pure).

    Values are strings; placeholders (see the module doc) stay unresolved.
    """
    conf = {
        "spark.submit.deployMode": "client",
        "spark.kubernetes.container.image": settings.image,
        "spark.kubernetes.namespace": settings.namespace,
        "spark.kubernetes.authenticate.driver.serviceAccountName": settings.service_account,
        "spark.kubernetes.authenticate.executor.serviceAccountName": settings.service_account,
        "spark.executor.instances": str(settings.executor_instances),
        "spark.executor.cores": str(settings.executor_cores),
        "spark.executor.memory": settings.executor_memory,
        "spark.driver.host": settings.driver_host,
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.driver.port": str(settings.driver_port),
        "spark.driver.blockManager.port": str(settings.block_manager_port),
        "spark.kubernetes.executor.podTemplateFile": EXECUTOR_POD_TEMPLATE,
        "spark.kubernetes.executor.podTemplateContainerName": EXECUTOR_CONTAINER_NAME,
    }
    if settings.driver_pod_name:
        conf["spark.kubernetes.driver.pod.name"] = settings.driver_pod_name
    if settings.data_volume_claim:
        prefix = f"spark.kubernetes.executor.volumes.persistentVolumeClaim.{DATA_VOLUME_NAME}"
        conf[f"{prefix}.options.claimName"] = settings.data_volume_claim
        conf[f"{prefix}.mount.path"] = settings.data_mount_path
        conf[f"{prefix}.mount.readOnly"] = "false"
    return conf


def executor_pod_template() -> dict:
    """The executor pod Spark starts from: only the container's command.

    Spark fills in image, resources, env and volumes, and appends the argument
    `executor`; the command runs `k8s_executor`, which starts the executor
    JVM as Spark's own image entrypoint would.
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"containers": [{"name": EXECUTOR_CONTAINER_NAME, "command": list(EXECUTOR_COMMAND)}]},
    }


def _hostname_ip() -> str:
    return socket.gethostbyname(socket.gethostname())


def _write_pod_template() -> str:
    handle, path = tempfile.mkstemp(prefix="spark-executor-pod-", suffix=".yaml")
    with os.fdopen(handle, "w") as f:
        yaml.safe_dump(executor_pod_template(), f, sort_keys=True)
    return path


def resolve_conf(
    conf: Mapping[str, str],
    environ: Mapping[str, str],
    *,
    hostname_ip: Callable[[], str] = _hostname_ip,
    write_pod_template: Callable[[], str] = _write_pod_template,
) -> Dict[str, str]:
    """`conf` with its run-time placeholders filled in.

    Raises:
      ValueError: an `${env:NAME}` whose variable is unset or empty, or an
        unknown placeholder; the message names the conf key.
    """
    resolved = {}
    for key, value in conf.items():
        value = str(value)
        if value == HOSTNAME_IP:
            value = hostname_ip()
        elif value == EXECUTOR_POD_TEMPLATE:
            value = write_pod_template()
        else:
            def from_env(match, key=key):
                name = match.group(1)
                if not environ.get(name):
                    raise ValueError(
                        f"Spark conf {key} needs the environment variable {name}, which is not "
                        "set in this process (in a pod: set it through the downward API).")
                return environ[name]

            value = _ENV_REFERENCE.sub(from_env, value)
        unknown = _PLACEHOLDER.search(value)
        if unknown:
            raise ValueError(f"Spark conf {key}: unknown placeholder {unknown.group(0)}.")
        resolved[key] = value
    return resolved


def parse_conf_json(text: Optional[str]) -> Dict[str, str]:
    """The component's/CLI's `spark_conf` JSON ('' = none) as {key: value string}."""
    if not text or not text.strip():
        return {}
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"spark_conf is not valid JSON: {error}") from error
    if not isinstance(conf, dict) or not all(isinstance(k, str) for k in conf):
        raise ValueError(f"spark_conf must be a JSON object of Spark conf entries, got {text!r}.")
    for key, value in conf.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"spark_conf {key}: expected a string or number, got {value!r}.")
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in conf.items()}


def add_spark_kubernetes_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the `--spark-k8s-*` / `--spark-executor-*` flags (used when the master is k8s://)."""
    group = parser.add_argument_group(
        "Spark executors on Kubernetes (used when --spark-master is k8s://...)")
    group.add_argument("--spark-k8s-image", default=None,
                       help="executor image (default: the pipeline's --image)")
    group.add_argument("--spark-k8s-namespace", default=None,
                       help="namespace of the executor pods (default: the KFP --namespace, else kubeflow)")
    group.add_argument("--spark-k8s-service-account", default=DEFAULT_SERVICE_ACCOUNT,
                       help="ServiceAccount of the executor pods (deploy/spark-rbac)")
    group.add_argument("--spark-executor-instances", type=int, default=2)
    group.add_argument("--spark-executor-cores", type=int, default=1)
    group.add_argument("--spark-executor-memory", default="2g")
    group.add_argument("--spark-k8s-data-volume-claim", default=None,
                       help="claim mounted in the executors (default: the --data-volume-claim)")
    group.add_argument("--spark-k8s-driver-host", default=HOSTNAME_IP,
                       help="driver address for executors: ${hostname-ip} (pod IP via /etc/hosts) "
                            "or ${env:POD_IP} (downward API)")
    group.add_argument("--spark-k8s-driver-pod-name", default=None,
                       help="e.g. ${env:POD_NAME}: make the driver pod own the executor pods")
    group.add_argument("--spark-driver-port", type=int, default=DEFAULT_DRIVER_PORT)
    group.add_argument("--spark-block-manager-port", type=int, default=DEFAULT_BLOCK_MANAGER_PORT)
    return parser


def kubernetes_settings_from_flags(
    flags: argparse.Namespace,
    master: Optional[str],
    *,
    image: Optional[str] = None,
    namespace: Optional[str] = None,
    data_volume_claim: Optional[str] = None,
    data_mount_path: Optional[str] = None,
) -> Optional[KubernetesExecutors]:
    """The settings from `add_spark_kubernetes_flags`' flags; None unless `master` is k8s://.

    The keyword arguments are fallbacks from the caller's own flags (the
    pipeline image, namespace, data claim and data root).
    """
    if not is_kubernetes_master(master):
        return None
    return KubernetesExecutors(
        image=flags.spark_k8s_image or image or "",
        namespace=flags.spark_k8s_namespace or namespace or "kubeflow",
        service_account=flags.spark_k8s_service_account,
        executor_instances=flags.spark_executor_instances,
        executor_cores=flags.spark_executor_cores,
        executor_memory=flags.spark_executor_memory,
        data_volume_claim=flags.spark_k8s_data_volume_claim or data_volume_claim or None,
        data_mount_path=data_mount_path or "/mnt/data",
        driver_host=flags.spark_k8s_driver_host,
        driver_pod_name=flags.spark_k8s_driver_pod_name or None,
        driver_port=flags.spark_driver_port,
        block_manager_port=flags.spark_block_manager_port,
    )


def spark_conf_json(settings: Optional[KubernetesExecutors]) -> str:
    """The `spark_conf` component parameter for `settings`: '' when None (local runs)."""
    return json.dumps(kubernetes_spark_conf(settings), sort_keys=True) if settings else ""
