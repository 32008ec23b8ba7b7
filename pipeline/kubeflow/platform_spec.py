"""KFP's Kubernetes platform spec: the volumes TFX's compiler cannot express."""
from typing import Dict, List, Tuple

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2


def platform_spec(spec: pipeline_spec_pb2.PipelineSpec,
                  volume_mounts: Dict[str, List[Tuple[str, str]]]) -> dict:
    """PVC mounts per task, keyed by executor label, as kfp-kubernetes writes them.

    The second YAML document of a compiled package; `kfp.Client` uploads
    both documents and the backend's driver adds the volumes to the task's
    pod (`pvcMount` with a constant claim name, which every KFP 2.x backend
    accepts).
    """
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s

    executors = {}
    for task, mounts in volume_mounts.items():
        label = spec.components[spec.root.dag.tasks[task].component_ref.name].executor_label
        config = k8s.KubernetesExecutorConfig(pvc_mount=[
            k8s.PvcMount(constant=claim, mount_path=path) for claim, path in mounts])
        executors[label] = json_format.MessageToDict(config)
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
