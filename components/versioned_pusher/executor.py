"""Executor of VersionedPusher: blessed models only, one new version each."""
import datetime
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.dsl.io import fileio
from tfx.utils import io_utils, path_utils

from components import evaluation_results
from components.artifact_uris import remote_uri
from components.naive_baselines import reporting as naive_reporting
from components.experiment_tracking import pusher as push_tracking
from serving import model_dir as serving_dir

MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
EVALUATION_KEY = "evaluation"
EXAMPLES_KEY = "examples"
NAIVE_BASELINES_KEY = "naive_baselines"  # optional: NaiveBaselines' output, recorded
STATISTICS_KEY = "statistics"  # optional: StatisticsGen's output, shipped for skew
SCHEMA_KEY = "schema"  # optional: the curated schema, shipped for skew
TRAINING_STATISTICS_SPLIT = "train"
PUSHED_MODEL_KEY = "pushed_model"
SERVING_BASE_KEY = "serving_base"
MODEL_NAME_KEY = "model_name"
SERVER_BASE_PATH_KEY = "server_model_base_path"
KEEP_VERSIONS_KEY = "keep_versions"

# Custom properties of the PushedModel artifact (the first three mirror the
# stock Pusher so tools that read them keep working).
PUSHED = "pushed"
PUSHED_DESTINATION = "pushed_destination"
PUSHED_VERSION = "pushed_version"
PUSH_REASON = "push_reason"


class Executor(base_executor.BaseExecutor):
    """Copies a blessed model to `<serving_base>/<model_name>/<version>/`."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        pushed_model = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[MODEL_BLESSING_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        model_name = exec_properties[MODEL_NAME_KEY]
        model_dir = os.path.join(exec_properties[SERVING_BASE_KEY], model_name)
        # MLflow (components/experiment_tracking/pusher.py): None when off.
        tracker = push_tracking.PushTracking.from_exec_properties(
            exec_properties, _pipeline_name(self._context),
            self._context.pipeline_run_id if self._context else None, model_name)

        if not blessing.get_int_custom_property("blessed"):
            return self._not_pushed(pushed_model, "model not blessed by the Evaluator",
                                    tracker=tracker, input_dict=input_dict)

        source_dir = path_utils.serving_model_path(model.uri)
        already = serving_dir.find_version_of_model(model_dir, remote_uri(model))
        if already is not None:
            # An unchanged re-run re-blesses the same model against itself;
            # pushing it again would only add a duplicate version.
            return self._not_pushed(
                pushed_model, f"model already pushed as version {already}",
                destination=os.path.join(model_dir, str(already)),
                tracker=tracker, input_dict=input_dict, outcome="already_pushed")

        metadata = self._metadata(input_dict, model, blessing)
        extra_files = _skew_files(input_dict, metadata)
        if tracker is not None:
            # The MLflow run exists before the rename, so push_metadata.json
            # names it; a tracking failure is recorded there, never blocks the push.
            tracker.start(input_dict, blessed=True)
            metadata["mlflow"] = tracker.metadata()
        try:
            target = serving_dir.publish_version(source_dir, model_dir, metadata,
                                                 extra_files=extra_files)
        except Exception as error:
            if tracker is not None:
                tracker.not_pushed(f"push failed: {type(error).__name__}: {error}", "failed")
            raise
        server_base_path = exec_properties.get(SERVER_BASE_PATH_KEY) or model_dir
        serving_dir.write_models_config(
            exec_properties[SERVING_BASE_KEY], model_name, server_base_path)
        logging.info("Pushed model version %s", target)
        removed = serving_dir.prune_versions(model_dir, exec_properties.get(KEEP_VERSIONS_KEY) or 0)
        if removed:
            logging.info("Removed old versions %s (keeping the newest %s)",
                         removed, exec_properties[KEEP_VERSIONS_KEY])
        pushed_model.set_int_custom_property(PUSHED, 1)
        pushed_model.set_string_custom_property(PUSHED_DESTINATION, target)
        pushed_model.set_string_custom_property(PUSHED_VERSION, os.path.basename(target))
        pushed_model.set_string_custom_property(PUSH_REASON, "blessed")
        if tracker is not None:
            # After the rename: the version stays whatever MLflow does.
            tracker.pushed(target, input_dict)
            tracker.record(pushed_model)

    def _not_pushed(self, pushed_model, reason: str, destination: str = "",
                    tracker=None, input_dict=None, outcome: str = "rejected") -> None:
        logging.info("Not pushing: %s", reason)
        if tracker is not None:  # logged as a run, never registered
            tracker.start(input_dict or {}, blessed=outcome != "rejected")
            tracker.not_pushed(reason, outcome)
            tracker.record(pushed_model)
        pushed_model.set_int_custom_property(PUSHED, 0)
        pushed_model.set_string_custom_property(PUSH_REASON, reason)
        if destination:
            pushed_model.set_string_custom_property(PUSHED_DESTINATION, destination)

    def _metadata(self, input_dict, model, blessing) -> dict:
        metadata = {
            "model_uri": remote_uri(model),
            "blessing_uri": remote_uri(blessing),
            "pushed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "pipeline_name": _pipeline_name(self._context),
            "pipeline_run_id": self._context.pipeline_run_id if self._context else None,
        }
        evaluations = input_dict.get(EVALUATION_KEY) or []
        if evaluations:
            summary = evaluation_results.summarize(evaluations[0].uri)
            metadata.update(
                metrics=summary.metrics,
                thresholds=summary.thresholds,
                blessed_against_baseline=summary.has_baseline,
            )
        naive_baselines = input_dict.get(NAIVE_BASELINES_KEY) or []
        if naive_baselines:
            # Persistence, climatology and linear beside the candidate's AUC.
            metadata[naive_reporting.PUSH_METADATA_KEY] = naive_reporting.push_metadata(
                naive_baselines[0].uri, summary if evaluations else None)
        examples = input_dict.get(EXAMPLES_KEY) or []
        if examples:
            metadata["data"] = [
                {
                    "uri": remote_uri(e),
                    "span": _int_property(e, "span"),
                    "version": _int_property(e, "version"),
                }
                for e in examples
            ]
        return metadata


def _skew_files(input_dict, metadata: dict) -> Dict[str, str]:
    """{file inside the version: source} of the training statistics and schema, if given.

    The prediction service compares its requests with these (training/serving
    skew, serving/skew.py); they travel inside the version directory so the
    service needs no path to the pipeline's artifacts. Also records their
    origin in `metadata`.
    """
    files = {}
    statistics = input_dict.get(STATISTICS_KEY) or []
    if statistics:
        stats = statistics[0]
        path = os.path.join(stats.uri, f"Split-{TRAINING_STATISTICS_SPLIT}", "FeatureStats.pb")
        if not fileio.exists(path):
            splits = artifact_utils.decode_split_names(stats.split_names or "[]")
            raise FileNotFoundError(
                f"The statistics input has no {TRAINING_STATISTICS_SPLIT!r} split ({path} missing; "
                f"splits: {', '.join(splits) or 'none recorded'}); nothing pushed.")
        files[serving_dir.TRAINING_STATISTICS_FILE] = path
        # No span here: StatisticsGen leaves its span property 0 (the
        # Examples carry it; the metadata's `data` lists the spans).
        metadata["training_statistics"] = {
            "file": serving_dir.TRAINING_STATISTICS_FILE, "split": TRAINING_STATISTICS_SPLIT,
            "uri": remote_uri(stats)}
    schemas = input_dict.get(SCHEMA_KEY) or []
    if schemas:
        files[serving_dir.SCHEMA_FILE] = io_utils.get_only_uri_in_dir(schemas[0].uri)
        metadata["schema"] = {"file": serving_dir.SCHEMA_FILE, "uri": remote_uri(schemas[0])}
    return files


def _pipeline_name(context) -> str:
    info = context.pipeline_info if context else None
    return info.id if info else ""


def _int_property(artifact, name: str) -> int:
    """ExampleGen records span/version as custom properties, not properties."""
    if artifact.has_custom_property(name):
        return artifact.get_int_custom_property(name)
    return getattr(artifact, name, 0) or 0
