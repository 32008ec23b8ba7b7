"""The Trainer's TFJob: manifest checked offline against the Training Operator's CRD, submission against a fake API.

The CRD is the Training Operator's own (deploy/tfjob/crd/, vendored from
kubeflow/training-operator v1.9.0 with its commit in the header); its
openAPIV3Schema is what the API server validates a TFJob with. The
operator's admission webhook adds checks the schema cannot express
(`tfjob.webhook_errors`, transcribed from its source). The pod template is
also validated as a Pod of Kubernetes 1.31 (kubernetes-validate, strict).

Submission uses `create_autospec(kubernetes.client.CustomObjectsApi)`: a call
with an argument the real method does not take fails, as it would against
the real client.
"""
import copy
import inspect
import os
from unittest import mock

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes.client import CustomObjectsApi

from components.distributed_training import tf_config as tfc
from components.distributed_training import tfjob
from components.distributed_training import tfjob_client
from pipeline.kubeflow import settings as kf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRD_PATH = os.path.join(REPO_ROOT, "deploy", "tfjob", "crd", "kubeflow.org_tfjobs.yaml")
EXAMPLE_PATH = os.path.join(REPO_ROOT, "deploy", "tfjob", "tfjob.yaml")
KUBERNETES_VERSION = "1.31.0"


def _crd():
    with open(CRD_PATH) as crd_file:
        return yaml.safe_load(crd_file)


def _schema():
    (version,) = [v for v in _crd()["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def _settings(**overrides):
    values = dict(name="rain-train-1", namespace="team-a", image="registry.example/rain-tomorrow:1.2",
                  workers=3, spec_path="/mnt/data/tfjobs/rain-train-1/spec.json",
                  data_claim=kf.DEFAULT_DATA_CLAIM, data_mount_path=kf.DEFAULT_DATA_ROOT)
    values.update(overrides)
    return tfjob.TFJobSettings.from_resources(kf.DEFAULT_HEAVY_RESOURCES, **values)


def _errors(manifest):
    validator = jsonschema.Draft7Validator(_schema())
    return sorted(error.message for error in validator.iter_errors(manifest))


def test_vendored_crd_is_the_training_operators_tfjob_crd_with_its_source():
    with open(CRD_PATH) as crd_file:
        header = crd_file.read(600)
    assert "kubeflow/training-operator" in header and "6f74c7f6b2ed6c27aabd82d0a316b23f0646059c" in header
    crd = _crd()
    assert crd["kind"] == "CustomResourceDefinition" and crd["metadata"]["name"] == "tfjobs.kubeflow.org"
    assert crd["spec"]["group"] == tfjob.GROUP and crd["spec"]["names"]["plural"] == tfjob.PLURAL
    assert crd["spec"]["names"]["kind"] == tfjob.KIND


def test_generated_tfjob_is_valid_for_the_crd_schema_and_the_operators_webhook():
    manifest = tfjob.tfjob_manifest(_settings())

    assert _errors(manifest) == []
    assert tfjob.webhook_errors(manifest) == []


def test_the_schema_check_can_fail():
    manifest = tfjob.tfjob_manifest(_settings())
    bad = copy.deepcopy(manifest)
    bad["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "two"
    del bad["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["name"]
    bad["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"] = "port-2222"

    errors = _errors(bad)
    assert any("'two' is not of type 'integer'" in e for e in errors)
    assert any("'name' is a required property" in e for e in errors)
    assert any("'port-2222' is not of type 'integer'" in e for e in errors)
    assert tfjob.webhook_errors(bad) == ["Chief: must have at least one container with name tensorflow"]


def test_pod_template_is_a_valid_pod():
    manifest = tfjob.tfjob_manifest(_settings())
    for kind, replica in manifest["spec"]["tfReplicaSpecs"].items():
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"x-{kind.lower()}-0", **replica["template"]["metadata"]},
               "spec": replica["template"]["spec"]}
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(pod)
    broken["spec"]["containers"][0]["resource"] = broken["spec"]["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_tfjob_runs_the_worker_module_with_the_pipelines_image_volume_and_resources():
    settings = _settings()
    manifest = tfjob.tfjob_manifest(settings)
    replicas = manifest["spec"]["tfReplicaSpecs"]

    assert manifest["apiVersion"] == "kubeflow.org/v1" and manifest["kind"] == "TFJob"
    assert manifest["metadata"] == {"name": "rain-train-1", "namespace": "team-a",
                                    "labels": {"app.kubernetes.io/name": "rain-tomorrow-trainer"}}
    assert {kind: r["replicas"] for kind, r in replicas.items()} == {"Chief": 1, "Worker": 2}
    assert manifest["spec"]["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 0,
                                             "activeDeadlineSeconds": 3600}
    heavy = kf.DEFAULT_HEAVY_RESOURCES
    for replica in replicas.values():
        assert replica["restartPolicy"] == "Never"
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example/rain-tomorrow:1.2"
        assert container["command"] == ["python", "-m", "components.distributed_training.worker",
                                        "--spec", "/mnt/data/tfjobs/rain-train-1/spec.json",
                                        "--strategy", "multi_worker"]
        assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]
        assert container["resources"] == {
            "requests": {"cpu": f"{int(heavy.cpu_request * 1000)}m",
                         "memory": f"{int(heavy.memory_request_gb * 1024)}Mi"},
            "limits": {"cpu": f"{int(heavy.cpu_limit * 1000)}m",
                       "memory": f"{int(heavy.memory_limit_gb * 1024)}Mi"}}
        assert container["volumeMounts"] == [{"name": "data", "mountPath": kf.DEFAULT_DATA_ROOT}]
        assert pod["volumes"] == [{"name": "data",
                                   "persistentVolumeClaim": {"claimName": kf.DEFAULT_DATA_CLAIM}}]
    # The TF_CONFIG the operator gives these replicas: 3 training processes, one chief.
    configs = [tfc.tfjob_tf_config("rain-train-1", "team-a", settings.replicas, kind, i)
               for kind, count in settings.replicas.items() for i in range(count)]
    assert [tfc.is_chief(c) for c in configs] == [True, False, False]
    assert sorted(tfc.shard_of(c)[1] for c in configs) == [0, 1, 2]


@pytest.mark.parametrize("overrides, message", [
    ({"name": "Rain_Train"}, "DNS-1035"),
    ({"workers": 1}, ">= 2 processes"),
    ({"spec_path": "/tmp/spec.json"}, "under the data mount"),
    ({"image": ""}, "image"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        _settings(**overrides)


def test_deploy_example_is_the_generators_output():
    with open(EXAMPLE_PATH) as example:
        text = example.read()
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tfjob.main([]) == 0
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert body == out.getvalue()
    manifest = yaml.safe_load(body)
    assert _errors(manifest) == [] and tfjob.webhook_errors(manifest) == []


# --- submission against a fake API bound to the real client's signatures ---

def _job(*conditions, replica_statuses=None):
    status = {"conditions": [{"type": t, "status": s, "reason": r, "message": m}
                             for t, s, r, m in conditions]}
    if replica_statuses:
        status["replicaStatuses"] = replica_statuses
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "j"}, "status": status}


CREATED = ("Created", "True", "TFJobCreated", "TFJob j is created.")
RUNNING = ("Running", "True", "TFJobRunning", "TFJob j is running.")
SUCCEEDED = ("Succeeded", "True", "TFJobSucceeded", "TFJob j successfully completed.")
FAILED = ("Failed", "True", "TFJobFailed", "TFJob j has failed because 1 Worker replica(s) failed.")


class _Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def _api():
    return mock.create_autospec(CustomObjectsApi, instance=True)


def test_the_fake_api_has_the_real_signatures():
    api = _api()
    with pytest.raises(TypeError):
        api.create_namespaced_custom_object("kubeflow.org", "v1", "ns", "tfjobs", {}, "extra", "args")
    for method in ("create_namespaced_custom_object", "get_namespaced_custom_object",
                   "delete_namespaced_custom_object"):
        assert inspect.signature(getattr(api, method)) == inspect.signature(
            getattr(CustomObjectsApi(api_client=mock.Mock()), method))


def test_submit_sends_the_manifest_to_the_tfjobs_resource():
    api = _api()
    manifest = tfjob.tfjob_manifest(_settings())
    api.create_namespaced_custom_object.return_value = manifest

    assert tfjob_client.submit(api, manifest) == manifest
    api.create_namespaced_custom_object.assert_called_once_with(
        group="kubeflow.org", version="v1", namespace="team-a", plural="tfjobs", body=manifest)


def test_wait_returns_when_the_job_succeeds():
    api, clock = _api(), _Clock()
    api.get_namespaced_custom_object.side_effect = [
        _job(), _job(CREATED), _job(CREATED, RUNNING),
        _job(CREATED, ("Running", "False", "", ""), SUCCEEDED)]

    job = tfjob_client.wait(api, "j", "team-a", timeout_seconds=600, poll_seconds=5,
                            clock=clock, sleep=clock.sleep)

    assert tfjob_client.current_condition(job)["type"] == "Succeeded"
    assert clock.sleeps == [5, 5, 5]
    api.get_namespaced_custom_object.assert_called_with(
        group="kubeflow.org", version="v1", namespace="team-a", plural="tfjobs", name="j")
    api.delete_namespaced_custom_object.assert_not_called()


def test_wait_raises_with_the_operators_reason_when_the_job_fails():
    api, clock = _api(), _Clock()
    api.get_namespaced_custom_object.side_effect = [
        _job(CREATED, RUNNING),
        _job(CREATED, RUNNING, FAILED, replica_statuses={"Worker": {"failed": 1}, "Chief": {"active": 1}})]

    with pytest.raises(tfjob_client.TFJobFailedError) as failure:
        tfjob_client.wait(api, "j", "team-a", timeout_seconds=600, clock=clock, sleep=clock.sleep)

    message = str(failure.value)
    assert "team-a/j failed" in message and "TFJobFailed" in message
    assert "1 Worker replica(s) failed" in message and "'failed': 1" in message
    assert "kubectl logs -n team-a -l training.kubeflow.org/job-name=j" in message


def test_wait_deletes_the_job_and_raises_after_the_timeout():
    api, clock = _api(), _Clock()
    api.get_namespaced_custom_object.return_value = _job(CREATED, RUNNING)

    with pytest.raises(tfjob_client.TFJobTimeoutError, match=r"within 60 s \(last state: Running\)"):
        tfjob_client.wait(api, "j", "team-a", timeout_seconds=60, poll_seconds=10,
                          clock=clock, sleep=clock.sleep)

    assert clock.now == 60 and len(clock.sleeps) == 6
    api.delete_namespaced_custom_object.assert_called_once_with(
        group="kubeflow.org", version="v1", namespace="team-a", plural="tfjobs", name="j")


def test_run_submits_then_waits():
    api, clock = _api(), _Clock()
    manifest = tfjob.tfjob_manifest(_settings())
    api.get_namespaced_custom_object.return_value = _job(CREATED, SUCCEEDED)

    tfjob_client.run(manifest, timeout_seconds=60, api=api, clock=clock, sleep=clock.sleep)

    assert [c[0] for c in api.method_calls] == ["create_namespaced_custom_object",
                                                "get_namespaced_custom_object"]
    assert api.create_namespaced_custom_object.call_args.kwargs["body"] is manifest


# --- the Trainer task's TFJob path: stage on the volume, submit, wait, collect ---

def _task_inputs(tmp_path):
    """What KFP's launcher gives the Trainer task: local copies of its inputs."""
    import types

    local = tmp_path / "task"
    for split in ("train", "eval"):
        (local / "examples" / f"Split-{split}").mkdir(parents=True)
        (local / "examples" / f"Split-{split}" / "data.gz").write_bytes(split.encode())
    (local / "transform_graph" / "transform_fn").mkdir(parents=True)
    (local / "transform_graph" / "transform_fn" / "saved_model.pb").write_bytes(b"tg")
    return types.SimpleNamespace(
        train_files=[str(local / "examples" / "Split-train" / "*")],
        eval_files=[str(local / "examples" / "Split-eval" / "*")],
        transform_graph_path=str(local / "transform_graph"),
        serving_model_dir=str(local / "model" / "Format-Serving"),
        model_run_dir=str(local / "model_run"), train_steps=100, eval_steps=5, custom_config={})


def _fake_cluster(seen):
    """An autospec'd API whose create plays the TFJob's pods: read the spec, export as the chief."""
    from components.distributed_training import spec as spec_lib

    api = _api()

    def create(group, version, namespace, plural, body, **kwargs):
        spec = spec_lib.TrainingSpec.read(body["spec"]["tfReplicaSpecs"]["Chief"]["template"]
                                          ["spec"]["containers"][0]["command"][4])
        seen["spec"], seen["body"] = spec, body
        with open(spec.train_files[0].replace("*", "data.gz"), "rb") as staged:
            seen["train_bytes"] = staged.read()
        os.makedirs(spec.serving_model_dir)
        with open(os.path.join(spec.serving_model_dir, "saved_model.pb"), "wb") as out:
            out.write(b"model")
        os.makedirs(spec.workers_dir())
        with open(spec.log_path("chief-0"), "w") as log:
            log.write("chief-0: done\n")
        return body

    api.create_namespaced_custom_object.side_effect = create
    api.get_namespaced_custom_object.return_value = _job(CREATED, SUCCEEDED)
    return api


def test_run_fn_dispatch_takes_the_tfjob_path_from_custom_config(tmp_path, monkeypatch):
    from components import distributed_training as dt

    fn_args = _task_inputs(tmp_path)
    data_root = str(tmp_path / "volume")
    fn_args.custom_config = {
        "seed": 3, "batch_size": 16, "train_workers": 3, "train_timeout_seconds": 900,
        "tfjob": {"namespace": "team-a", "image": "img:1", "data_root": data_root,
                  "data_claim": "rain-tomorrow-data", "resources": [1, 2, 2, 4]}}
    seen = {}
    api = _fake_cluster(seen)
    monkeypatch.setattr(tfjob_client, "default_api", lambda: api)

    assert dt.wants_distributed(fn_args.custom_config)
    dt.run_from_config(fn_args)

    body = seen["body"]
    assert body["metadata"]["name"] == dt.tfjob_name(fn_args)
    assert {k: r["replicas"] for k, r in body["spec"]["tfReplicaSpecs"].items()} == {"Chief": 1, "Worker": 2}
    assert body["spec"]["runPolicy"]["activeDeadlineSeconds"] == 900
    assert _errors(body) == [] and tfjob.webhook_errors(body) == []
    assert seen["spec"].hparams == {"seed": 3, "batch_size": 16}  # no distribution keys
    assert os.path.exists(os.path.join(fn_args.serving_model_dir, "saved_model.pb"))


def test_train_on_tfjob_stages_inputs_submits_and_collects_the_chiefs_export(tmp_path):
    from components.distributed_training import tfjob_trainer

    fn_args = _task_inputs(tmp_path)
    data_root = str(tmp_path / "volume")
    settings = tfjob_trainer.settings_from_config(
        {"namespace": "team-a", "image": "img:1", "data_root": data_root,
         "data_claim": "rain-tomorrow-data", "resources": [1, 2, 2, 4], "timeout_seconds": 600},
        job_name="rain-train-7", workers=2)
    seen = {}
    api = _fake_cluster(seen)  # the "pods" export as the chief would

    tfjob_trainer.train_on_tfjob(fn_args, {"seed": 3}, settings, data_root, api=api, poll_seconds=1)

    body = api.create_namespaced_custom_object.call_args.kwargs["body"]
    assert _errors(body) == [] and tfjob.webhook_errors(body) == []
    assert body["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["volumes"][0][
        "persistentVolumeClaim"] == {"claimName": "rain-tomorrow-data"}
    spec = seen["spec"]
    assert spec.train_files[0].startswith(data_root + "/tfjobs/rain-train-7/inputs/")
    assert seen["train_bytes"] == b"train" and spec.hparams == {"seed": 3} and spec.train_steps == 100
    with open(os.path.join(fn_args.serving_model_dir, "saved_model.pb"), "rb") as model:
        assert model.read() == b"model"
    with open(os.path.join(fn_args.model_run_dir, "workers", "chief-0.log")) as log:
        assert log.read() == "chief-0: done\n"
    assert not os.path.exists(os.path.join(data_root, "tfjobs", "rain-train-7"))  # cleaned up


# --- deploy/tfjob/rbac: what lets the Trainer task submit its TFJob ---

@pytest.mark.skipif(__import__("shutil").which("kubectl") is None,
                    reason="kubectl (with built-in kustomize) is not on PATH")
def test_rbac_grants_exactly_what_the_client_calls_and_is_valid():
    import subprocess

    result = subprocess.run(["kubectl", "kustomize", os.path.join(REPO_ROOT, "deploy", "tfjob", "rbac")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    by_kind = {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout) if doc}
    assert set(by_kind) == {"Role", "RoleBinding"}
    for doc in by_kind.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "kubeflow"
    (rule,) = by_kind["Role"]["rules"]
    assert rule["apiGroups"] == [tfjob.GROUP] and rule["resources"] == [tfjob.PLURAL]
    # The verbs are the client's calls: create, get (poll), delete (timeout).
    source = inspect.getsource(tfjob_client)
    used = {name.split("_")[0] for name in dir(CustomObjectsApi)
            if name.endswith("_namespaced_custom_object") and f"api.{name}(" in source}
    assert set(rule["verbs"]) == used == {"create", "get", "delete"}
    binding = by_kind["RoleBinding"]
    assert binding["roleRef"]["name"] == by_kind["Role"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner",
                                    "namespace": "kubeflow"}]
