"""The Trainer task's TFJob path on Kubeflow: stage, submit, wait, collect.

KFP's launcher gives the Trainer task local copies of its inputs inside the
task's own pod, which the TFJob's pods cannot see. So the task (run_fn with
`custom_config["tfjob"]`):

1. copies the transformed examples and the transform graph to
   `<data_root>/tfjobs/<job>/inputs/` on the data volume (the Trainer task
   mounts the data claim, like the Spark and ExampleGen tasks), and writes
   the TrainingSpec there with volume paths;
2. submits the TFJob (`tfjob.tfjob_manifest`: 1 Chief + N-1 Workers, the
   pipeline's image, the data claim at the data root) and waits for
   Succeeded / Failed / the timeout (`tfjob_client`);
3. copies the chief's SavedModel into the task's serving_model_dir (the
   Model artifact the launcher uploads) and the workers' logs and evidence
   into model_run_dir; the staging directory is removed.
"""
import os
import shutil
from typing import Any, Dict, List, Optional

from components.distributed_training import spec as spec_lib
from components.distributed_training import tfjob as tfjob_lib
from components.distributed_training import tfjob_client

CONFIG_KEY = "tfjob"


def _copy_pattern_files(patterns: List[str], target_dir: str) -> List[str]:
    """Copies every file matching `patterns` under target_dir/<split dir>/; returns new patterns."""
    import glob

    new_patterns = []
    for pattern in patterns:
        files = sorted(glob.glob(pattern))
        if not files:
            raise FileNotFoundError(f"No file matches '{pattern}'.")
        split_dir = os.path.join(target_dir, os.path.basename(os.path.dirname(files[0])))
        os.makedirs(split_dir, exist_ok=True)
        for path in files:
            shutil.copy2(path, split_dir)
        new_patterns.append(os.path.join(split_dir, os.path.basename(pattern)))
    return new_patterns


def stage(fn_args: Any, hparams: Dict[str, Any], settings: tfjob_lib.TFJobSettings,
          data_root: str, **spec_settings) -> spec_lib.TrainingSpec:
    """Copies the inputs to the volume and writes the spec the pods read."""
    paths = tfjob_lib.staging_paths(data_root, settings.name)
    if os.path.exists(paths["root"]):
        raise FileExistsError(f"{paths['root']} exists: another TFJob named {settings.name} used it.")
    inputs = paths["inputs"]
    transform_dir = os.path.join(inputs, "transform_graph")
    shutil.copytree(fn_args.transform_graph_path, transform_dir)
    spec = spec_lib.TrainingSpec(
        train_files=_copy_pattern_files(list(fn_args.train_files), os.path.join(inputs, "examples")),
        eval_files=_copy_pattern_files(list(fn_args.eval_files), os.path.join(inputs, "examples")),
        transform_graph_path=transform_dir, serving_model_dir=paths["serving_model_dir"],
        model_run_dir=paths["model_run_dir"], train_steps=int(fn_args.train_steps),
        eval_steps=int(fn_args.eval_steps), hparams=dict(hparams), **spec_settings)
    spec.write(paths["spec"])
    return spec


def collect(spec: spec_lib.TrainingSpec, fn_args: Any, data_root: str, job_name: str) -> None:
    """Copies the chief's export and the run logs back, then removes the staging dir."""
    if not os.path.exists(os.path.join(spec.serving_model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"The TFJob succeeded but left no SavedModel in {spec.serving_model_dir}.")
    shutil.copytree(spec.serving_model_dir, fn_args.serving_model_dir, dirs_exist_ok=True)
    if os.path.isdir(spec.model_run_dir):
        shutil.copytree(spec.model_run_dir, fn_args.model_run_dir, dirs_exist_ok=True)
    shutil.rmtree(tfjob_lib.staging_paths(data_root, job_name)["root"], ignore_errors=True)


def train_on_tfjob(fn_args: Any, hparams: Dict[str, Any], settings: tfjob_lib.TFJobSettings,
                   data_root: str, api=None, poll_seconds: float = 15.0,
                   **spec_settings) -> Dict[str, Any]:
    """stage -> submit -> wait -> collect; returns the finished TFJob object."""
    spec = stage(fn_args, hparams, settings, data_root, **spec_settings)
    job = tfjob_client.run(tfjob_lib.tfjob_manifest(settings), settings.timeout_seconds,
                           api=api, poll_seconds=poll_seconds)
    collect(spec, fn_args, data_root, settings.name)
    return job


def settings_from_config(config: Dict[str, Any], job_name: str, workers: int) -> tfjob_lib.TFJobSettings:
    """TFJobSettings from `custom_config["tfjob"]` as the Kubeflow compile writes it.

    Expected keys: namespace, image, data_root, data_claim; optional
    resources ([cpu_request, memory_request_gb, cpu_limit, memory_limit_gb]),
    timeout_seconds, service_account.
    """
    resources: Optional[List[float]] = config.get("resources")
    extra = dict(zip(("cpu_request", "memory_request_gb", "cpu_limit", "memory_limit_gb"),
                     resources)) if resources else {}
    return tfjob_lib.TFJobSettings(
        name=job_name, namespace=config["namespace"], image=config["image"], workers=workers,
        spec_path=tfjob_lib.staging_paths(config["data_root"], job_name)["spec"],
        data_claim=config["data_claim"], data_mount_path=config["data_root"],
        timeout_seconds=int(config.get("timeout_seconds", 3600)),
        service_account=config.get("service_account", ""), **extra)
