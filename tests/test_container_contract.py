"""What the image must provide for the compiled pipeline, checked without Docker.

The package is installed the way ./Dockerfile installs it, but cheaply: the
build context .dockerignore leaves is copied, built into a wheel and
installed with `pip install --no-deps --target`. Subprocesses then run from
outside the repository with `python -S` and PYTHONPATH=<that target>:<the
venv's site-packages>, so the editable install's .pth (which puts the
repository on sys.path) is not applied: whatever they import comes from the
wheel, as in the image.

The slow test goes further and runs the compiled spec's first tasks through
their own container commands, with the executor input KFP would give them
(in-cluster paths mapped to temporary directories, as volumes would be):
the Spark curation task on the bundled Seattle CSV, and ExampleGen's driver
hook followed by its executor.
"""
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
        return json_format.ParseDict(yaml.safe_load(f), pipeline_spec_pb2.PipelineSpec())


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


# --- running the compiled tasks ----------------------------------------------------------


def executor_input(spec, task: str, outputs_root: str, mounts: Dict[str, str],
                   overrides: Optional[Dict[str, str]] = None) -> str:
    """The ExecutorInput JSON KFP would hand `task`, in-cluster paths mapped by `mounts`.

    Parameters come from the task's constants and the pipeline's parameter
    defaults (or `overrides`, as a run's parameters would); each output
    artifact gets a URI under `<outputs_root>/<task>/`.
    """
    def mounted(value):
        for in_cluster, local in mounts.items():
            if isinstance(value, str) and value.startswith(in_cluster):
                return local + value[len(in_cluster):]
        return value

    task_spec = spec.root.dag.tasks[task]
    component = spec.components[task_spec.component_ref.name]
    parameters = {}
    for name, source in task_spec.inputs.parameters.items():
        if source.component_input_parameter:
            pipeline_input = source.component_input_parameter
            value = (overrides or {}).get(pipeline_input, json_format.MessageToDict(
                spec.root.input_definitions.parameters[pipeline_input].default_value))
        else:
            value = json_format.MessageToDict(source.runtime_value.constant)
        parameters[name] = mounted(value)
    task_dir = os.path.join(outputs_root, task)
    artifacts = {
        key: {"artifacts": [{
            "name": f"{task}-{key}",
            "type": json_format.MessageToDict(definition.artifact_type),
            "uri": os.path.join(task_dir, key),
        }]}
        for key, definition in component.output_definitions.artifacts.items()
    }
    return json.dumps({
        "inputs": {"parameterValues": parameters},
        "outputs": {"artifacts": artifacts,
                    "outputFile": os.path.join(task_dir, "executor_output.json")},
    })


def with_driver_artifacts(invocation: str) -> str:
    """The executor input with output artifacts replaced by those the driver wrote."""
    executor_input = json.loads(invocation)
    with open(executor_input["outputs"]["outputFile"]) as f:
        driver_output = json.load(f)
    for key, artifacts in driver_output["artifacts"].items():
        (updated,) = artifacts["artifacts"]
        (artifact,) = executor_input["outputs"]["artifacts"][key]["artifacts"]
        artifact["metadata"] = updated["metadata"]
    return json.dumps(executor_input)


def run_task(image, command, args, invocation: str) -> subprocess.CompletedProcess:
    """Runs `command args` as the container would, with `{{$}}` filled in."""
    assert list(command[:2]) == ["python", "-m"]
    return run_isolated(image, [*command[1:], *[invocation if a == "{{$}}" else a for a in args]])


@pytest.mark.slow
def test_compiled_curation_and_example_gen_tasks_run(image, spec, tmp_path):
    from vega_datasets import local_data

    data_root, outputs = str(tmp_path / "data"), str(tmp_path / "pipeline_root")
    os.makedirs(os.path.join(data_root, "raw"))
    shutil.copy(local_data.seattle_weather.filepath, os.path.join(data_root, "raw"))
    mounts = {IN_CLUSTER_DATA_ROOT: data_root}

    # 1. The Spark task on a run whose raw_data matches nothing: the job's message.
    curation = container_of(spec, "SparkCuration")
    bad = executor_input(spec, "SparkCuration", outputs, mounts,
                         {"raw_data": f"{IN_CLUSTER_DATA_ROOT}/raw/missing-*.csv"})
    failed = run_task(image, curation.command, curation.args, bad)
    assert failed.returncode != 0
    assert f"Input '{data_root}/raw/missing-*.csv' matches no file" in failed.stderr

    # 2. With the default raw_data and the run's station: one curated span.
    good = executor_input(spec, "SparkCuration", outputs, mounts, {"station": "seattle"})
    curated = run_task(image, curation.command, curation.args, good)
    assert curated.returncode == 0, curated.stderr[-4000:]
    with open(os.path.join(data_root, "curated", "span-1", "_manifest.json")) as f:
        rows_written = json.load(f)["rows_written"]
    assert rows_written == 1460  # 1,461 days, the last has no tomorrow

    # 3. ExampleGen: the pre-cache-check driver resolves the span, then the executor.
    example_gen = container_of(spec, "FileBasedExampleGen")
    invocation = executor_input(spec, "FileBasedExampleGen", outputs, mounts)
    hook = example_gen.lifecycle.pre_cache_check
    driver = run_task(image, hook.command, hook.args, invocation)
    assert driver.returncode == 0, driver.stderr[-4000:]
    # Like the orchestrator, give the executor the artifact the driver updated (span, version).
    invocation = with_driver_artifacts(invocation)
    executor = run_task(image, example_gen.command, example_gen.args, invocation)
    assert executor.returncode == 0, executor.stderr[-4000:]

    output_file = os.path.join(outputs, "FileBasedExampleGen", "executor_output.json")
    with open(output_file) as f:
        (examples,) = json.load(f)["artifacts"]["examples"]["artifacts"]
    assert examples["uri"] == os.path.join(outputs, "FileBasedExampleGen", "examples")
    assert examples["metadata"]["custom:span"] == 1  # set by the driver, kept by the executor
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    assert count_examples(examples["uri"]) == rows_written


def count_examples(uri: str) -> int:
    import tensorflow as tf

    files = glob.glob(os.path.join(uri, "Split-*", "*"))
    assert {os.path.basename(os.path.dirname(f)) for f in files} == {"Split-train", "Split-eval"}
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
