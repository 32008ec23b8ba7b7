"""Kubernetes executors for the Spark curation task, offline (no cluster here).

Checks the conf entries `cluster.kubernetes_spark_conf` returns against the
keys Spark 3.5's own jar defines (asked from the JVM, not spelled from
memory), the run-time placeholders, the flags, the executor pod template and
the executor entrypoint, and that the component hands `spark_conf` to the
session builder.
"""
import argparse
import json
import os
import subprocess
import sys

import pyspark
import pytest
import yaml

from components.spark_curation import cluster, component, job, k8s_executor

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = cluster.KubernetesExecutors(
    image="registry.example.com/rain-tomorrow:1.2.3", namespace="ml",
    executor_instances=3, executor_cores=2, executor_memory="3g",
    data_volume_claim="rain-tomorrow-data", data_mount_path="/mnt/data",
    driver_pod_name="${env:POD_NAME}")
PVC = "spark.kubernetes.executor.volumes.persistentVolumeClaim.data"


def test_conf_has_every_setting():
    conf = cluster.kubernetes_spark_conf(SETTINGS)
    assert conf == {
        "spark.submit.deployMode": "client",
        "spark.kubernetes.container.image": "registry.example.com/rain-tomorrow:1.2.3",
        "spark.kubernetes.namespace": "ml",
        "spark.kubernetes.authenticate.driver.serviceAccountName": "rain-tomorrow-spark",
        "spark.kubernetes.authenticate.executor.serviceAccountName": "rain-tomorrow-spark",
        "spark.executor.instances": "3",
        "spark.executor.cores": "2",
        "spark.executor.memory": "3g",
        "spark.driver.host": "${hostname-ip}",
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.driver.port": "7078",
        "spark.driver.blockManager.port": "7079",
        "spark.kubernetes.driver.pod.name": "${env:POD_NAME}",
        "spark.kubernetes.executor.podTemplateFile": "${executor-pod-template}",
        "spark.kubernetes.executor.podTemplateContainerName": "spark-executor",
        f"{PVC}.options.claimName": "rain-tomorrow-data",
        f"{PVC}.mount.path": "/mnt/data",
        f"{PVC}.mount.readOnly": "false",
    }


def test_without_claim_or_pod_name_nothing_is_mounted_or_owned():
    conf = cluster.kubernetes_spark_conf(cluster.KubernetesExecutors(image="img:1"))
    assert not [key for key in conf if ".volumes." in key]
    assert "spark.kubernetes.driver.pod.name" not in conf
    assert conf["spark.kubernetes.namespace"] == "kubeflow"


@pytest.mark.parametrize("change, message", [
    ({"image": ""}, "image"),
    ({"executor_instances": 0}, "executor_instances"),
    ({"executor_cores": 0}, "executor_cores"),
    ({"executor_memory": "2 GB"}, "executor_memory"),
    ({"block_manager_port": 7078}, "must differ"),
    ({"data_volume_claim": "c", "data_mount_path": "mnt/data"}, "absolute"),
])
def test_invalid_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        cluster.KubernetesExecutors(**{"image": "img:1", **change})


def test_every_key_is_one_spark_3_5_defines():
    """Each emitted key is a ConfigEntry (or volume-key prefix) of the bundled Spark jars.

    Asked from a bare JVM gateway (no SparkSession, so no session shared with
    other tests is touched).
    """
    from pyspark.java_gateway import launch_gateway

    gateway = launch_gateway()
    try:
        jvm = gateway.jvm
        k8s = getattr(jvm.org.apache.spark.deploy.k8s, "Config$").__getattr__("MODULE$")
        core = getattr(jvm.org.apache.spark.internal.config, "package$").__getattr__("MODULE$")
        known = {entry().key() for entry in (
            k8s.CONTAINER_IMAGE, k8s.KUBERNETES_NAMESPACE, k8s.KUBERNETES_DRIVER_SERVICE_ACCOUNT_NAME,
            k8s.KUBERNETES_EXECUTOR_SERVICE_ACCOUNT_NAME, k8s.KUBERNETES_DRIVER_POD_NAME,
            k8s.KUBERNETES_EXECUTOR_PODTEMPLATE_FILE, k8s.KUBERNETES_EXECUTOR_PODTEMPLATE_CONTAINER_NAME,
            core.EXECUTOR_INSTANCES, core.EXECUTOR_CORES, core.EXECUTOR_MEMORY, core.DRIVER_HOST_ADDRESS,
            core.DRIVER_BIND_ADDRESS, core.DRIVER_PORT, core.DRIVER_BLOCK_MANAGER_PORT,
            core.SUBMIT_DEPLOY_MODE)}
        volume_prefix = (k8s.KUBERNETES_EXECUTOR_VOLUMES_PREFIX() + k8s.KUBERNETES_VOLUMES_PVC_TYPE()
                         + ".data.")
        volume_keys = {volume_prefix + suffix for suffix in (
            k8s.KUBERNETES_VOLUMES_OPTIONS_CLAIM_NAME_KEY(), k8s.KUBERNETES_VOLUMES_MOUNT_PATH_KEY(),
            k8s.KUBERNETES_VOLUMES_MOUNT_READONLY_KEY())}
        version = getattr(jvm.org.apache.spark, "package$").__getattr__("MODULE$").SPARK_VERSION()
    finally:
        gateway.shutdown()
        gateway.proc.stdin.close()  # the gateway JVM exits on EOF
        gateway.proc.wait(timeout=60)
    assert version.startswith("3.5.")
    assert set(cluster.kubernetes_spark_conf(SETTINGS)) == known | volume_keys


def test_placeholders_are_resolved_in_the_pod():
    conf = cluster.kubernetes_spark_conf(SETTINGS)
    resolved = cluster.resolve_conf(conf, {"POD_NAME": "curation-pod-7"},
                                    hostname_ip=lambda: "10.1.2.3",
                                    write_pod_template=lambda: "/tmp/template.yaml")
    assert resolved["spark.driver.host"] == "10.1.2.3"
    assert resolved["spark.kubernetes.driver.pod.name"] == "curation-pod-7"
    assert resolved["spark.kubernetes.executor.podTemplateFile"] == "/tmp/template.yaml"
    untouched = {k: v for k, v in conf.items() if "${" not in v}
    assert {k: resolved[k] for k in untouched} == untouched


def test_downward_api_driver_host_and_missing_variables():
    settings = cluster.KubernetesExecutors(image="img:1", driver_host="${env:POD_IP}")
    conf = cluster.kubernetes_spark_conf(settings)
    resolved = cluster.resolve_conf(conf, {"POD_IP": "10.9.8.7"}, write_pod_template=lambda: "t")
    assert resolved["spark.driver.host"] == "10.9.8.7"
    with pytest.raises(ValueError, match=r"spark.driver.host needs the environment variable POD_IP"):
        cluster.resolve_conf(conf, {}, write_pod_template=lambda: "t")
    with pytest.raises(ValueError, match=r"unknown placeholder \$\{pod-ip\}"):
        cluster.resolve_conf({"spark.driver.host": "${pod-ip}"}, {})


def test_default_resolvers_write_a_loadable_template_and_find_an_address():
    resolved = cluster.resolve_conf(cluster.kubernetes_spark_conf(SETTINGS), {"POD_NAME": "p"})
    path = resolved["spark.kubernetes.executor.podTemplateFile"]
    try:
        with open(path) as f:
            template = yaml.safe_load(f)
    finally:
        os.remove(path)
    assert template == cluster.executor_pod_template()
    (container,) = template["spec"]["containers"]
    assert container["name"] == resolved["spark.kubernetes.executor.podTemplateContainerName"]
    assert container["command"] == ["python", "-m", "components.spark_curation.k8s_executor"]
    assert resolved["spark.driver.host"].count(".") == 3  # an IPv4 address


def test_pod_template_is_a_valid_pod():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(cluster.executor_pod_template(), "1.32.0", strict=True)


def parse(argv, master="k8s://https://kubernetes.default.svc", **fallbacks):
    parser = cluster.add_spark_kubernetes_flags(argparse.ArgumentParser())
    parser.add_argument("--image")  # a runner's own flag next to ours: no clash
    parser.add_argument("--namespace")
    flags = parser.parse_args(argv)
    return cluster.kubernetes_settings_from_flags(flags, master, **fallbacks)


def test_flags_build_the_settings_with_the_runners_fallbacks():
    settings = parse([], image="img:9", namespace="team", data_volume_claim="rain-tomorrow-data",
                     data_mount_path="/mnt/data")
    assert settings == cluster.KubernetesExecutors(
        image="img:9", namespace="team", data_volume_claim="rain-tomorrow-data",
        data_mount_path="/mnt/data")
    settings = parse(["--spark-k8s-image", "spark:2", "--spark-k8s-namespace", "spark",
                      "--spark-k8s-service-account", "sa", "--spark-executor-instances", "4",
                      "--spark-executor-cores", "2", "--spark-executor-memory", "6g",
                      "--spark-k8s-data-volume-claim", "other", "--spark-k8s-driver-host",
                      "${env:POD_IP}", "--spark-k8s-driver-pod-name", "${env:POD_NAME}",
                      "--spark-driver-port", "8001", "--spark-block-manager-port", "8002"],
                     image="img:9", data_volume_claim="rain-tomorrow-data", data_mount_path="/data")
    assert settings == cluster.KubernetesExecutors(
        image="spark:2", namespace="spark", service_account="sa", executor_instances=4,
        executor_cores=2, executor_memory="6g", data_volume_claim="other", data_mount_path="/data",
        driver_host="${env:POD_IP}", driver_pod_name="${env:POD_NAME}", driver_port=8001,
        block_manager_port=8002)


@pytest.mark.parametrize("master", ["local[*]", "spark://127.0.0.1:7077", None, ""])
def test_no_kubernetes_settings_for_other_masters(master):
    assert parse([], master=master, image="img") is None
    assert cluster.spark_conf_json(None) == ""


def test_spark_conf_json_round_trips():
    text = cluster.spark_conf_json(SETTINGS)
    assert cluster.parse_conf_json(text) == cluster.kubernetes_spark_conf(SETTINGS)
    assert cluster.parse_conf_json("") == {} and cluster.parse_conf_json("  ") == {}
    assert cluster.parse_conf_json('{"a": 1, "b": true}') == {"a": "1", "b": "true"}
    for bad in ("[1]", "{", '{"a": {"b": 1}}'):
        with pytest.raises(ValueError):
            cluster.parse_conf_json(bad)


def test_component_passes_spark_conf_to_the_session_builder(monkeypatch, tmp_path):
    seen = {}

    def fake_run_curation(paths, output_dir, **kwargs):
        seen.update(kwargs, paths=paths, output_dir=output_dir)
        return job.CurationResult(1, True, 0, 0, 0, {}, "span", None, paths)

    monkeypatch.setattr(component, "run_curation", fake_run_curation)
    component.curate("a.csv, b/*.csv", "/mnt/data", "", cluster.IN_CLUSTER_MASTER,
                     cluster.spark_conf_json(SETTINGS))
    assert seen["master"] == cluster.IN_CLUSTER_MASTER
    assert seen["paths"] == ["a.csv", "b/*.csv"]
    assert seen["spark_conf"] == cluster.kubernetes_spark_conf(SETTINGS)
    component.curate("a.csv", "/mnt/data", "", "local[*]")
    assert seen["spark_conf"] == {}


def test_component_declares_the_spark_conf_parameter():
    parameters = component.SparkCuration.SPEC_CLASS.PARAMETERS
    assert "spark_conf" in parameters and "spark_master" in parameters
    task = component.SparkCuration(raw_data="a.csv", output_dir="/mnt/data",
                                   spark_conf=cluster.spark_conf_json(SETTINGS))
    assert json.loads(task.exec_properties["spark_conf"])["spark.executor.instances"] == "3"


def test_job_session_gets_the_resolved_conf(monkeypatch):
    """run_curation's own session is built with the resolved entries."""
    applied = {}

    class Builder:
        def appName(self, name):
            return self

        def master(self, master):
            applied["master"] = master
            return self

        def config(self, key, value):
            applied[key] = value
            return self

        def getOrCreate(self):
            return type("Session", (), {"stop": lambda self: applied.setdefault("stopped", True)})()

    monkeypatch.setattr(job.SparkSession, "builder", Builder())
    monkeypatch.setattr(job.SparkSession, "getActiveSession", staticmethod(lambda: None))
    monkeypatch.setenv("POD_IP", "10.0.0.5")
    monkeypatch.setattr(job, "_launches_jvm", lambda: True)  # as in a fresh process
    with job._session(None, "k8s://https://kubernetes.default.svc",
                      {"spark.driver.host": "${env:POD_IP}", "spark.executor.instances": "2"}):
        pass
    # This call launches the driver JVM, so its start-up options
    # (components/spark_curation/jvm_startup.py) come along; a JVM already
    # running (a gateway in the process) gets none.
    from components.spark_curation import jvm_startup

    assert applied == {"master": "k8s://https://kubernetes.default.svc",
                       "spark.driver.host": "10.0.0.5", "spark.executor.instances": "2",
                       "spark.driver.extraJavaOptions": " ".join(jvm_startup.java_options(0)),
                       "stopped": True}
    applied.clear()
    monkeypatch.setattr(job, "_launches_jvm", lambda: False)
    with job._session(None, "local[1]", {}):
        pass
    assert "spark.driver.extraJavaOptions" not in applied


def test_cli_accepts_spark_master_and_conf():
    flags = job.parse_flags(["--input", "a.csv", "--output-dir", "o", "--spark-master",
                             "spark://127.0.0.1:7077", "--spark-conf", '{"spark.executor.memory": "1g"}'])
    assert flags.master == "spark://127.0.0.1:7077"
    assert flags.spark_conf == {"spark.executor.memory": "1g"}
    assert job.parse_flags(["--input", "a.csv", "--output-dir", "o", "--master", "local[2]"]).master == "local[2]"
    with pytest.raises(SystemExit):
        job.parse_flags(["--input", "a.csv", "--output-dir", "o", "--spark-conf", "[1]"])


# ---------------------------------------------------------------- executor entrypoint

EXECUTOR_ENV = {
    "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@10.0.0.5:7078",
    "SPARK_EXECUTOR_ID": "2", "SPARK_EXECUTOR_CORES": "1", "SPARK_EXECUTOR_MEMORY": "2g",
    "SPARK_APPLICATION_ID": "spark-abc", "SPARK_EXECUTOR_POD_IP": "10.0.0.9",
    "SPARK_RESOURCE_PROFILE_ID": "0", "SPARK_EXECUTOR_POD_NAME": "curation-exec-2",
    "SPARK_CONF_DIR": "/opt/spark/conf",
    "SPARK_JAVA_OPT_10": "-Dspark.driver.port=7078", "SPARK_JAVA_OPT_2": "-Xss4m",
    "SPARK_JAVA_OPT_0": "-Dspark.app.id=spark-abc",
}


def test_executor_command_is_spark_entrypoints():
    command = k8s_executor.executor_command(EXECUTOR_ENV, "/spark", java="/jdk/bin/java")
    assert command == [
        "/jdk/bin/java", "-Dspark.app.id=spark-abc", "-Xss4m", "-Dspark.driver.port=7078",
        "-Xms2g", "-Xmx2g", "-cp", "/opt/spark/conf:/spark/jars/*",
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url", "spark://CoarseGrainedScheduler@10.0.0.5:7078", "--executor-id", "2",
        "--cores", "1", "--app-id", "spark-abc", "--hostname", "10.0.0.9",
        "--resourceProfileId", "0", "--podName", "curation-exec-2"]


def test_executor_backend_class_is_in_the_bundled_jars():
    home = os.path.dirname(os.path.abspath(pyspark.__file__))
    jar = [n for n in os.listdir(os.path.join(home, "jars")) if n.startswith("spark-kubernetes_")]
    assert jar, "pyspark has no spark-kubernetes jar"
    import zipfile

    with zipfile.ZipFile(os.path.join(home, "jars", jar[0])) as archive:
        assert k8s_executor.EXECUTOR_BACKEND.replace(".", "/") + ".class" in archive.namelist()


def test_executor_entrypoint_refuses_to_run_outside_an_executor_pod():
    with pytest.raises(ValueError, match="SPARK_DRIVER_URL"):
        k8s_executor.executor_command({}, "/spark")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
    done = subprocess.run([sys.executable, "-m", "components.spark_curation.k8s_executor", "executor"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a Spark executor pod" in done.stderr
