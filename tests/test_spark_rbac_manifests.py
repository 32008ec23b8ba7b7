"""deploy/spark-rbac: what lets the curation task's Spark driver start executor pods.

Rendered with `kubectl kustomize` and validated offline against the
Kubernetes 1.32 OpenAPI schemas (kubernetes-validate, strict), like the TF
Serving manifests (tests/test_deploy_manifests.py); then checked against what
the Spark conf of `components/spark_curation/cluster.py` asks for.
"""
import os
import shutil
import subprocess

import pytest
import yaml

from components.spark_curation import cluster

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RBAC_DIR = os.path.join(REPO_ROOT, "deploy", "spark-rbac")
KUBERNETES_VERSION = "1.32.0"
KUBECTL = shutil.which("kubectl")
# What a client-mode Spark 3.5 driver calls: executor pods (create, watch,
# delete one, delete by label on stop), the executors' conf ConfigMap, and
# `get` of its own pod for owner references.
DRIVER_NEEDS = {
    "pods": {"create", "get", "list", "watch", "delete", "deletecollection"},
    "configmaps": {"create", "get", "list", "watch", "delete", "deletecollection"},
    "services": {"create", "get", "list", "watch", "delete", "deletecollection"},
}

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (with built-in kustomize) is not on PATH")


@pytest.fixture(scope="module")
def rendered() -> dict:
    """{kind: resource} of `kubectl kustomize deploy/spark-rbac`."""
    result = subprocess.run([KUBECTL, "kustomize", RBAC_DIR], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    resources = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    by_kind = {doc["kind"]: doc for doc in resources}
    assert len(by_kind) == len(resources), "expected one resource of each kind"
    return by_kind


def test_the_three_rbac_resources(rendered):
    assert set(rendered) == {"ServiceAccount", "Role", "RoleBinding"}


def test_every_resource_is_valid_for_kubernetes(rendered):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate (dev extra) is needed for offline schema validation")
    for resource in rendered.values():
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_role(rendered):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = yaml.safe_load(yaml.safe_dump(rendered["Role"]))
    broken["rules"][0]["verbs"] = "create"  # a string, not a list
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    typo = yaml.safe_load(yaml.safe_dump(rendered["RoleBinding"]))
    typo["roleref"] = typo.pop("roleRef")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def granted(role: dict) -> dict:
    """{resource: verbs} of the core API group."""
    result = {}
    for rule in role["rules"]:
        if "" in rule.get("apiGroups", []):
            for resource in rule["resources"]:
                result.setdefault(resource, set()).update(rule["verbs"])
    return result


def test_role_lets_the_driver_manage_executors_and_nothing_wider(rendered):
    role = rendered["Role"]
    rights = granted(role)
    for resource, verbs in DRIVER_NEEDS.items():
        assert verbs <= rights.get(resource, set()), resource
    assert set(rights) == set(DRIVER_NEEDS)
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert rule["apiGroups"] == [""]
    assert "secrets" not in rights


def test_binding_gives_the_role_to_the_spark_account_in_its_namespace(rendered):
    account, role, binding = rendered["ServiceAccount"], rendered["Role"], rendered["RoleBinding"]
    namespace = account["metadata"]["namespace"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    subjects = {(s["kind"], s["name"], s["namespace"]) for s in binding["subjects"]}
    assert ("ServiceAccount", account["metadata"]["name"], namespace) in subjects
    # KFP standalone runs pipeline pods (the driver) as pipeline-runner.
    assert ("ServiceAccount", "pipeline-runner", namespace) in subjects


def test_manifests_match_the_spark_conf_defaults(rendered):
    """The conf's service account and namespace are the ones the manifests create."""
    conf = cluster.kubernetes_spark_conf(cluster.KubernetesExecutors(image="img:1"))
    name = rendered["ServiceAccount"]["metadata"]["name"]
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == name
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == name
    assert conf["spark.kubernetes.namespace"] == rendered["ServiceAccount"]["metadata"]["namespace"]
