"""Executors: the served baseline, and an Evaluator that may run without one.

Why not TFX's `Resolver(LatestBlessedModelStrategy)`: the KubeflowV2 compiler
turns it into KFP *resolver* executors, which only Vertex AI implements (the
open-source KFP backend rejects the whole pipeline: "resolver executors not
implemented"). The serving directory already is the record of blessed models
(the pusher writes only blessed ones, each version once), so the baseline is
read from there, by an ordinary container task that runs the same everywhere.
"""
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils

from components import evaluation_results
from components.artifact_uris import remote_uri
from components.naive_baselines import artifacts as naive_artifacts
from components.naive_baselines import gate as naive_gate
from components.serving_baseline.properties import (
    BASELINE_FOUND, BASELINE_MODEL_URI, BASELINE_SOURCE, BASELINE_VERSION)
from serving import model_dir as serving_dir

CANDIDATE_KEY = "candidate"
# BaselineAwareEvaluator's extra input and parameter (components/naive_baselines/gate.py).
NAIVE_BASELINES_KEY = "naive_baselines"
MIN_MARGIN_KEY = "min_margin_over_persistence"
BASELINE_KEY = "model"
SERVING_BASE_KEY = "serving_base"
NO_BASELINE_FILE = "NO_BASELINE"
MODEL_NAME_KEY = "model_name"


def newest_served_version(model_dir: str, exclude_model_uri: str = "") -> Optional[int]:
    """The newest version under `model_dir` holding a SavedModel.

    A version whose push_metadata.json names `exclude_model_uri` is skipped:
    comparing a candidate with itself would say nothing.
    """
    for version in reversed(serving_dir.existing_versions(model_dir)):
        version_dir = os.path.join(model_dir, str(version))
        if not fileio.exists(os.path.join(version_dir, "saved_model.pb")):
            logging.warning("Skipping %s as a baseline: it holds no saved_model.pb.", version_dir)
            continue
        metadata = serving_dir.read_metadata(model_dir, version) or {}
        if exclude_model_uri and metadata.get("model_uri") == exclude_model_uri:
            continue
        return version
    return None


def has_saved_model(model: types.Artifact) -> bool:
    """Whether a Model artifact holds a serving SavedModel (an absent baseline does not)."""
    return fileio.exists(os.path.join(path_utils.serving_model_path(model.uri), "saved_model.pb"))


class Executor(base_executor.BaseExecutor):
    """Copies the newest served version into the output Model (Format-Serving)."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        baseline = artifact_utils.get_single_instance(output_dict[BASELINE_KEY])
        candidates = input_dict.get(CANDIDATE_KEY) or []
        candidate_uri = remote_uri(candidates[0]) if candidates else ""
        model_dir = os.path.join(exec_properties[SERVING_BASE_KEY], exec_properties[MODEL_NAME_KEY])
        baseline.set_string_custom_property(BASELINE_SOURCE, model_dir)

        version = newest_served_version(model_dir, exclude_model_uri=candidate_uri)
        if version is None:
            logging.info("No served version under %s: the Evaluator runs without a baseline "
                         "(absolute thresholds only).", model_dir)
            baseline.set_int_custom_property(BASELINE_FOUND, 0)
            # An explicit marker, so the artifact exists wherever it is copied.
            io_utils.write_string_file(
                os.path.join(baseline.uri, NO_BASELINE_FILE),
                f"No served model version under {model_dir} when this ran; the Evaluator "
                "evaluated the candidate without a baseline.\n")
            return
        source = os.path.join(model_dir, str(version))
        io_utils.copy_dir(source, path_utils.serving_model_dir(baseline.uri))
        metadata = serving_dir.read_metadata(model_dir, version) or {}
        baseline.set_int_custom_property(BASELINE_FOUND, 1)
        baseline.set_int_custom_property(BASELINE_VERSION, version)
        baseline.set_string_custom_property(BASELINE_MODEL_URI, metadata.get("model_uri", ""))
        logging.info("Baseline: served version %s (%s).", version, source)


class EvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator executor; an empty baseline Model means "no baseline".

    TFX's own Evaluator has no baseline when its baseline channel is empty;
    a container task always hands over an artifact, so an artifact without a
    SavedModel is dropped here and the run proceeds exactly as TFX's would
    (change thresholds are skipped, absolute ones still apply).

    After TFMA has validated, the blessing is rewritten to the verdict of
    `evaluation_results.summarize`: TFMA's, except that failures on a
    station slice too small to gate (or, with --slice-gates warn, on any
    station slice) do not refuse it, and an undefined overall metric always
    does. The run summary, the report and the pusher read the same verdict.

    With `naive_baselines` (a NaiveBaselineMetrics artifact) the candidate's
    overall AUC is also compared with persistence's: below persistence's AUC
    + `min_margin_over_persistence` it is not blessed (no margin: reported
    only). The judgement is recorded beside TFMA's results
    (components/naive_baselines/gate.py), where `summarize` finds it.
    """

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        naive_baselines = input_dict.get(NAIVE_BASELINES_KEY) or []
        margin = exec_properties.get(MIN_MARGIN_KEY)
        # TFX's executor sees exactly the Evaluator's own inputs and parameters.
        input_dict = {k: v for k, v in input_dict.items() if k != NAIVE_BASELINES_KEY}
        exec_properties = {k: v for k, v in exec_properties.items() if k != MIN_MARGIN_KEY}
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        if baselines and not all(has_saved_model(b) for b in baselines):
            logging.info("The baseline Model at %s is empty: evaluating without a baseline.",
                         baselines[0].uri)
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        super().Do(input_dict, output_dict, exec_properties)
        blessings = output_dict.get(standard_component_specs.BLESSING_KEY) or []
        evaluations = output_dict.get(standard_component_specs.EVALUATION_KEY) or []
        if evaluations and naive_baselines:
            record_naive_baseline_gate(naive_baselines[0].uri, evaluations[0].uri, margin)
        if blessings and evaluations and blessings[0].has_custom_property(BLESSED_PROPERTY):
            apply_verdict(blessings[0], evaluations[0].uri)


def record_naive_baseline_gate(baselines_uri: str, evaluation_uri: str,
                               margin: Optional[float]) -> dict:
    """Judges the candidate against persistence and records it beside TFMA's results.

    Raises:
      ValueError: the NaiveBaselineMetrics artifact holds no (valid) baselines.json.
    """
    data = naive_artifacts.read_baselines(baselines_uri)
    if data is None:
        raise ValueError(f"The naive baselines input at {baselines_uri} holds no "
                         f"{naive_artifacts.BASELINES_FILE}: cannot compare the candidate with "
                         "persistence (did the NaiveBaselines task fail?)")
    candidate = evaluation_results.overall_metrics(evaluation_uri).get(evaluation_results.CANDIDATE, {})
    undefined = evaluation_results.undefined_metrics(candidate)
    auc = None if evaluation_results.AUC in undefined else candidate.get(evaluation_results.AUC)
    record = naive_gate.judge(data, auc, None if margin is None else float(margin),
                              candidate_note=undefined.get(evaluation_results.AUC))
    naive_gate.write_record(evaluation_uri, record)
    logging.info("Naive baselines: %s", naive_gate.comparison_line(auc, data))
    log = logging.warning if record["status"] in (naive_gate.FAILED, naive_gate.NOT_APPLIED) else logging.info
    log("Margin over persistence: %s: %s", record["status"], record["message"])
    return record


BLESSED_PROPERTY = evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY
BLESSED_FILE = evaluator_constants.BLESSED_FILE_NAME
NOT_BLESSED_FILE = evaluator_constants.NOT_BLESSED_FILE_NAME


def apply_verdict(blessing: types.Artifact, evaluation_uri: str) -> evaluation_results.EvaluationSummary:
    """Makes the blessing artifact say what `summarize(evaluation_uri)` decided.

    TFX wrote BLESSED or NOT_BLESSED from TFMA's validation_ok; this replaces
    the marker file and the `blessed` property when the per-station gates'
    waivers (or an undefined metric) change the verdict, and logs why.
    """
    summary = evaluation_results.summarize(evaluation_uri)
    tfma_blessed = bool(blessing.get_int_custom_property(BLESSED_PROPERTY))
    for line in summary.warnings:
        logging.warning("Per-station gate (report only): %s", line)
    for gate in (summary.slice_gates.slices if summary.slice_gates else []):
        logging.info("Per-station gate: %s [%s]", gate.message, gate.status)
    if summary.blessed == tfma_blessed:
        return summary
    keep, drop = ((BLESSED_FILE, NOT_BLESSED_FILE) if summary.blessed
                  else (NOT_BLESSED_FILE, BLESSED_FILE))
    stale = os.path.join(blessing.uri, drop)
    if fileio.exists(stale):
        fileio.remove(stale)
    io_utils.write_string_file(os.path.join(blessing.uri, keep), "")
    blessing.set_int_custom_property(BLESSED_PROPERTY, int(summary.blessed))
    logging.info("Blessing changed from TFMA's %s to %s: %s", tfma_blessed, summary.blessed,
                 "; ".join(summary.failures) or "only waived per-station failures (too small "
                 "to gate, or report only)")
    return summary
