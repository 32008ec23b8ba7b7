"""TF_CONFIG for MultiWorkerMirroredStrategy: N local workers, or a TFJob's pods.

`MultiWorkerMirroredStrategy` reads the cluster and this process's task from
the `TF_CONFIG` environment variable. Two layouts are produced here:

* local: `{"cluster": {"worker": ["127.0.0.1:P0", ...]}, "task": {"type":
  "worker", "index": i}}`, one free loopback port per worker; worker 0 is the
  chief (TensorFlow's rule when the cluster has no "chief" task).
* TFJob: what the Kubeflow Training Operator (v1.9.0,
  pkg/controller.v1/tensorflow/tensorflow.go, genTFConfigJSONStr and
  genClusterSpec) puts into each pod: one entry per replica type, lower-cased,
  each replica addressed as `<job>-<type>-<index>.<namespace>.svc:<port>`
  (port 2222, the operator's default `tfjob-port`), plus
  `"environment": "cloud"`. The chief is the `chief` task and trains too.
"""
import contextlib
import json
import socket
from typing import Dict, List, Mapping, Optional, Sequence

LOCAL_HOST = "127.0.0.1"
TFJOB_DEFAULT_PORT = 2222


def free_ports(count: int, host: str = LOCAL_HOST) -> List[int]:
    """`count` distinct ports that were free on `host` a moment ago.

    All sockets are held open together, so the ports are distinct; another
    process may still take one before a worker binds it (the launcher reports
    such a worker's failure like any other).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}.")
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
    return ports


def local_tf_configs(workers: int, ports: Optional[Sequence[int]] = None,
                     host: str = LOCAL_HOST) -> List[Dict]:
    """One TF_CONFIG dict per local worker process (index order)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    ports = list(ports) if ports is not None else free_ports(workers, host)
    if len(ports) != workers or len(set(ports)) != workers:
        raise ValueError(f"need {workers} distinct ports, got {ports}.")
    cluster = {"worker": [f"{host}:{port}" for port in ports]}
    return [{"cluster": cluster, "task": {"type": "worker", "index": index}}
            for index in range(workers)]


def tfjob_replica_host(job_name: str, namespace: str, replica_type: str, index: int,
                       port: int = TFJOB_DEFAULT_PORT, cluster_domain: str = "") -> str:
    """The address the Training Operator gives replica `index` of `replica_type`."""
    host = f"{job_name}-{replica_type.lower()}-{index}".replace("/", "-")
    name = f"{host}.{namespace}.svc" + (f".{cluster_domain}" if cluster_domain else "")
    return f"{name}:{port}"


def tfjob_tf_config(job_name: str, namespace: str, replicas: Mapping[str, int],
                    task_type: str, task_index: int, port: int = TFJOB_DEFAULT_PORT) -> Dict:
    """TF_CONFIG as the Training Operator sets it in the pod of one replica.

    Args:
      job_name, namespace: the TFJob's metadata.
      replicas: replica counts by TFJob replica type, e.g. {"Chief": 1, "Worker": 1}.
      task_type, task_index: this pod's replica type (any case) and index.
    """
    cluster = {kind.lower(): [tfjob_replica_host(job_name, namespace, kind, i, port)
                              for i in range(count)]
               for kind, count in replicas.items()}
    return {"cluster": cluster, "task": {"type": task_type.lower(), "index": task_index},
            "environment": "cloud"}


def parse(text: Optional[str]) -> Dict:
    """TF_CONFIG's JSON text as a dict; empty or None gives {}."""
    return json.loads(text) if text else {}


def training_tasks(tf_config: Mapping) -> int:
    """How many processes train: chief and workers (evaluator and ps do not)."""
    cluster = tf_config.get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def is_chief(tf_config: Mapping) -> bool:
    """True for the process that exports: the chief task, else worker 0.

    TensorFlow's rule (`multi_worker_util.is_chief`): with a "chief" task in
    the cluster only it is the chief; without one, worker 0 is.
    """
    task = tf_config.get("task") or {}
    task_type, index = task.get("type"), int(task.get("index", 0))
    if not task_type:
        return True  # no cluster: a single process
    if "chief" in tf_config.get("cluster", {}):
        return task_type == "chief"
    return task_type == "worker" and index == 0


def task_label(tf_config: Mapping) -> str:
    """'worker-1', 'chief-0', or 'single' without TF_CONFIG."""
    task = tf_config.get("task") or {}
    return f"{task['type']}-{task.get('index', 0)}" if task.get("type") else "single"


def shard_of(tf_config: Mapping) -> "tuple[int, int]":
    """(number of shards, this process's shard): chief first, then workers 0..N-1.

    Without TF_CONFIG (one process) the data is one shard.
    """
    task = tf_config.get("task") or {}
    if not task.get("type"):
        return 1, 0
    cluster = tf_config.get("cluster", {})
    chiefs = len(cluster.get("chief", []))
    if task["type"] == "chief":
        index = int(task.get("index", 0))
    elif task["type"] == "worker":
        index = chiefs + int(task.get("index", 0))
    else:
        raise ValueError(f"Task type '{task['type']}' does not train.")
    return training_tasks(tf_config), index
