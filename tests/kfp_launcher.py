"""Runs a compiled KFP pipeline task by task in the real image, as KFP's backend would.

No cluster here, so this plays the KFP 2.x backend's part: its driver
(resolving inputs, the cache key, provisioning outputs) and the launcher's
download/upload, while each task's own command runs for real in the image
built from ./Dockerfile (`podman run`), as the image's non-root user, with
the PVCs of the platform spec bind-mounted at their mount paths. What is
modelled follows the backend's sources (backend/src/v2: driver/driver.go,
component/launcher_v2.go, cacheutils/cache.go, compiler/argocompiler),
versions 2.0.5, 2.5.0 and HEAD:

* Inputs: parameters from constants, run parameters and upstream tasks'
  output parameters; artifacts are the producers' recorded outputs.
* Cache: the key holds the input parameter values, the input artifacts'
  names (a new artifact has a new name), the output specs and the container
  (image, command, args); tasks with caching off always run.
* Outputs: object-store URIs under the pipeline root (minio://, the default
  install's store), `executor-logs` (system.Artifact) added on KFP >= 2.5 with
  log publishing on; output parameters read from the executor output.
* The launcher runs inside the task's container, as the task's user: before
  the command it downloads each input artifact to its local path
  (/minio/<bucket>/<key>) and creates the output folders; after it, it
  uploads each output folder. KFP >= 2.3 mounts emptyDirs at /minio, /s3 and
  /gcs; before that the image's own directories are all there is.

Here the object store is a host directory mounted at /objectstore, and the
launcher's steps are shell commands run in the container before and after
the task's own command.
"""
import dataclasses
import json
import os
import shlex
import subprocess
from typing import Callable, Dict, List, Optional, Tuple

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

OBJECT_STORE_MOUNT = "/objectstore"
RESULTS_MOUNT = "/kfp-results"
# launcher_v2.go: OutputMetadataFilepath; driver.go: output parameter files.
OUTPUT_METADATA_FILE = "/tmp/kfp_outputs/output_metadata.json"
OUTPUT_PARAMETER_DIR = "/tmp/kfp/outputs"
SCRATCH_DIRS = ("/minio", "/s3", "/gcs")
EXECUTOR_LOGS = "executor-logs"


@dataclasses.dataclass(frozen=True)
class Backend:
    """What differs between KFP backend versions for a task's pod."""

    name: str
    scratch_volumes: bool  # emptyDirs at /minio, /s3, /gcs (2.3 and later)
    executor_logs: bool  # driver adds an executor-logs output (2.5 and later, PUBLISH_LOGS=true)


BACKENDS = {
    "2.0-2.2": Backend("2.0-2.2", scratch_volumes=False, executor_logs=False),
    "2.3-2.4": Backend("2.3-2.4", scratch_volumes=True, executor_logs=False),
    "2.5+": Backend("2.5+", scratch_volumes=True, executor_logs=True),
}


@dataclasses.dataclass
class TaskResult:
    status: str  # "COMPLETE", "CACHED" or "FAILED"
    outputs: Dict[str, dict]  # output key -> RuntimeArtifact dict (remote URI, metadata)
    parameters: Dict[str, object] = dataclasses.field(default_factory=dict)  # output parameters
    log: str = ""


class PodmanBackend:
    """Runs compiled pipelines against one image, object store and set of volumes."""

    def __init__(self, spec: pipeline_spec_pb2.PipelineSpec, platform: dict, image: str,
                 object_store: str, claims: Dict[str, str], work_dir: str,
                 podman: Callable[[List[str], Optional[str]], subprocess.CompletedProcess],
                 bucket: str = "mlpipeline", prefix: str = "v2/artifacts"):
        """Args:
          spec: the compiled PipelineSpec.
          platform: the platform spec document ({} for none).
          image: the image every task runs in.
          object_store: host directory standing in for the bucket's contents.
          claims: {PVC name: host directory holding the volume's contents}.
          work_dir: host directory for per-task scratch and results.
          podman: runs `podman <args>` with an optional stdin text.
        """
        self.spec = spec
        self.deployment = json_format.ParseDict(
            json_format.MessageToDict(spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig())
        executors = (platform.get("platforms", {}).get("kubernetes", {})
                     .get("deploymentSpec", {}).get("executors", {}))
        self.mounts = {label: [(m["constant"], m["mountPath"]) for m in config.get("pvcMount", [])]
                       for label, config in executors.items()}
        self.image = image
        self.object_store = object_store
        self.claims = claims
        self.work_dir = work_dir
        self.podman = podman
        self.bucket, self.prefix = bucket, prefix
        self.cache: Dict[str, TaskResult] = {}
        self.runs = 0
        self.artifact_ids = 0

    # --- locations --------------------------------------------------------------------

    def uri(self, run_id: str, task: str, key: str) -> str:
        return f"minio://{self.bucket}/{self.prefix}/{run_id}/{task}/{key}"

    def host_path(self, uri: str) -> str:
        """Where an object-store URI's content is on the host."""
        assert uri.startswith(f"minio://{self.bucket}/"), uri
        return os.path.join(self.object_store, uri[len(f"minio://{self.bucket}/"):])

    @staticmethod
    def pod_path(uri: str) -> str:
        """The launcher's local path (LocalPathForURI)."""
        return "/minio/" + uri[len("minio://"):]

    def store_path(self, uri: str) -> str:
        """The object store as the task's container sees it."""
        return OBJECT_STORE_MOUNT + "/" + uri[len(f"minio://{self.bucket}/"):]

    # --- runs -------------------------------------------------------------------------

    def order(self) -> List[str]:
        tasks = self.spec.root.dag.tasks
        done: List[str] = []
        while len(done) < len(tasks):
            ready = sorted(n for n, t in tasks.items()
                           if n not in done and set(t.dependent_tasks) <= set(done))
            assert ready, "the task graph has a cycle"
            done.extend(ready)
        return done

    def run(self, parameters: Optional[Dict[str, str]] = None,
            backend: Backend = BACKENDS["2.5+"]) -> Dict[str, TaskResult]:
        """One pipeline run; stops at the first failed task (as KFP does)."""
        self.runs += 1
        run_id = f"run-{self.runs}"
        results: Dict[str, TaskResult] = {}
        for name in self.order():
            results[name] = self._run_task(name, run_id, parameters or {}, results, backend)
            if results[name].status == "FAILED":
                break
        return results

    def _inputs(self, task, run_parameters, results) -> Tuple[Dict[str, object], Dict[str, dict]]:
        parameters = {}
        for key, source in task.inputs.parameters.items():
            if source.component_input_parameter:
                name = source.component_input_parameter
                default = self.spec.root.input_definitions.parameters[name].default_value
                parameters[key] = run_parameters.get(name, json_format.MessageToDict(default))
            elif source.task_output_parameter.producer_task:
                producer = source.task_output_parameter
                assert producer.producer_task in results, f"no task {producer.producer_task}"
                parameters[key] = results[producer.producer_task].parameters[producer.output_parameter_key]
            else:
                parameters[key] = json_format.MessageToDict(source.runtime_value.constant)
        artifacts = {}
        for key, source in task.inputs.artifacts.items():
            producer = source.task_output_artifact
            artifacts[key] = {"artifacts": [results[producer.producer_task].outputs[producer.output_artifact_key]]}
        return parameters, artifacts

    def _run_task(self, name, run_id, run_parameters, results, backend: Backend) -> TaskResult:
        task = self.spec.root.dag.tasks[name]
        component = self.spec.components[task.component_ref.name]
        container = self.deployment.executors[component.executor_label].container
        parameters, artifacts = self._inputs(task, run_parameters, results)

        output_specs = {k: json_format.MessageToDict(d.artifact_type)
                        for k, d in component.output_definitions.artifacts.items()}
        if backend.executor_logs:
            output_specs[EXECUTOR_LOGS] = {"schemaTitle": "system.Artifact"}
        cache_key = json.dumps({
            "parameters": parameters,
            "artifact_names": {k: [a["name"] for a in v["artifacts"]] for k, v in artifacts.items()},
            "outputs": output_specs,
            "output_parameters": sorted(component.output_definitions.parameters),
            "container": [container.image, list(container.command), list(container.args)],
        }, sort_keys=True)
        if task.caching_options.enable_cache and cache_key in self.cache:
            cached = self.cache[cache_key]
            return TaskResult("CACHED", cached.outputs, cached.parameters)

        outputs = {}
        for key, artifact_type in output_specs.items():
            self.artifact_ids += 1
            outputs[key] = {"name": f"artifacts/{self.artifact_ids}", "type": artifact_type,
                            "uri": self.uri(run_id, name, key)}
        executor_input = {
            "inputs": {"parameterValues": parameters, "artifacts": artifacts},
            "outputs": {"artifacts": {k: {"artifacts": [v]} for k, v in outputs.items()},
                        "parameters": {p: {"outputFile": f"{OUTPUT_PARAMETER_DIR}/{p}"}
                                       for p in component.output_definitions.parameters},
                        "outputFile": OUTPUT_METADATA_FILE},
        }
        argv = list(container.command) + [
            json.dumps(executor_input) if a == "{{$}}" else a for a in container.args]
        results_dir = os.path.join(self.work_dir, run_id, name)
        os.makedirs(results_dir)
        os.chmod(results_dir, 0o777)
        completed = self.podman(
            self._podman_args(component.executor_label, container.image, backend, results_dir)
            + ["bash", "-c", self._launcher_script(argv, artifacts, outputs, backend)], None)
        log = completed.stdout + completed.stderr
        if completed.returncode != 0:
            return TaskResult("FAILED", {}, {}, log)

        written = {}
        metadata_file = os.path.join(results_dir, "output_metadata.json")
        if os.path.exists(metadata_file):
            with open(metadata_file) as f:
                written = json.load(f)
        for key, artifact_list in written.get("artifacts", {}).items():
            (artifact,) = artifact_list["artifacts"]
            # The launcher merges the executor's URI and metadata into the recorded artifact.
            outputs[key] = dict(outputs[key], uri=artifact.get("uri") or outputs[key]["uri"],
                                metadata=artifact.get("metadata", {}))
        output_parameters = dict(written.get("parameterValues", {}))
        for parameter in component.output_definitions.parameters:
            if parameter not in output_parameters:  # collectOutputParameters: from the file
                with open(os.path.join(results_dir, "parameters", parameter)) as f:
                    output_parameters[parameter] = f.read()
        result = TaskResult("COMPLETE", outputs, output_parameters, log)
        self.cache[cache_key] = result
        return result

    def _podman_args(self, executor_label: str, image: str, backend: Backend, results_dir: str) -> List[str]:
        args = ["run", "--rm", "--network", "none",
                "-v", f"{self.object_store}:{OBJECT_STORE_MOUNT}",
                "-v", f"{results_dir}:{RESULTS_MOUNT}"]
        if backend.scratch_volumes:
            for directory in SCRATCH_DIRS:  # emptyDir: a new host directory, mode 0777 (kubelet's)
                empty_dir = os.path.join(results_dir, "emptydir" + directory)
                os.makedirs(empty_dir)
                os.chmod(empty_dir, 0o777)
                args += ["-v", f"{empty_dir}:{directory}"]
        for claim, mount_path in self.mounts.get(executor_label, []):
            args += ["-v", f"{self.claims[claim]}:{mount_path}"]
        return args + [image]

    def _launcher_script(self, argv: List[str], inputs: Dict[str, dict], outputs: Dict[str, dict],
                         backend: Backend) -> str:
        """The launcher's steps around the task's command, in the task's container."""
        q = shlex.quote
        lines = ["set -euo pipefail"]
        for artifact_list in inputs.values():  # downloadArtifacts
            uri = artifact_list["artifacts"][0]["uri"]
            lines.append(f"mkdir -p {q(os.path.dirname(self.pod_path(uri)))}")
            lines.append(f"if [ -e {q(self.store_path(uri))} ]; then "
                         f"cp -a {q(self.store_path(uri))} {q(self.pod_path(uri))}; fi")
        for artifact in outputs.values():  # prepareOutputFolders
            lines.append(f"mkdir -p {q(os.path.dirname(self.pod_path(artifact['uri'])))}")
        lines.append(f"mkdir -p {OUTPUT_PARAMETER_DIR} {os.path.dirname(OUTPUT_METADATA_FILE)}")
        command = " ".join(q(a) for a in argv)
        if backend.executor_logs:  # getLogWriter: stdout and stderr also into the log artifact
            command += f" 2>&1 | tee {q(self.pod_path(outputs[EXECUTOR_LOGS]['uri']))}"
        lines.append(command)
        for artifact in outputs.values():  # uploadOutputArtifacts
            local, remote = self.pod_path(artifact["uri"]), self.store_path(artifact["uri"])
            lines.append(f"if [ -e {q(local)} ]; then mkdir -p {q(os.path.dirname(remote))} && "
                         f"cp -a {q(local)} {q(remote)}; fi")
        lines.append(f"if [ -e {OUTPUT_METADATA_FILE} ]; then cp {OUTPUT_METADATA_FILE} {RESULTS_MOUNT}/; fi")
        lines.append(f"cp -r {OUTPUT_PARAMETER_DIR} {RESULTS_MOUNT}/parameters")
        return "\n".join(lines)
