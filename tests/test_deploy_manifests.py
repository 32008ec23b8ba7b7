"""The TF Serving manifests in deploy/: rendered by kustomize, checked, schema-validated.

`kubectl kustomize` renders each target; the resources are validated offline
against the Kubernetes 1.32 OpenAPI schemas (kubernetes-validate, strict: an
unknown field fails) and checked against what the pipeline writes: the model
name, the models.config path and the volume TF Serving reads.
"""
import os
import re
import shutil
import subprocess

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from pipeline.kubeflow import settings as kf
from serving.model_dir import MODELS_CONFIG_FILE
from pipeline.config import DEFAULT_MODEL_NAME

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY_DIR = os.path.join(REPO_ROOT, "deploy")
TARGETS = ["base", "overlays/local", "overlays/production"]
KUBERNETES_VERSION = "1.32.0"  # the kubectl on the project's machines
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (with built-in kustomize) is not on PATH")


def render(target: str) -> dict:
    """{kind: resource} for `kubectl kustomize deploy/<target>` (one resource per kind)."""
    result = subprocess.run([KUBECTL, "kustomize", os.path.join(DEPLOY_DIR, target)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resources = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    by_kind = {doc["kind"]: doc for doc in resources}
    assert len(by_kind) == len(resources), "expected one resource of each kind"
    return by_kind


@pytest.fixture(scope="module")
def rendered():
    return {target: render(target) for target in TARGETS}


def server_container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def parse_args(args) -> dict:
    return dict(arg.lstrip("-").split("=", 1) for arg in args)


@pytest.mark.parametrize("target", TARGETS)
def test_every_resource_is_valid_for_kubernetes(rendered, target):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate (dev extra) is needed for offline schema validation")
    for resource in rendered[target].values():
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_deployment(rendered):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = rendered["base"]["Deployment"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    server_container(broken)["ports"][0]["containerPort"] = "8500"  # a string, not an integer
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    typo = yaml.safe_load(yaml.safe_dump(deployment))
    server_container(typo)["readinesProbe"] = server_container(typo).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def test_base_has_the_serving_stack(rendered):
    assert set(rendered["base"]) == {
        "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"}
    assert set(rendered["overlays/production"]) == set(rendered["base"]) | {"PodDisruptionBudget"}


def test_server_reads_the_models_config_the_pusher_writes(rendered):
    container = server_container(rendered["base"]["Deployment"])
    image, tag = container["image"].rsplit(":", 1)
    assert image == "tensorflow/serving" and re.fullmatch(r"\d+\.\d+\.\d+", tag), "pin a release tag"
    args = parse_args(container["args"])
    models_dir = kf.SERVER_MODELS_DIR
    assert args["model_config_file"] == f"{models_dir}/{MODELS_CONFIG_FILE}"
    assert args["model_config_file_poll_wait_seconds"] == "60"
    assert (args["port"], args["rest_api_port"]) == ("8500", "8501")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == models_dir and mounts["models"]["readOnly"]


def test_serving_volume_is_the_claim(rendered):
    resources = rendered["base"]
    volumes = {v["name"]: v for v in resources["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == resources["PersistentVolumeClaim"]["metadata"]["name"]
    assert resources["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert rendered["overlays/local"]["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_probes_use_the_rest_port(rendered):
    container = server_container(rendered["base"]["Deployment"])
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness == {"path": f"/v1/models/{DEFAULT_MODEL_NAME}", "port": "http"}
    liveness = container["livenessProbe"]["httpGet"]
    assert liveness["port"] == "http"
    # The liveness path is the Prometheus endpoint the monitoring config enables.
    monitoring = rendered["base"]["ConfigMap"]["data"]["monitoring.config"]
    assert f'path: "{liveness["path"]}"' in monitoring and "enable: true" in monitoring
    assert parse_args(container["args"])["monitoring_config_file"] == "/etc/tf-serving/monitoring.config"


def test_seed_models_config_is_valid_and_never_overwrites(rendered):
    resources = rendered["base"]
    seed = resources["ConfigMap"]["data"]["initial-models.config"]
    config = text_format.Parse(seed, model_server_config_pb2.ModelServerConfig())
    assert config.HasField("model_config_list") and not config.model_config_list.config
    (init,) = resources["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    assert "cp -n /etc/tf-serving/initial-models.config /models/models.config" in init["command"][-1]


def test_service_routes_both_ports_to_the_server_pods(rendered):
    resources = rendered["base"]
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in resources["Service"]["spec"]["ports"]}
    assert ports == {"grpc": (8500, "grpc"), "http": (8501, "http")}
    container_ports = {p["name"]: p["containerPort"] for p in server_container(resources["Deployment"])["ports"]}
    assert container_ports == {"grpc": 8500, "http": 8501}
    pod_labels = resources["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = resources["Service"]["spec"]["selector"]
    assert selector.items() <= pod_labels.items()
    assert resources["Deployment"]["spec"]["selector"]["matchLabels"] == selector


def test_hpa_scales_the_deployment_on_cpu(rendered):
    for target in TARGETS:
        hpa = rendered[target]["HorizontalPodAutoscaler"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "name": rendered[target]["Deployment"]["metadata"]["name"]}
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in rendered["base"]["Deployment"]["spec"], "the HPA owns the replica count"
    assert rendered["overlays/production"]["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2


def test_requests_and_limits_everywhere_and_smaller_locally(rendered):
    cpu_millis = {"m": 1, "": 1000}

    def millicores(value) -> int:
        number, unit = re.fullmatch(r"([\d.]+)(m?)", str(value)).groups()
        return int(float(number) * cpu_millis[unit])

    for target in TARGETS:
        spec = rendered[target]["Deployment"]["spec"]["template"]["spec"]
        for container in spec["containers"] + spec["initContainers"]:
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][kind].keys(), (target, container["name"])
    base = server_container(rendered["base"]["Deployment"])["resources"]
    local = server_container(rendered["overlays/local"]["Deployment"])["resources"]
    assert millicores(local["requests"]["cpu"]) < millicores(base["requests"]["cpu"])
    assert millicores(local["limits"]["cpu"]) < millicores(base["limits"]["cpu"])


def test_pod_disruption_budget_selects_the_server_pods(rendered):
    resources = rendered["overlays/production"]
    selector = resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    pod_labels = resources["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


@pytest.mark.parametrize("target, access", [("pipeline-data/base", "ReadWriteMany"),
                                            ("pipeline-data/local", "ReadWriteOnce")])
def test_pipeline_volumes_are_the_claims_the_compiled_pipeline_mounts(rendered, target, access):
    """deploy/pipeline-data and deploy/base create the claims kubeflow_runner mounts by default;
    the local overlay asks for what one-node clusters' provisioners (local-path) provide."""
    data = render(target)
    assert set(data) == {"PersistentVolumeClaim", "Job"}
    claim = data["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == kf.DEFAULT_DATA_CLAIM
    assert claim["spec"]["accessModes"] == [access]
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for resource in data.values():
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    serving = rendered["base"]["PersistentVolumeClaim"]
    assert serving["metadata"]["name"] == kf.DEFAULT_SERVING_CLAIM


def test_prepare_job_makes_both_volumes_writable_for_the_pipelines_user():
    """The Job runs as root once and hands the volumes to uid 1000 (the image's USER);
    tests/test_container_contract.py runs its command on fresh root-owned volumes."""
    job = render("pipeline-data/base")["Job"]
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 0
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert claims == {kf.DEFAULT_DATA_CLAIM, kf.DEFAULT_SERVING_CLAIM}
    (container,) = pod["containers"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {kf.DEFAULT_DATA_ROOT, kf.DEFAULT_SERVING_BASE}
    command = container["command"][-1]
    assert "chown 1000:1000" in command and f"{kf.DEFAULT_DATA_ROOT}/raw" in command
