"""A Kubeflow Training Operator TFJob (kubeflow.org/v1) for the Trainer.

One `Chief` and `workers - 1` `Worker` replicas: `workers` processes train in
total, exactly as `--train-workers N` means locally (the chief trains too;
MultiWorkerMirroredStrategy treats it as one more worker and it alone
exports). Every replica runs the pipeline's image with

    python -m components.distributed_training.worker --spec <spec on the volume>

in a container named `tensorflow` (the operator's webhook requires one of
that name) exposing port 2222 named `tfjob-port` (the operator's defaults),
with the data claim mounted at the pipeline's data root, the same claim and
path the Spark and ExampleGen tasks mount. The Training Operator sets each
pod's TF_CONFIG (`tf_config.tfjob_tf_config` reproduces it) and headless
services for the replica addresses.

Pods never restart (`restartPolicy: Never`, `backoffLimit: 0`): without
checkpoint-based recovery a restarted worker cannot rejoin a running
all-reduce, so one failed pod fails the job, and the submitting task reports
it. `activeDeadlineSeconds` bounds the whole job like the local launcher's
timeout.
"""
import dataclasses
import re
from typing import Any, Dict, List, Optional

from components.distributed_training import tf_config as tf_config_lib

API_VERSION = "kubeflow.org/v1"
KIND = "TFJob"
GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"
CONTAINER_NAME = "tensorflow"  # TFJobDefaultContainerName
PORT_NAME = "tfjob-port"  # TFJobDefaultPortName
DATA_VOLUME = "data"
WORKER_MODULE = "components.distributed_training.worker"
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class TFJobSettings:
    """What the TFJob needs; image, claim and mount path come from the pipeline's settings.

    Attributes:
      name: the TFJob's name (a DNS-1035 label, at most 63 characters).
      namespace: where it runs (the pipeline's namespace).
      image: the pipeline image (every task's image).
      workers: training processes in total (1 Chief + workers-1 Workers).
      spec_path: the TrainingSpec JSON as the pods see it (on the data volume).
      data_claim: the PersistentVolumeClaim holding the staged inputs and outputs.
      data_mount_path: where the claim is mounted (the pipeline's data root).
      cpu_request, memory_request_gb, cpu_limit, memory_limit_gb: per replica.
      timeout_seconds: activeDeadlineSeconds of the job.
      service_account: pods' service account ('' = the namespace default).
      labels: extra labels on the job and its pods.
    """

    name: str
    namespace: str
    image: str
    workers: int
    spec_path: str
    data_claim: str
    data_mount_path: str
    cpu_request: float = 1
    memory_request_gb: float = 4
    cpu_limit: float = 2
    memory_limit_gb: float = 8
    timeout_seconds: int = 3600
    service_account: str = ""
    labels: Dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not _DNS1035.match(self.name) or len(self.name) > 63:
            raise ValueError(f"TFJob name '{self.name}' is not a DNS-1035 label "
                             "(lower-case letters, digits and '-', starting with a letter, <= 63).")
        if self.workers < 2:
            raise ValueError(f"A TFJob trains with >= 2 processes; got workers={self.workers} "
                             "(one process: run the Trainer as usual).")
        if not self.image or not self.spec_path.startswith(self.data_mount_path.rstrip("/") + "/"):
            raise ValueError(f"The spec '{self.spec_path}' must lie under the data mount "
                             f"'{self.data_mount_path}', and an image is required.")
        if self.cpu_limit < self.cpu_request or self.memory_limit_gb < self.memory_request_gb:
            raise ValueError("A resource limit is below its request.")

    @property
    def replicas(self) -> Dict[str, int]:
        return {"Chief": 1, "Worker": self.workers - 1}

    @classmethod
    def from_resources(cls, resources: Any, **kwargs) -> "TFJobSettings":
        """With pipeline.kubeflow.settings.Resources (e.g. the Trainer task's)."""
        return cls(cpu_request=resources.cpu_request, memory_request_gb=resources.memory_request_gb,
                   cpu_limit=resources.cpu_limit, memory_limit_gb=resources.memory_limit_gb, **kwargs)


def _quantity_cpu(cores: float) -> str:
    return f"{int(round(cores * 1000))}m"


def _quantity_memory(gb: float) -> str:
    return f"{int(round(gb * 1024))}Mi"


def _replica(settings: TFJobSettings, count: int) -> Dict[str, Any]:
    labels = {"app.kubernetes.io/name": "rain-tomorrow-trainer", **settings.labels}
    pod_spec: Dict[str, Any] = {
        "containers": [{
            "name": CONTAINER_NAME,
            "image": settings.image,
            "command": ["python", "-m", WORKER_MODULE, "--spec", settings.spec_path,
                        "--strategy", "multi_worker"],
            "ports": [{"name": PORT_NAME, "containerPort": tf_config_lib.TFJOB_DEFAULT_PORT}],
            "resources": {
                "requests": {"cpu": _quantity_cpu(settings.cpu_request),
                             "memory": _quantity_memory(settings.memory_request_gb)},
                "limits": {"cpu": _quantity_cpu(settings.cpu_limit),
                           "memory": _quantity_memory(settings.memory_limit_gb)},
            },
            "volumeMounts": [{"name": DATA_VOLUME, "mountPath": settings.data_mount_path}],
        }],
        "volumes": [{"name": DATA_VOLUME,
                     "persistentVolumeClaim": {"claimName": settings.data_claim}}],
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    # The replica's restartPolicy is the one the operator gives the pods.
    return {"replicas": count, "restartPolicy": "Never",
            "template": {"metadata": {"labels": labels}, "spec": pod_spec}}


def tfjob_manifest(settings: TFJobSettings) -> Dict[str, Any]:
    """The TFJob object (a dict ready for the API or YAML)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": settings.name, "namespace": settings.namespace,
                     "labels": {"app.kubernetes.io/name": "rain-tomorrow-trainer", **settings.labels}},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0,
                          "activeDeadlineSeconds": int(settings.timeout_seconds)},
            "tfReplicaSpecs": {kind: _replica(settings, count)
                               for kind, count in settings.replicas.items() if count > 0},
        },
    }


def webhook_errors(manifest: Dict[str, Any]) -> List[str]:
    """The Training Operator's admission checks (v1.9.0 pkg/webhooks/tensorflow/tfjob_webhook.go).

    The CRD's schema does not express these: a DNS-1035 name, replica specs
    present, every container with an image, a container named `tensorflow`
    in every replica, at most one Chief or Master.
    """
    errors = []
    name = manifest.get("metadata", {}).get("name", "")
    if not _DNS1035.match(name) or len(name) > 63:
        errors.append(f"metadata.name '{name}' is not a DNS-1035 label")
    specs: Optional[Dict[str, Any]] = manifest.get("spec", {}).get("tfReplicaSpecs")
    if not specs:
        return errors + ["spec.tfReplicaSpecs: must be required"]
    for kind, replica in specs.items():
        containers = (replica or {}).get("template", {}).get("spec", {}).get("containers") or []
        if not containers:
            errors.append(f"{kind}: containers must be specified")
        if any(not c.get("image") for c in containers):
            errors.append(f"{kind}: every container needs an image")
        if not any(c.get("name") == CONTAINER_NAME for c in containers):
            errors.append(f"{kind}: must have at least one container with name {CONTAINER_NAME}")
    if sum(1 for kind in specs if kind in ("Chief", "Master")) > 1:
        errors.append("must not have more than 1 Chief or Master role")
    return errors


def staging_paths(data_root: str, job_name: str) -> Dict[str, str]:
    """Where the submitting Trainer task stages one job's files on the data volume."""
    root = f"{data_root.rstrip('/')}/tfjobs/{job_name}"
    return {"root": root, "spec": f"{root}/spec.json", "inputs": f"{root}/inputs",
            "serving_model_dir": f"{root}/serving_model", "model_run_dir": f"{root}/model_run"}


def to_yaml(manifest: Dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(manifest, sort_keys=False)


def main(argv: Optional[List[str]] = None) -> int:
    """Prints a TFJob manifest for the pipeline's defaults (deploy/tfjob/tfjob.yaml)."""
    import argparse

    from pipeline.kubeflow import settings as kf

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--name", default="rain-tomorrow-train")
    parser.add_argument("--namespace", default="kubeflow-user-example-com")
    parser.add_argument("--image", default="REGISTRY/rain-tomorrow:TAG")
    parser.add_argument("--workers", type=int, default=2, help="training processes in total")
    parser.add_argument("--data-root", default=kf.DEFAULT_DATA_ROOT)
    parser.add_argument("--data-claim", default=kf.DEFAULT_DATA_CLAIM)
    parser.add_argument("--resources", default=None, type=kf.Resources.parse,
                        help="per replica: CPU_REQUEST,MEMORY_REQUEST_GB,CPU_LIMIT,MEMORY_LIMIT_GB "
                             "(default: the pipeline's heavy-task resources)")
    parser.add_argument("--timeout-seconds", type=int, default=3600)
    flags = parser.parse_args(argv)
    settings = TFJobSettings.from_resources(
        flags.resources or kf.DEFAULT_HEAVY_RESOURCES, name=flags.name, namespace=flags.namespace,
        image=flags.image, workers=flags.workers,
        spec_path=staging_paths(flags.data_root, flags.name)["spec"],
        data_claim=flags.data_claim, data_mount_path=flags.data_root,
        timeout_seconds=flags.timeout_seconds)
    print(to_yaml(tfjob_manifest(settings)), end="")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
