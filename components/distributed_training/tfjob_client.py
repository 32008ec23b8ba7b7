"""Submits a TFJob with the `kubernetes` client and waits for its outcome.

The job's state is the last condition whose status is "True" among the
Training Operator's conditions (Created, Running, Restarting, Succeeded,
Failed, Suspended); `Succeeded` returns, `Failed` raises `TFJobFailedError`
with the operator's reason and message, and a job still unfinished after
`timeout_seconds` is deleted (its pods with it) and `TFJobTimeoutError` is
raised.
"""
import time
from typing import Any, Callable, Dict, Optional

from components.distributed_training import tfjob as tfjob_lib

SUCCEEDED, FAILED = "Succeeded", "Failed"


class TFJobError(RuntimeError):
    pass


class TFJobFailedError(TFJobError):
    pass


class TFJobTimeoutError(TFJobError):
    pass


def default_api():
    """CustomObjectsApi from the pod's service account, else from ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def submit(api, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Creates the TFJob; returns the created object."""
    return api.create_namespaced_custom_object(
        group=tfjob_lib.GROUP, version=tfjob_lib.VERSION,
        namespace=manifest["metadata"]["namespace"], plural=tfjob_lib.PLURAL, body=manifest)


def current_condition(job: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The last condition with status 'True' (the operator appends in order)."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or []
                  if str(c.get("status")) == "True"]
    return conditions[-1] if conditions else None


def wait(api, name: str, namespace: str, timeout_seconds: float, poll_seconds: float = 10.0,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> Dict[str, Any]:
    """Polls the TFJob until Succeeded (returns it), Failed or the timeout (raise)."""
    deadline = clock() + timeout_seconds
    state = "not yet reported"
    while True:
        job = api.get_namespaced_custom_object(
            group=tfjob_lib.GROUP, version=tfjob_lib.VERSION, namespace=namespace,
            plural=tfjob_lib.PLURAL, name=name)
        condition = current_condition(job)
        if condition is not None:
            state = condition.get("type", state)
            if state == SUCCEEDED:
                return job
            if state == FAILED:
                raise TFJobFailedError(
                    f"TFJob {namespace}/{name} failed: {condition.get('reason', '')}: "
                    f"{condition.get('message', '')} (replica statuses: "
                    f"{(job.get('status') or {}).get('replicaStatuses')}); "
                    f"see `kubectl logs -n {namespace} -l training.kubeflow.org/job-name={name}`")
        if clock() >= deadline:
            api.delete_namespaced_custom_object(
                group=tfjob_lib.GROUP, version=tfjob_lib.VERSION, namespace=namespace,
                plural=tfjob_lib.PLURAL, name=name)
            raise TFJobTimeoutError(
                f"TFJob {namespace}/{name} did not finish within {timeout_seconds:.0f} s "
                f"(last state: {state}); it was deleted.")
        sleep(poll_seconds)


def run(manifest: Dict[str, Any], timeout_seconds: float, api=None, **wait_kwargs) -> Dict[str, Any]:
    """submit + wait; `api` defaults to `default_api()`."""
    api = api or default_api()
    submit(api, manifest)
    return wait(api, manifest["metadata"]["name"], manifest["metadata"]["namespace"],
                timeout_seconds, **wait_kwargs)
