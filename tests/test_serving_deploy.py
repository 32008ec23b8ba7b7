"""deploy/prediction-service: rendered by kustomize, schema-validated, wired to TF Serving.

Like tests/test_deploy_manifests.py: `kubectl kustomize` renders, and
kubernetes-validate checks every resource offline against the Kubernetes 1.32
schemas (strict). Then the wiring: the container's arguments parse with the
service's own flag parser, its TF Serving URL names the Service and port
deploy/base renders, the probes hit routes the app has (readiness is 503
until a model is loaded), the HPA scales this Deployment and the volume is
deploy/base's models claim, read-only.
"""
import os
import shutil
import subprocess

import pytest
import yaml
from fastapi.testclient import TestClient

from serving.__main__ import parse_flags
from serving.api import create_app
from serving.inprocess import InProcessBackend

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBERNETES_VERSION = "1.32.0"
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (with built-in kustomize) is not on PATH")


def render(target: str) -> dict:
    result = subprocess.run([KUBECTL, "kustomize", os.path.join(REPO_ROOT, "deploy", target)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resources = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    by_kind = {doc["kind"]: doc for doc in resources}
    assert len(by_kind) == len(resources)
    return by_kind


@pytest.fixture(scope="module")
def rendered():
    return render("prediction-service")


@pytest.fixture(scope="module")
def container(rendered):
    (only,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def expand(args, env):
    """Kubernetes' $(VAR) expansion of container args from the container's env."""
    values = {e["name"]: e["value"] for e in env}
    out = []
    for arg in args:
        for name, value in values.items():
            arg = arg.replace(f"$({name})", value)
        out.append(arg)
    return out


def test_every_resource_is_valid_for_kubernetes(rendered):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (dev extra) validates offline")
    assert set(rendered) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for resource in rendered.values():
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_service_talks_to_tf_serving_of_deploy_base(rendered, container):
    base = render("base")
    config = parse_flags(expand(container["args"], container["env"]))
    assert container["command"] == ["python", "-m", "serving"]
    assert config.backend == "tfserving"
    tf_service = base["Service"]
    port = next(p["port"] for p in tf_service["spec"]["ports"] if p["name"] == "http")
    assert config.tf_serving_url == f"http://{tf_service['metadata']['name']}:{port}"
    assert config.tf_serving_url == "http://rain-tomorrow-serving:8501"
    assert config.model_name == "rain_tomorrow"
    assert (config.host, config.port) == ("0.0.0.0", container["ports"][0]["containerPort"])

    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert mount["readOnly"] is True and mount["mountPath"] == config.serving_base
    claim = base["PersistentVolumeClaim"]["metadata"]["name"]
    spec = rendered["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == claim


def test_service_and_hpa_point_at_the_pods(rendered, container):
    deployment, service, hpa = (rendered[k] for k in
                                ("Deployment", "Service", "HorizontalPodAutoscaler"))
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # the HPA owns it


def test_readiness_means_a_model_is_loaded(container, tmp_path):
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    backend = InProcessBackend(str(tmp_path / "nothing-pushed"), poll_seconds=60)
    with TestClient(create_app(backend)) as client:
        assert client.get("/healthz").status_code == 503  # not ready: no model
        assert client.get("/livez").status_code == 200  # but alive
