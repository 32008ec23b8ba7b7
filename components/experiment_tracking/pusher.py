"""What the VersionedPusher records in MLflow, and in what order.

One MLflow run per pusher execution (experiment = the pipeline name):

  1. `start()` before the pusher's atomic rename: the run exists, its id goes
     into push_metadata.json; params (training settings and the Trainer's
     recorded hyper-parameters, thresholds, data span/fingerprint, code
     version) and metrics (the Evaluator's overall and per-slice metrics,
     naive baselines, eval example count, blessing) are logged.
  2. The pusher renames the version into place (serving/model_dir.py).
  3. `pushed()`: push_metadata.json, the schema and the SavedModel as
     artifacts; the version is registered in the Model Registry under the
     serving model name, tagged (tf_serving_version, blessed, AUC), and the
     alias `serving` moved to it. Or `not_pushed()`: a rejected candidate is a
     finished run tagged outcome=rejected, never registered.

Failures (decided here, documented in README "Experiment tracking"): MLflow
never decides whether a model is served. A failure before the rename leaves
the push going ahead without an MLflow run (push_metadata.json records the
error); a failure after it (artifacts, registry, alias) leaves the pushed
version in place, ends the MLflow run FAILED where it still can, and is
recorded as the PushedModel's `mlflow_error` property, which the run summary
prints loudly. Nothing here raises into the pusher.
"""
import json
import os
import subprocess
from typing import Any, Dict, List, Optional

from absl import logging

from components.artifact_uris import remote_uri
from components.experiment_tracking import tracking

# The pusher's exec properties for tracking.
TRACKING_URI_KEY = "mlflow_tracking_uri"  # "" = off
PARAMS_KEY = "mlflow_params"  # JSON: the run's settings (training, thresholds, data window)

# Inputs read (all optional but the blessing).
EVALUATION_KEY = "evaluation"
EXAMPLES_KEY = "examples"
SCHEMA_KEY = "schema"
MODEL_RUN_KEY = "model_run"
NAIVE_BASELINES_KEY = "naive_baselines"
NAIVE_BASELINES_FILE = "baselines.json"
HYPERPARAMETERS_FILE = "hyperparameters.json"  # models/trainer.py's record in the ModelRun

# Custom properties of the PushedModel artifact.
RUN_ID = "mlflow_run_id"
EXPERIMENT_ID = "mlflow_experiment_id"
TRACKING_URI = "mlflow_tracking_uri"
REGISTERED_MODEL = "mlflow_registered_model"
MODEL_VERSION = "mlflow_model_version"
ERROR = "mlflow_error"

MODEL_ARTIFACT = "model"  # the SavedModel, the registered version's source
PUSH_ARTIFACTS = "push"  # push_metadata.json, schema


class PushTracking:
    """MLflow bookkeeping of one pusher execution; every step records, never raises."""

    def __init__(self, tracking_uri: str, pipeline_name: str, pipeline_run_id: Optional[str],
                 model_name: str, params: Optional[dict] = None):
        self.tracking_uri = tracking_uri
        self.pipeline_name = pipeline_name or "default"
        self.pipeline_run_id = pipeline_run_id or ""
        self.model_name = model_name
        self.params = params or {}
        self.run: Optional[tracking.Run] = None
        self.model_version: Optional[str] = None
        self.errors: List[str] = []

    @classmethod
    def from_exec_properties(cls, exec_properties: Dict[str, Any], pipeline_name: str,
                             pipeline_run_id: Optional[str], model_name: str):
        """None when tracking is off (no or an empty `mlflow_tracking_uri`)."""
        uri = exec_properties.get(TRACKING_URI_KEY) or ""
        if not tracking.enabled(uri):
            return None
        raw = exec_properties.get(PARAMS_KEY) or "{}"
        try:
            params = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except ValueError as error:
            params = {"unreadable_params": f"{error}: {raw[:200]}"}
        return cls(uri, pipeline_name, pipeline_run_id, model_name, params)

    # --- steps -----------------------------------------------------------

    def start(self, input_dict, blessed: bool) -> Optional[str]:
        """Starts the run and logs params and metrics; returns its id (None: failed, recorded)."""
        try:
            self.run = tracking.start_run(
                self.tracking_uri, self.pipeline_name,
                run_name=f"{self.pipeline_name} {self.pipeline_run_id}".strip(),
                tags={tracking.TAG_PIPELINE_RUN_ID: self.pipeline_run_id,
                      tracking.TAG_PIPELINE_NAME: self.pipeline_name,
                      tracking.TAG_MODEL_NAME: self.model_name,
                      tracking.TAG_SOURCE: "pusher",
                      tracking.TAG_BLESSED: str(bool(blessed)).lower()})
        except tracking.TrackingError as error:
            self._failed("start", error)
            return None
        try:
            self.run.log_params(run_params(self.params, input_dict, code_version()))
            self.run.log_metrics(run_metrics(input_dict, blessed))
        except Exception as error:
            self._failed("logging params/metrics", error)
        return self.run.run_id

    def metadata(self) -> dict:
        """What push_metadata.json records about MLflow (written before the rename)."""
        if self.run is None:
            return {"tracking_uri": tracking.redact(self.tracking_uri),
                    "error": "; ".join(self.errors) or "not started"}
        return {"run_id": self.run.run_id, "experiment_id": self.run.experiment_id,
                "experiment": self.pipeline_name, "tracking_uri": tracking.redact(self.tracking_uri),
                "registered_model": self.model_name}

    def pushed(self, target: str, input_dict=None) -> None:
        """After the rename: artifacts, registry version with tags, alias `serving`."""
        if self.run is None:
            return
        schema_uri = _schema_file(input_dict or {})
        version = os.path.basename(target.rstrip("/"))
        metadata = _read_json(os.path.join(target, "push_metadata.json")) or {}
        auc = (metadata.get("metrics") or {}).get("candidate", {}).get("auc")
        try:
            self.run.set_tags({tracking.TAG_OUTCOME: "pushed", tracking.TAG_PUSHED: "true",
                               tracking.TAG_TF_SERVING_VERSION: version,
                               tracking.TAG_TF_SERVING_PATH: target})
            self.run.log_metrics({"pushed": 1, "tf_serving_version": int(version)
                                  if version.isdigit() else None})
            self.run.log_file(os.path.join(target, "push_metadata.json"), PUSH_ARTIFACTS)
            if schema_uri:
                self.run.log_file(schema_uri, PUSH_ARTIFACTS)
            # The SavedModel as served (version dir), so the registered version
            # is downloadable from MLflow too (a few MB).
            self.run.log_file(target, MODEL_ARTIFACT)
        except Exception as error:
            self._failed("logging the push artifacts", error)
        try:
            self.model_version = tracking.register_version(
                self.run, self.model_name, f"runs:/{self.run.run_id}/{MODEL_ARTIFACT}",
                tags={tracking.TAG_TF_SERVING_VERSION: version,
                      tracking.TAG_BLESSED: "true",
                      tracking.TAG_AUC: None if auc is None else f"{auc:.6f}",
                      tracking.TAG_PIPELINE_RUN_ID: self.pipeline_run_id,
                      tracking.TAG_TF_SERVING_PATH: target})
            self.run.set_tags({"registered_model_version": self.model_version})
        except Exception as error:
            self._failed("registering the version", error)
        self._end()

    def not_pushed(self, reason: str, outcome: str = "rejected") -> None:
        """A candidate that was not pushed: a finished run, never registered.

        outcome "failed" (the push itself raised) ends the run FAILED.
        """
        if self.run is None:
            return
        try:
            self.run.set_tags({tracking.TAG_OUTCOME: outcome, tracking.TAG_PUSHED: "false",
                               tracking.TAG_REASON: reason})
            self.run.log_metrics({"pushed": 0})
        except Exception as error:
            self._failed("tagging the rejected run", error)
        self._end(failed=outcome == "failed")

    def record(self, pushed_model) -> None:
        """Writes the run id, version and any error as PushedModel custom properties."""
        pushed_model.set_string_custom_property(TRACKING_URI, tracking.redact(self.tracking_uri))
        if self.run is not None:
            pushed_model.set_string_custom_property(RUN_ID, self.run.run_id)
            pushed_model.set_string_custom_property(EXPERIMENT_ID, self.run.experiment_id)
        if self.model_version is not None:
            pushed_model.set_string_custom_property(REGISTERED_MODEL, self.model_name)
            pushed_model.set_string_custom_property(MODEL_VERSION, self.model_version)
        if self.errors:
            pushed_model.set_string_custom_property(ERROR, "; ".join(self.errors))

    # --- internals -------------------------------------------------------

    def _end(self, failed: bool = False) -> None:
        try:
            self.run.end("FAILED" if failed or self.errors else "FINISHED")
        except Exception as error:
            self._failed("ending the run", error)

    def _failed(self, step: str, error: Exception) -> None:
        message = f"MLflow ({tracking.redact(self.tracking_uri)}) failed at {step}: " \
                  f"{type(error).__name__}: {error}"
        logging.error("%s", message)
        self.errors.append(message[:1000])


def run_params(settings: dict, input_dict, version: str) -> dict:
    """Params: the configured settings, the Trainer's record, thresholds, data, code version."""
    params: Dict[str, Any] = {"code_version": version}
    params.update(settings)
    for model_run in input_dict.get(MODEL_RUN_KEY) or []:
        recorded = _read_json(os.path.join(model_run.uri, HYPERPARAMETERS_FILE))
        if recorded:
            params["trained"] = recorded
    evaluations = input_dict.get(EVALUATION_KEY) or []
    if evaluations:
        from components import evaluation_results

        params["evaluated_thresholds"] = evaluation_results.configured_thresholds(evaluations[0].uri)
    examples = input_dict.get(EXAMPLES_KEY) or []
    if examples:
        params["data"] = {
            "spans": [_int_property(e, "span") for e in examples],
            "versions": [_int_property(e, "version") for e in examples],
            "fingerprint": "; ".join(_string_property(e, "input_fingerprint") for e in examples),
            # The object-store URIs on Kubeflow, not the launcher's local copies.
            "uris": [remote_uri(e) for e in examples],
        }
    return params


def run_metrics(input_dict, blessed: bool) -> dict:
    """Metrics: evaluation overall/per slice, naive baselines, blessing, eval size."""
    metrics: Dict[str, Any] = {"blessed": int(bool(blessed))}
    evaluations = input_dict.get(EVALUATION_KEY) or []
    if evaluations:
        from components import evaluation_results

        uri = evaluations[0].uri
        summary = evaluation_results.summarize(uri)
        for role, values in summary.metrics.items():
            prefix = "eval" if role == evaluation_results.CANDIDATE else role
            for name, value in values.items():
                metrics[tracking.metric_name(prefix, name)] = value
        metrics["eval_examples"] = summary.eval_examples
        for row in evaluation_results.sliced_metrics(uri):
            if row["slice"] == "Overall":
                continue
            label = row["slice"].replace("=", "_").replace(", ", "__")
            for name, value in row.items():
                if name != "slice":
                    metrics[tracking.metric_name("slice", label, name)] = value
    for artifact in input_dict.get(NAIVE_BASELINES_KEY) or []:
        baselines = (_read_json(os.path.join(artifact.uri, NAIVE_BASELINES_FILE)) or {})
        for name, values in (baselines.get("baselines") or {}).items():
            for metric, value in (values or {}).items():
                if isinstance(value, (int, float)):
                    metrics[tracking.metric_name("naive", name, metric)] = value
            # {"per_station": {station: {"auc", "examples"}}} (components/naive_baselines)
            for station, numbers in ((values or {}).get("per_station") or {}).items():
                auc = (numbers or {}).get("auc")
                if isinstance(auc, (int, float)):
                    metrics[tracking.metric_name("naive", name, f"station_{station}", "auc")] = auc
    return metrics


def code_version() -> str:
    """`git describe --always --dirty` of the repository, else the installed package version."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isdir(os.path.join(root, ".git")):
        try:
            out = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty", "--tags"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return "git " + out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        from importlib import metadata

        return "package rain-tomorrow-tfx " + metadata.version("rain-tomorrow-tfx")
    except Exception:
        return "unknown"


def _schema_file(input_dict) -> Optional[str]:
    schemas = input_dict.get(SCHEMA_KEY) or []
    if not schemas:
        return None
    from tfx.utils import io_utils

    try:
        return io_utils.get_only_uri_in_dir(schemas[0].uri)
    except Exception as error:  # logged without the schema
        logging.warning("No schema file in %s for MLflow: %s", schemas[0].uri, error)
        return None


def _read_json(path: str) -> Optional[dict]:
    from tfx.dsl.io import fileio

    try:
        if not fileio.exists(path):
            return None
        with fileio.open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError) as error:
        logging.warning("Could not read %s for MLflow: %s", path, error)
        return None


def _int_property(artifact, name: str) -> int:
    if artifact.has_custom_property(name):
        return artifact.get_int_custom_property(name)
    return getattr(artifact, name, 0) or 0


def _string_property(artifact, name: str) -> str:
    if artifact.has_custom_property(name):
        return artifact.get_string_custom_property(name)
    return ""


def settings_params(config) -> str:
    """The pusher's `mlflow_params`: a PipelineConfig's settings as JSON.

    What the run was configured with (training flags, thresholds, data
    window, tuning); what the Trainer actually trained with (after --tune,
    or a Kubeflow run's train_args) is logged from its hyperparameters.json.
    """
    import dataclasses

    training = {k: v for k, v in config.training.custom_config().items() if k != "tfjob"}
    training.update(train_steps=config.training.train_steps, eval_steps=config.training.eval_steps,
                    train_workers=config.training.train_workers,
                    train_strategy=config.training.train_strategy)
    return json.dumps({
        "pipeline_name": config.pipeline_name,
        "model_name": config.model_name,
        "training": training,
        "thresholds": dataclasses.asdict(config.thresholds),
        "span_window": config.span_window,
        "tune": getattr(config, "tune", False),
        "tune_trials": getattr(config, "tune_trials", None) if getattr(config, "tune", False) else None,
        "keep_versions": config.keep_versions,
        "enable_cache": config.enable_cache,
    }, sort_keys=True, default=str)
