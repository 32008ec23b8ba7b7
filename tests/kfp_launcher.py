"""Runs a compiled KFP pipeline's tasks the way KFP's open-source backend does.

No cluster here, so this plays the backend's part, following its v2 engine
(backend/src/v2: driver, launcher): tasks in dependency order; each task's
parameters from its constants and the run's parameters; input artifacts are
the producers' recorded outputs; output artifacts get object-store URIs
(`minio://...`, the default install's store) under the run; the launcher's
local paths (`/minio/<bucket>/...`, see LocalPathForURI) live under one
directory shared by all tasks, which stands in for the download before and
the upload after each task; the task's container command and arguments are
run with `{{$}}` replaced by the executor input; the executor output's
artifacts (URI, metadata) are recorded for downstream tasks. PVC mounts come
from the platform spec: an in-cluster path is mapped to a local directory
only for the tasks that mount it, and a task naming a mount path it does not
mount fails here as it would on the cluster. A second run reuses the outputs
of tasks whose inputs did not change (KFP's cache), except where caching is
off.
"""
import dataclasses
import json
import os
from typing import Callable, Dict, List, Optional, Tuple

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

BUCKET = "minio://mlpipeline/v2/artifacts"


@dataclasses.dataclass
class TaskResult:
    status: str  # "COMPLETE", "CACHED" or "FAILED"
    outputs: Dict[str, dict]  # output key -> RuntimeArtifact dict (remote URI, metadata)
    stderr: str = ""


class LauncherSimulation:
    def __init__(self, spec: pipeline_spec_pb2.PipelineSpec, platform: dict, local_root: str,
                 claims: Dict[str, str], image_paths: Dict[str, str],
                 unmapped: Tuple[str, ...],
                 run_command: Callable[[List[str], Dict[str, str]], "subprocess.CompletedProcess"]):
        """Args:
          spec: the compiled PipelineSpec.
          platform: the platform spec document ({} for none).
          local_root: where the launcher's local paths (/minio/...) live.
          claims: {PVC name: local directory holding the volume's contents}.
          image_paths: {path in the image: local path} (e.g. /app -> the build context).
          unmapped: prefixes of paths passed on as they are (not read by the task,
            e.g. the model directory as TF Serving sees it).
          run_command: runs argv (after `python`) with extra environment variables.
        """
        self.spec = spec
        self.deployment = json_format.ParseDict(
            json_format.MessageToDict(spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig())
        executors = (platform.get("platforms", {}).get("kubernetes", {})
                     .get("deploymentSpec", {}).get("executors", {}))
        self.mounts = {label: [(m["constant"], m["mountPath"]) for m in config.get("pvcMount", [])]
                       for label, config in executors.items()}
        self.local_root = local_root
        self.claims = claims
        self.image_paths = image_paths
        self.unmapped = unmapped
        self.run_command = run_command
        self.cache: Dict[Tuple[str, str], Dict[str, dict]] = {}
        self.runs = 0

    def local_path(self, uri: str) -> str:
        assert uri.startswith("minio://"), uri
        return os.path.join(self.local_root, "minio", uri[len("minio://"):])

    def order(self) -> List[str]:
        tasks = self.spec.root.dag.tasks
        done: List[str] = []
        while len(done) < len(tasks):
            ready = sorted(n for n, t in tasks.items()
                           if n not in done and set(t.dependent_tasks) <= set(done))
            assert ready, "the task graph has a cycle"
            done.extend(ready)
        return done

    def run(self, parameters: Optional[Dict[str, str]] = None) -> Dict[str, TaskResult]:
        """One pipeline run; stops at the first failed task (as KFP does)."""
        self.runs += 1
        run_id = f"run-{self.runs}"
        results: Dict[str, TaskResult] = {}
        for name in self.order():
            result = self._run_task(name, run_id, parameters or {}, results)
            results[name] = result
            if result.status == "FAILED":
                break
        return results

    def _run_task(self, name, run_id, run_parameters, results) -> TaskResult:
        task = self.spec.root.dag.tasks[name]
        component = self.spec.components[task.component_ref.name]
        label = component.executor_label
        container = self.deployment.executors[label].container
        mounts = self.mounts.get(label, [])

        parameters = {}
        for key, source in task.inputs.parameters.items():
            if source.component_input_parameter:
                pipeline_input = source.component_input_parameter
                default = self.spec.root.input_definitions.parameters[pipeline_input].default_value
                value = run_parameters.get(pipeline_input, json_format.MessageToDict(default))
            else:
                value = json_format.MessageToDict(source.runtime_value.constant)
            parameters[key] = self._in_pod(value, name, mounts)
        inputs = {}
        for key, source in task.inputs.artifacts.items():
            producer = source.task_output_artifact
            inputs[key] = {"artifacts": [results[producer.producer_task].outputs[producer.output_artifact_key]]}

        cache_key = (name, json.dumps([parameters, inputs], sort_keys=True))
        if task.caching_options.enable_cache and cache_key in self.cache:
            return TaskResult("CACHED", self.cache[cache_key])

        outputs = {}
        for key, definition in component.output_definitions.artifacts.items():
            uri = f"{BUCKET}/{run_id}/{name}/{key}"
            outputs[key] = {"name": f"{run_id}-{name}-{key}",
                            "type": json_format.MessageToDict(definition.artifact_type), "uri": uri}
            os.makedirs(os.path.dirname(self.local_path(uri)), exist_ok=True)  # prepareOutputFolders
        output_file = os.path.join(self.local_root, "kfp_outputs", run_id, name, "output_metadata.json")
        executor_input = json.dumps({
            "inputs": {"parameterValues": parameters, "artifacts": inputs},
            "outputs": {"artifacts": {k: {"artifacts": [v]} for k, v in outputs.items()},
                        "outputFile": output_file},
        })
        command = list(container.command)
        assert command[:2] == ["python", "-m"], command
        argv = command[1:] + [executor_input if a == "{{$}}" else a for a in container.args]
        completed = self.run_command(argv, {"KFP_LAUNCHER_LOCAL_ROOT": self.local_root})
        if completed.returncode != 0:
            return TaskResult("FAILED", {}, completed.stderr)

        if os.path.exists(output_file):
            with open(output_file) as f:
                written = json.load(f).get("artifacts", {})
            for key, artifact_list in written.items():
                (artifact,) = artifact_list["artifacts"]
                # The launcher merges URI and metadata into the recorded artifact.
                outputs[key] = dict(outputs[key], uri=artifact.get("uri") or outputs[key]["uri"],
                                    metadata=artifact.get("metadata", {}))
        self.cache[cache_key] = outputs
        return TaskResult("COMPLETE", outputs, completed.stderr)

    def _in_pod(self, value, task: str, mounts: List[Tuple[str, str]]):
        """An in-cluster path as this task's pod sees it; unmounted volume paths fail."""
        if not isinstance(value, str) or not value.startswith("/") or value.startswith(self.unmapped):
            return value
        for claim, mount_path in mounts:
            if value == mount_path or value.startswith(mount_path + "/"):
                return self.claims[claim] + value[len(mount_path):]
        for image_path, local in self.image_paths.items():
            if value.startswith(image_path + "/"):
                return local + value[len(image_path):]
        raise AssertionError(f"task {task} is given the path {value}, which is neither in the "
                             f"image nor on a volume mounted in its pod ({mounts})")
