"""The image and the compiled pipeline, run for real: what a KFP cluster would run.

The `image` layer builds the image from ./Dockerfile with the repository's own
script (scripts/build_image.sh: a local stand-in for the base where no
registry is reachable, then a cached podman build) and runs the compiled
pipeline inside it, every task through its own container command, as the
image's non-root user, with the launcher's download/upload and the KFP cache
played by tests/kfp_launcher.py from the backend's sources. Four runs on
fresh, root-owned volumes prepared by deploy/pipeline-data's Job and loaded
with the loader script:

1. missing raw data, on a KFP 2.0-2.2 pod (no scratch volumes: the launcher
   creates /minio/... itself as uid 1000; no executor-logs): ImportSchemaGen
   runs, the Spark task stops with the job's message;
2. the bundled Seattle CSV on KFP 2.5+ (emptyDir scratch volumes, an
   `executor-logs` output on every task): every task runs, a version is pushed;
3. the same run again: only the Spark task runs, everything else is a cache
   hit, nothing is pushed;
4. an untrained candidate: the tasks up to Transform are cache hits, the new
   model is compared with the served version and not pushed.

The fast tests check the Dockerfile and the spec's task names without podman.
"""
import dataclasses
import glob
import json
import os
import re
import subprocess
import textwrap
from typing import Dict, List

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_runner
from pipeline import node_ids
from pipeline.kubeflow import settings as kf
from tests import containers
from tests.kfp_launcher import BACKENDS, EXECUTOR_LOGS, PodmanBackend, TaskResult

REPO_ROOT = containers.REPO_ROOT
SITE_PACKAGES = "/usr/local/lib/python3.10/site-packages"
OUR_PACKAGES = ("pipeline", "components", "models", "serving")
PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"


def _dockerfile() -> str:
    with open(os.path.join(REPO_ROOT, "Dockerfile")) as f:
        return f.read()


def test_dockerfile_base_is_our_python_and_installs_the_pins():
    dockerfile = _dockerfile()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    version = re.match(r"python:(\d+\.\d+\.\d+)-slim-bookworm$", base)
    assert version, f"expected a pinned python:X.Y.Z-slim-bookworm base, got {base}"
    with open(os.path.join(REPO_ROOT, ".python-version")) as f:
        assert version.group(1) == f.read().strip()
    assert 'uv pip install --system -c requirements/constraints.txt' in dockerfile
    assert "openjdk-17-jre-headless" in dockerfile  # pyspark
    # pyfarmhash (TFDV) is source-only: the dependency layer needs a C++ compiler.
    assert re.search(r"apt-get install[^\n]*\bg\+\+", dockerfile)
    assert re.search(r"^USER 1000$", dockerfile, flags=re.MULTILINE)
    assert "install -d -o 1000 -g 1000 /minio /s3 /gcs" in dockerfile


def test_build_context_keeps_out_what_the_image_does_not_need():
    with open(os.path.join(REPO_ROOT, ".dockerignore")) as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {".venv", "runs", "tests", ".git"} <= ignored
    assert not set(OUR_PACKAGES) & ignored and "schema" not in ignored


# --- the image layer ------------------------------------------------------------------

needs_podman = pytest.mark.skipif(
    bool(containers.missing_tools()),
    reason=f"building the image needs {containers.missing_tools()} (apt-get install them; "
           "scripts/test.sh does when it runs as root)")


# The Pusher task mounts the models volume (not the data volume): the stand-in
# for deploy/mlflow's server is a SQLite store there, beside TF Serving's models.
MLFLOW_URI = f"sqlite:///{kf.DEFAULT_SERVING_BASE}/.mlflow/mlflow.db"

@pytest.fixture(scope="session")
def image() -> str:
    containers.build_image()
    return containers.IMAGE_TAG


def _compile(tmp_path_factory, *extra: str):
    path = str(tmp_path_factory.mktemp("package") / "pipeline.yaml")
    assert kubeflow_runner.main(["--image", containers.IMAGE_TAG, "--pipeline-root", PIPELINE_ROOT,
                                 "--output", path, *extra]) == 0
    with open(path) as f:
        pipeline_doc, platform = yaml.safe_load_all(f)
    return json_format.ParseDict(pipeline_doc, pipeline_spec_pb2.PipelineSpec()), platform


@pytest.fixture(scope="module")
def compiled_package(tmp_path_factory):
    """(PipelineSpec, platform spec) of the default YAML compile: KFP with launcher I/O."""
    return _compile(tmp_path_factory)


def _referenced_code(spec) -> Dict[str, List[str]]:
    """Executor classes, `-m` modules and user functions the spec names."""
    deployment = json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    classes, modules = set(), set()
    for executor in deployment.executors.values():
        container = executor.container
        classes.add(container.args[list(container.args).index("--executor_class_path") + 1])
        for command in (container.command, container.lifecycle.pre_cache_check.command):
            if "-m" in command:
                modules.add(command[list(command).index("-m") + 1])
    functions = {p.runtime_value.constant.string_value
                 for task in spec.root.dag.tasks.values()
                 for name, p in task.inputs.parameters.items() if name in ("preprocessing_fn", "run_fn")}
    return {"classes": sorted(classes), "modules": sorted(modules), "functions": sorted(functions)}


IMPORT_CHECK = textwrap.dedent("""
    import importlib.util, json, os, sys
    from tfx.utils import import_utils
    names = json.loads(sys.argv[1])
    origins = {}
    for path in names["classes"]:
        cls = import_utils.import_class_by_path(path)
        origins[path] = sys.modules[cls.__module__].__file__
    for path in names["functions"]:
        module, function = path.rsplit(".", 1)
        origins[path] = import_utils.import_func_from_module(module, function).__code__.co_filename
    for module in names["modules"]:
        origins[module] = importlib.util.find_spec(module).origin
    print(json.dumps({"origins": origins, "uid": os.getuid(), "cwd": os.getcwd(),
                      "writable": {d: os.access(d, os.W_OK) for d in ("/minio", "/s3", "/gcs")}}))
""")


@pytest.mark.image
@needs_podman
def test_image_provides_all_code_the_spec_names_as_the_non_root_user(image, compiled_package):
    spec, _ = compiled_package
    names = _referenced_code(spec)
    assert "components.spark_curation.component.SparkCuration_Executor" in names["classes"]
    assert "pipeline.kubeflow.entrypoint" in names["modules"]
    result = containers.podman(["run", "--rm", "--network", "none", image,
                                "python", "-c", IMPORT_CHECK, json.dumps(names)], timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["uid"] == 1000 and not report["cwd"].startswith("/app")
    # KFP 2.0-2.2 mounts nothing there: the launcher (as uid 1000) must be able to write.
    assert report["writable"] == {"/minio": True, "/s3": True, "/gcs": True}
    for name, origin in report["origins"].items():
        assert origin.startswith(SITE_PACKAGES + "/"), f"{name} imported from {origin}"


@pytest.mark.image
@needs_podman
def test_image_dependency_set_is_the_lock(image):
    """`pip check` passed in the build; the versions are the pinned ones."""
    result = containers.podman(["run", "--rm", "--network", "none", image, "pip", "freeze"], timeout=300)
    assert result.returncode == 0, result.stderr
    installed = dict(line.split("==", 1) for line in result.stdout.splitlines() if "==" in line)
    with open(os.path.join(REPO_ROOT, "requirements", "constraints.txt")) as f:
        pins = dict(re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)", line).groups()
                    for line in f if re.match(r"^[A-Za-z0-9_.\-]+==", line))
    normalize = lambda name: re.sub(r"[-_.]+", "-", name).lower().split("[")[0]  # noqa: E731
    installed = {normalize(k): v for k, v in installed.items()}
    for name in ("tfx", "tensorflow", "apache-beam", "pyarrow", "pyspark", "kfp", "protobuf"):
        pinned = {normalize(k): v for k, v in pins.items()}[name]
        assert installed[name] == pinned, (name, installed.get(name), pinned)


# --- the compiled pipeline, in the image ----------------------------------------------


@dataclasses.dataclass
class ClusterRuns:
    backend: PodmanBackend
    object_store: str
    data: str
    models: str
    owners_before_prepare: Dict[str, int]
    missing_raw: Dict[str, TaskResult]
    curated_after_missing_raw: bool
    first: Dict[str, TaskResult]
    unchanged: Dict[str, TaskResult]
    worse: Dict[str, TaskResult]


def _render(target: str) -> List[dict]:
    result = subprocess.run(["kubectl", "kustomize", os.path.join(REPO_ROOT, "deploy", target)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _prepare_volumes(image: str, data: str, models: str) -> subprocess.CompletedProcess:
    """Runs deploy/pipeline-data's prepare Job: its command, as its user, on the volumes."""
    (job,) = [d for d in _render("pipeline-data/base") if d["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    hosts = {kf.DEFAULT_DATA_CLAIM: data, kf.DEFAULT_SERVING_CLAIM: models}
    mounts = []
    for mount in container["volumeMounts"]:
        mounts += ["-v", f"{hosts[claims[mount['name']]]}:{mount['mountPath']}"]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    return containers.podman(["run", "--rm", "--network", "none", "--user", user, *mounts,
                              image, *container["command"]], timeout=300)


def _load_raw(image: str, data: str, csv: str) -> subprocess.CompletedProcess:
    """scripts/load_raw_data.sh with the pod exec replaced by the same command in the image."""
    transport = (f"podman --runtime {containers.RUNTIME} run -i --rm --network none "
                 + " ".join(f"--ulimit {u}" for u in containers.ULIMITS)
                 + f" -v {data}:{kf.DEFAULT_DATA_ROOT} {image}")
    return subprocess.run([os.path.join(REPO_ROOT, "scripts", "load_raw_data.sh"), csv],
                          env=dict(os.environ, LOADER_EXEC=transport), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def cluster_runs(image, compiled_package, tmp_path_factory) -> ClusterRuns:
    from vega_datasets import local_data

    spec, platform = compiled_package
    root = tmp_path_factory.mktemp("cluster")
    object_store, data, models, work = (str(root / n) for n in ("object-store", "data", "models", "work"))
    for directory in (object_store, data, models, work):
        os.makedirs(directory)
    os.chmod(object_store, 0o777)  # MinIO stands in; not a volume of the pods
    owners = {d: os.stat(d).st_uid for d in (data, models)}  # fresh volumes: root's
    prepared = _prepare_volumes(image, data, models)
    assert prepared.returncode == 0, prepared.stderr
    loaded = _load_raw(image, data, local_data.seattle_weather.filepath)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr

    backend = PodmanBackend(
        spec, platform, image, object_store,
        claims={kf.DEFAULT_DATA_CLAIM: data, kf.DEFAULT_SERVING_CLAIM: models},
        work_dir=work, podman=containers.podman)
    missing_raw = backend.run({"raw_data": f"{kf.DEFAULT_DATA_ROOT}/raw/missing-*.csv"},
                              backend=BACKENDS["2.0-2.2"])
    curated_after_missing_raw = bool(os.listdir(os.path.join(data, "curated")))
    # MLflow for real inside the image: a SQLite store on the models volume
    # (the run parameter; the compiled default is deploy/mlflow's server).
    tracking = {"station": "seattle", "mlflow_tracking_uri": MLFLOW_URI}
    first = backend.run({**tracking, "train_args": '{"num_steps": 300}'})
    unchanged = backend.run({**tracking, "train_args": '{"num_steps": 300}'})
    # One training step: an essentially untrained candidate against the served model.
    worse = backend.run({**tracking, "train_args": '{"num_steps": 1}'})
    return ClusterRuns(backend, object_store, data, models, owners, missing_raw,
                       curated_after_missing_raw, first, unchanged, worse)


def _failures(results: Dict[str, TaskResult]) -> str:
    return "\n".join(f"{name}: {r.log[-4000:]}" for name, r in results.items() if r.status == "FAILED")


def _versions(models: str) -> List[str]:
    model_dir = os.path.join(models, "rain_tomorrow")
    return sorted(v for v in os.listdir(model_dir) if v.isdigit()) if os.path.isdir(model_dir) else []


@pytest.mark.image
@needs_podman
def test_fresh_root_owned_volumes_are_prepared_and_loaded(cluster_runs):
    assert set(cluster_runs.owners_before_prepare.values()) == {0}
    for directory in (cluster_runs.data, cluster_runs.models, os.path.join(cluster_runs.data, "raw")):
        assert os.stat(directory).st_uid == 1000, directory
    raw = os.path.join(cluster_runs.data, "raw", "seattle-weather.csv")
    assert os.stat(raw).st_uid == 1000 and os.path.getsize(raw) > 40_000


@pytest.mark.image
@needs_podman
def test_a_run_with_missing_raw_data_stops_at_the_spark_task(cluster_runs):
    statuses = {name: r.status for name, r in cluster_runs.missing_raw.items()}
    assert statuses.pop(node_ids.SPARK_CURATION) == "FAILED"
    # The only task that does not wait for it; uploaded from the image's own /minio.
    assert statuses == {node_ids.SCHEMA_GEN: "COMPLETE"}
    schema = cluster_runs.missing_raw[node_ids.SCHEMA_GEN].outputs
    assert EXECUTOR_LOGS not in schema  # no log publishing before KFP 2.5
    assert os.path.isfile(os.path.join(cluster_runs.backend.host_path(schema["schema"]["uri"]), "schema.pbtxt"))
    log = cluster_runs.missing_raw[node_ids.SPARK_CURATION].log
    assert f"Input '{kf.DEFAULT_DATA_ROOT}/raw/missing-*.csv' matches no file" in log
    assert not cluster_runs.curated_after_missing_raw


@pytest.mark.image
@needs_podman
def test_first_run_pushes_with_object_store_uris(cluster_runs, compiled_package):
    spec, _ = compiled_package
    first, backend = cluster_runs.first, cluster_runs.backend
    statuses = {n: r.status for n, r in first.items()}
    assert set(statuses) == set(spec.root.dag.tasks), _failures(first)
    # Every task ran: the outputs spec differs from the KFP 2.0 run's (executor-logs).
    assert set(statuses.values()) == {"COMPLETE"}, _failures(first)
    for name, result in first.items():
        for key, artifact in result.outputs.items():
            assert artifact["uri"].startswith(PIPELINE_ROOT + "/"), (name, key, artifact["uri"])
        if result.status == "COMPLETE":  # KFP >= 2.5: the launcher's log, uploaded beside the outputs
            with open(backend.host_path(result.outputs[EXECUTOR_LOGS]["uri"])) as f:
                assert f.read().strip(), name
    examples = first[node_ids.EXAMPLE_GEN].outputs["examples"]
    assert examples["metadata"]["custom:span"] == 1  # resolved by our executor: no driver hook on KFP
    with open(os.path.join(cluster_runs.data, "curated", "span-1", "_manifest.json")) as f:
        assert _count_examples(backend.host_path(examples["uri"])) == json.load(f)["rows_written"] == 1460
    assert first[node_ids.BASELINE_MODEL].outputs["model"]["metadata"]["baseline_found"] == 0
    assert first[node_ids.EVALUATOR].outputs["blessing"]["metadata"]["blessed"] == 1
    (version,) = _versions(cluster_runs.models)
    version_dir = os.path.join(cluster_runs.models, "rain_tomorrow", version)
    assert os.stat(version_dir).st_uid == 1000
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    with open(os.path.join(version_dir, "push_metadata.json")) as f:
        metadata = json.load(f)
    # What a later run, another cluster or a person can find, not the pod's /minio copy.
    assert metadata["model_uri"] == first[node_ids.TRAINER].outputs["model"]["uri"]
    assert metadata["data"][0]["uri"] == examples["uri"] and metadata["data"][0]["span"] == 1
    with open(os.path.join(cluster_runs.models, "models.config")) as f:
        assert 'base_path: "/models/rain_tomorrow"' in f.read()  # TF Serving's view of the volume
    # The Pusher task logged to MLflow and registered the version (read back from the host).
    from mlflow import MlflowClient

    store = "sqlite:///" + os.path.join(cluster_runs.models,
                                        MLFLOW_URI.split(kf.DEFAULT_SERVING_BASE + "/")[1])
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert "error" not in metadata["mlflow"], metadata["mlflow"]
    run = client.get_run(metadata["mlflow"]["run_id"])
    assert run.data.metrics["pushed"] == 1 and run.data.metrics["eval.auc"] > 0.5
    served = client.get_model_version_by_alias("rain_tomorrow", "serving")
    assert served.tags["tf_serving_version"] == version and served.run_id == run.info.run_id


@pytest.mark.image
@needs_podman
def test_an_unchanged_run_is_answered_from_the_cache_and_pushes_nothing(cluster_runs):
    unchanged = cluster_runs.unchanged
    statuses = {n: r.status for n, r in unchanged.items()}
    assert statuses.pop(node_ids.SPARK_CURATION) == "COMPLETE", _failures(unchanged)
    assert set(statuses.values()) == {"CACHED"}, statuses
    fingerprint = unchanged[node_ids.SPARK_CURATION].parameters["data_fingerprint"]
    assert fingerprint == cluster_runs.first[node_ids.SPARK_CURATION].parameters["data_fingerprint"]
    assert fingerprint.startswith("span-1:")
    assert len(_versions(cluster_runs.models)) == 1


@pytest.mark.image
@needs_podman
def test_worse_candidate_is_compared_with_the_served_version_and_not_pushed(cluster_runs):
    from components import evaluation_results

    worse = cluster_runs.worse
    statuses = {n: r.status for n, r in worse.items()}
    assert "FAILED" not in statuses.values(), _failures(worse)
    # New train_args: the Trainer and what follows it run; the data did not change.
    assert {n for n, s in statuses.items() if s == "COMPLETE"} == {
        node_ids.SPARK_CURATION, node_ids.TRAINER, node_ids.BASELINE_MODEL, node_ids.EVALUATOR,
        node_ids.PUSHER}
    (version,) = _versions(cluster_runs.models)
    baseline = worse[node_ids.BASELINE_MODEL].outputs["model"]["metadata"]
    assert baseline["baseline_found"] == 1 and baseline["baseline_version"] == int(version)
    evaluation_uri = cluster_runs.backend.host_path(worse[node_ids.EVALUATOR].outputs["evaluation"]["uri"])
    summary = evaluation_results.summarize(evaluation_uri)
    assert summary.has_baseline and not summary.blessed
    assert summary.metrics["candidate"]["auc"] < summary.metrics["baseline"]["auc"]
    pushed = worse[node_ids.PUSHER].outputs["pushed_model"]["metadata"]
    assert pushed["pushed"] == 0 and "not blessed" in pushed["push_reason"]


def _count_examples(path: str) -> int:
    import tensorflow as tf

    files = glob.glob(os.path.join(path, "Split-*", "*"))
    assert {os.path.basename(os.path.dirname(f)) for f in files} == {"Split-train", "Split-eval"}
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
