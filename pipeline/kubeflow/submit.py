"""Sends a compiled package to a KFP endpoint: one run, or a recurring run."""
import sys
from typing import Callable, Dict

from pipeline.kubeflow.settings import ClientAuth, Submission


def client_arguments(submission: Submission) -> Dict[str, object]:
    """Keyword arguments of `kfp.Client(...)` for the endpoint and its authentication."""
    auth: ClientAuth = submission.auth
    arguments: Dict[str, object] = {"host": submission.endpoint}
    if submission.namespace:
        arguments["namespace"] = submission.namespace
    if auth.existing_token:
        arguments["existing_token"] = auth.existing_token
    if auth.cookies:
        arguments["cookies"] = auth.cookies
    if auth.ssl_ca_cert:
        arguments["ssl_ca_cert"] = auth.ssl_ca_cert
    if auth.service_account_token_path:
        from kfp.client import ServiceAccountTokenVolumeCredentials

        arguments["credentials"] = ServiceAccountTokenVolumeCredentials(
            path=auth.service_account_token_path)
    return arguments


def submit(submission: Submission, package_path: str, pipeline_root: str,
           client_factory: Callable[..., object]) -> int:
    """Creates a run (or a recurring run) of the compiled package; returns the exit code."""
    try:
        client = client_factory(**client_arguments(submission))
        experiment = client.create_experiment(
            name=submission.experiment, namespace=submission.namespace)
        if submission.schedule:
            client.create_recurring_run(
                experiment_id=experiment.experiment_id,
                job_name=submission.run_name,
                cron_expression=submission.schedule,
                pipeline_package_path=package_path,
                pipeline_root=pipeline_root,
                # A run still going when the next is due is not doubled up.
                max_concurrency=1,
            )
            what = f"recurring run '{submission.run_name}' ({submission.schedule})"
        else:
            client.create_run_from_pipeline_package(
                package_path,
                run_name=submission.run_name,
                experiment_id=experiment.experiment_id,
                namespace=submission.namespace,
                pipeline_root=pipeline_root,
            )
            what = f"run '{submission.run_name}'"
    except Exception as error:  # any client/transport/auth error: report it, signal by exit code
        hint = ""
        if "401" in str(error) or "403" in str(error) or "Unauthorized" in str(error):
            hint = (" (the endpoint wants authentication: --token-file, --cookies or "
                    "--sa-token-path; see the README's Kubeflow section)")
        print(f"Submitting {package_path} to the KFP endpoint {submission.endpoint} failed: "
              f"{type(error).__name__}: {error}{hint}", file=sys.stderr)
        return 1
    print(f"Submitted {what} to {submission.endpoint}, experiment '{submission.experiment}'.")
    return 0
