"""What the image must provide for the compiled pipeline, checked without Docker.

The package is installed the way ./Dockerfile installs it, but cheaply: the
build context .dockerignore leaves is copied, built into a wheel and
installed with `pip install --no-deps --target`. Subprocesses then run from
outside the repository with `python -S` and PYTHONPATH=<that target>:<the
venv's site-packages>, so the editable install's .pth (which puts the
repository on sys.path) is not applied: whatever they import comes from the
wheel, as in the image.

The slow tests go further and run the whole compiled pipeline, every task
through its own container command with the executor input KFP's open-source
backend would give it (tests/kfp_launcher.py plays the backend: minio://
artifact URIs on the launcher's local paths, PVC mounts from the platform
spec, KFP's cache): a run whose raw data matches nothing, a first run on the
bundled Seattle CSV that pushes a version, and a run with an untrained
candidate that is compared with the served version and not pushed.
"""
import dataclasses
import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from typing import Dict, List, Optional

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import kubeflow_runner
from tests.kfp_launcher import LauncherSimulation, TaskResult

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_SITE = sysconfig.get_paths()["purelib"]
IMAGE_APP_DIR = "/app"  # where the Dockerfile copies the build context
IN_CLUSTER_DATA_ROOT = kubeflow_runner.DEFAULT_DATA_ROOT
OUR_PACKAGES = ("pipeline", "components", "models")


def dockerignore_patterns() -> List[str]:
    with open(os.path.join(REPO_ROOT, ".dockerignore")) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def ignored(relative_path: str, patterns: List[str]) -> bool:
    """Docker's matching for the patterns .dockerignore uses: anchored, `**/` = any depth."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in relative_path.split("/")):
                return True
        elif fnmatch.fnmatch(relative_path, pattern):
            return True
    return False


def copy_build_context(destination: str) -> None:
    patterns = dockerignore_patterns()
    for directory, subdirectories, files in os.walk(REPO_ROOT):
        relative_dir = os.path.relpath(directory, REPO_ROOT)
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        subdirectories[:] = [d for d in subdirectories if not ignored(relative_dir + d, patterns)]
        for name in files:
            if not ignored(relative_dir + name, patterns):
                target = os.path.join(destination, relative_dir, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(os.path.join(directory, name), target)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """{context, site, outside}: the build context, the installed package, a neutral cwd."""
    root = tmp_path_factory.mktemp("image")
    context, wheels, site, outside = (str(root / name) for name in ("context", "wheels", "site", "outside"))
    os.makedirs(outside)
    copy_build_context(context)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", wheels, context],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = glob.glob(os.path.join(wheels, "*.whl"))
    install = subprocess.run(pip + ["install", "--no-deps", "--target", site, wheel],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    return {"context": context, "site": site, "outside": outside}


def run_isolated(image, args: List[str], timeout: int = 600, env: Optional[Dict[str, str]] = None,
                 with_package: bool = True) -> subprocess.CompletedProcess:
    """`python -S <args>` outside the repo, seeing only the installed wheel and the venv."""
    path = [image["site"], VENV_SITE] if with_package else [VENV_SITE]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(path), PYTHONNOUSERSITE="1",
                       # Spark's Python workers: this interpreter, isolated the same way.
                       PYSPARK_PYTHON=sys.executable, **(env or {}))
    return subprocess.run([sys.executable, "-S", *args], cwd=image["outside"], env=environment,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> pipeline_spec_pb2.PipelineSpec:
    path = str(tmp_path_factory.mktemp("spec") / "pipeline.yaml")
    assert kubeflow_runner.main(["--image", "rain-tomorrow:contract", "--pipeline-root",
                                 "gs://bucket/root", "--output", path]) == 0
    with open(path) as f:
        return json_format.ParseDict(next(yaml.safe_load_all(f)), pipeline_spec_pb2.PipelineSpec())


def deployment(spec) -> pipeline_spec_pb2.PipelineDeploymentConfig:
    return json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                 pipeline_spec_pb2.PipelineDeploymentConfig())


def container_of(spec, task: str):
    label = spec.components[spec.root.dag.tasks[task].component_ref.name].executor_label
    return deployment(spec).executors[label].container


def referenced_code(spec) -> Dict[str, List[str]]:
    """Executor classes, `-m` modules and user functions the spec names."""
    classes, modules = set(), set()
    for executor in deployment(spec).executors.values():
        if not executor.HasField("container"):
            continue
        container = executor.container
        args = list(container.args)
        classes.add(args[args.index("--executor_class_path") + 1])
        for command in (container.command, container.lifecycle.pre_cache_check.command):
            if "-m" in command:
                modules.add(command[list(command).index("-m") + 1])
    functions = {p.runtime_value.constant.string_value
                 for task in spec.root.dag.tasks.values()
                 for name, p in task.inputs.parameters.items() if name in ("preprocessing_fn", "run_fn")}
    return {"classes": sorted(classes), "modules": sorted(modules), "functions": sorted(functions)}


IMPORT_CHECK = textwrap.dedent("""
    import importlib.util, json, sys
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
    print(json.dumps({"origins": origins, "sys_path": sys.path}))
""")


def test_wheel_alone_provides_all_code_the_spec_names(image, spec):
    names = referenced_code(spec)
    assert "components.spark_curation.component.SparkCuration_Executor" in names["classes"]
    assert names["functions"] == ["models.preprocessing.preprocessing_fn", "models.trainer.run_fn"]
    result = run_isolated(image, ["-c", IMPORT_CHECK, json.dumps(names)], timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    resolved = [os.path.realpath(os.path.join(image["outside"], p)) for p in report["sys_path"]]
    assert REPO_ROOT not in resolved, "the repository itself is on sys.path"
    for name, origin in report["origins"].items():
        expected = image["site"] if name.split(".")[0] in OUR_PACKAGES else VENV_SITE
        assert origin.startswith(expected + os.sep), f"{name} imported from {origin}"


def test_without_the_wheel_the_repository_is_not_importable(image):
    """The control: the editable install is really out of the picture."""
    result = run_isolated(image, ["-c", "import pipeline.pipeline"], with_package=False, timeout=60)
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_wheel_holds_the_runners_and_every_package(image):
    installed = set(os.listdir(image["site"]))
    assert {"kubeflow_runner.py", "local_runner.py", *OUR_PACKAGES} <= installed
    for package in OUR_PACKAGES:
        sources = {os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, package, "**", "*.py"), recursive=True)}
        missing = [s for s in sources if not os.path.exists(os.path.join(image["site"], s))]
        assert not missing, f"not in the wheel: {missing}"


def test_schema_is_where_the_spec_expects_it_in_the_image(image, spec):
    from tensorflow_metadata.proto.v0 import schema_pb2
    from google.protobuf import text_format

    schema_file = spec.root.dag.tasks["ImportSchemaGen"].inputs.parameters["schema_file"]
    in_image = schema_file.runtime_value.constant.string_value
    assert in_image.startswith(IMAGE_APP_DIR + "/")
    in_context = os.path.join(image["context"], os.path.relpath(in_image, IMAGE_APP_DIR))
    with open(in_context) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    assert schema.feature


def test_dockerfile_installs_the_context_with_our_python_and_pins():
    with open(os.path.join(REPO_ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    version = re.match(r"python:(\d+\.\d+)\.(\d+)-slim", base)
    assert version, f"expected a pinned python:X.Y.Z-slim base, got {base}"
    assert version.group(1) == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"COPY . {IMAGE_APP_DIR}" in dockerfile
    assert f"-c requirements/constraints.txt {IMAGE_APP_DIR}" in dockerfile
    assert "openjdk-17-jre-headless" in dockerfile  # pyspark


# --- running the compiled pipeline ------------------------------------------------------


@pytest.fixture(scope="module")
def compiled_package(tmp_path_factory):
    """(PipelineSpec, platform spec) of the default YAML compile: KFP with launcher I/O."""
    path = str(tmp_path_factory.mktemp("package") / "pipeline.yaml")
    assert kubeflow_runner.main(["--image", "rain-tomorrow:contract", "--pipeline-root",
                                 "minio://mlpipeline/v2/artifacts", "--output", path]) == 0
    with open(path) as f:
        pipeline_doc, platform = yaml.safe_load_all(f)
    return json_format.ParseDict(pipeline_doc, pipeline_spec_pb2.PipelineSpec()), platform


@dataclasses.dataclass
class ClusterRuns:
    simulation: LauncherSimulation
    data: str
    models: str
    missing_raw: Dict[str, TaskResult]
    curated_after_missing_raw: bool
    first: Dict[str, TaskResult]
    worse: Dict[str, TaskResult]


@pytest.fixture(scope="module")
def cluster_runs(image, compiled_package, tmp_path_factory) -> ClusterRuns:
    """Three runs of the compiled package, task by task through each container command."""
    from vega_datasets import local_data

    spec, platform = compiled_package
    root = tmp_path_factory.mktemp("cluster")
    data, models, local_root = (str(root / name) for name in ("data-volume", "models-volume", "pod"))
    os.makedirs(os.path.join(data, "raw"))
    os.makedirs(models)
    shutil.copy(local_data.seattle_weather.filepath, os.path.join(data, "raw"))
    simulation = LauncherSimulation(
        spec, platform, local_root,
        claims={kubeflow_runner.DEFAULT_DATA_CLAIM: data, kubeflow_runner.DEFAULT_SERVING_CLAIM: models},
        image_paths={IMAGE_APP_DIR: image["context"]},
        unmapped=(kubeflow_runner.SERVER_MODELS_DIR + "/",),
        run_command=lambda argv, env: run_isolated(image, argv, timeout=900, env=env))
    missing_raw = simulation.run({"raw_data": f"{IN_CLUSTER_DATA_ROOT}/raw/missing-*.csv"})
    curated_after_missing_raw = os.path.exists(os.path.join(data, "curated"))
    first = simulation.run({"station": "seattle", "train_args": '{"num_steps": 300}'})
    # One training step: an essentially untrained candidate against the served model.
    worse = simulation.run({"station": "seattle", "train_args": '{"num_steps": 1}'})
    return ClusterRuns(simulation, data, models, missing_raw, curated_after_missing_raw, first, worse)


def _failures(results: Dict[str, TaskResult]) -> str:
    return "\n".join(f"{name}: {r.stderr[-3000:]}" for name, r in results.items() if r.status == "FAILED")


def _versions(models: str) -> List[str]:
    model_dir = os.path.join(models, "rain_tomorrow")
    return sorted(v for v in os.listdir(model_dir) if v.isdigit()) if os.path.isdir(model_dir) else []


@pytest.mark.slow
def test_a_run_with_missing_raw_data_stops_at_the_spark_task(cluster_runs):
    statuses = {name: r.status for name, r in cluster_runs.missing_raw.items()}
    assert statuses.pop("SparkCuration") == "FAILED"
    assert set(statuses) <= {"ImportSchemaGen"}  # the only task that does not wait for it
    result = cluster_runs.missing_raw["SparkCuration"]
    assert f"Input '{cluster_runs.data}/raw/missing-*.csv' matches no file" in result.stderr
    assert not cluster_runs.curated_after_missing_raw


@pytest.mark.slow
def test_compiled_pipeline_runs_every_task_on_the_launchers_paths(cluster_runs, compiled_package):
    spec, _ = compiled_package
    first = cluster_runs.first
    statuses = {n: r.status for n, r in first.items()}
    assert set(statuses) == set(spec.root.dag.tasks), _failures(first)
    # ImportSchemaGen already ran (same inputs) beside the failed Spark task of the run before.
    assert statuses.pop("ImportSchemaGen") == "CACHED"
    assert set(statuses.values()) == {"COMPLETE"}, _failures(first)
    simulation = cluster_runs.simulation
    for name, result in first.items():
        run = "run-1" if result.status == "CACHED" else "run-2"
        for key, artifact in result.outputs.items():
            # Recorded at its object-store URI, its content where the launcher uploads from.
            assert artifact["uri"] == f"minio://mlpipeline/v2/artifacts/{run}/{name}/{key}"
            if name != "pusher":  # a pusher that pushes writes only properties
                assert os.path.isdir(simulation.local_path(artifact["uri"])), (name, key)
    examples = first["FileBasedExampleGen"].outputs["examples"]
    assert examples["metadata"]["custom:span"] == 1  # resolved by our executor: no driver hook on KFP
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    with open(os.path.join(cluster_runs.data, "curated", "span-1", "_manifest.json")) as f:
        assert count_examples(simulation.local_path(examples["uri"])) == json.load(f)["rows_written"] == 1460
    # Custom properties travel as artifact metadata (ExampleGen's span is prefixed
    # "custom:" because Examples also has a declared `span` property).
    assert first["baseline_model"].outputs["model"]["metadata"]["baseline_found"] == 0
    assert first["Evaluator"].outputs["blessing"]["metadata"]["blessed"] == 1
    (version,) = _versions(cluster_runs.models)
    version_dir = os.path.join(cluster_runs.models, "rain_tomorrow", version)
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    with open(os.path.join(version_dir, "push_metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["model_uri"] == simulation.local_path(first["Trainer"].outputs["model"]["uri"])
    assert metadata["data"][0]["span"] == 1
    with open(os.path.join(cluster_runs.models, "models.config")) as f:
        assert 'base_path: "/models/rain_tomorrow"' in f.read()  # TF Serving's view of the volume


@pytest.mark.slow
def test_worse_candidate_is_compared_with_the_served_version_and_not_pushed(cluster_runs):
    from components import evaluation_results

    worse = cluster_runs.worse
    assert all(r.status in ("COMPLETE", "CACHED") for r in worse.values()), _failures(worse)
    # New data cannot be seen in a KFP cache key without the driver hook: both always run.
    assert worse["SparkCuration"].status == worse["FileBasedExampleGen"].status == "COMPLETE"
    (version,) = _versions(cluster_runs.models)
    baseline = worse["baseline_model"].outputs["model"]["metadata"]
    assert baseline["baseline_found"] == 1 and baseline["baseline_version"] == int(version)
    evaluation_uri = cluster_runs.simulation.local_path(worse["Evaluator"].outputs["evaluation"]["uri"])
    summary = evaluation_results.summarize(evaluation_uri)
    assert summary.has_baseline and not summary.blessed
    assert summary.metrics["candidate"]["auc"] < summary.metrics["baseline"]["auc"]
    pushed = worse["pusher"].outputs["pushed_model"]["metadata"]
    assert pushed["pushed"] == 0 and "not blessed" in pushed["push_reason"]


def count_examples(uri: str) -> int:
    import tensorflow as tf

    files = glob.glob(os.path.join(uri, "Split-*", "*"))
    assert {os.path.basename(os.path.dirname(f)) for f in files} == {"Split-train", "Split-eval"}
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
