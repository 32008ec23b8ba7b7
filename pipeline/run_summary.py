"""What happened in a pipeline run, read back from ML Metadata.

The local runner prints this after every run (and the HTML report renders
it): each component's status and duration, the validation result, eval
metrics against thresholds, the blessing verdict and the pushed version.
"""
import dataclasses
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import evaluation_results
from components.data_validation import drift
from components.data_validation.anomalies import AnomalyRow, load_anomaly_rows
from components.parquet_example_gen import executor as example_gen_executor
from components.naive_baselines import artifacts as naive_artifacts
from components.naive_baselines import reporting as naive_reporting
from components.serving_baseline import properties as baseline_properties
from components.versioned_pusher import executor as pusher_executor
from pipeline import node_ids
from tfx.types import artifact_utils

_STATE_NAMES = {
    metadata_store_pb2.Execution.NEW: "NEW",
    metadata_store_pb2.Execution.RUNNING: "RUNNING",
    metadata_store_pb2.Execution.COMPLETE: "COMPLETE",
    metadata_store_pb2.Execution.FAILED: "FAILED",
    metadata_store_pb2.Execution.CACHED: "CACHED",
    metadata_store_pb2.Execution.CANCELED: "CANCELED",
}


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    status: str
    seconds: float


@dataclasses.dataclass
class RunSummary:
    """One pipeline run, as recorded in ML Metadata."""

    pipeline_name: str
    run_id: str
    components: List[ComponentRun]
    anomalies: Optional[List[AnomalyRow]] = None
    evaluation: Optional[evaluation_results.EvaluationSummary] = None
    evaluation_uri: Optional[str] = None
    statistics_uri: Optional[str] = None
    statistics_splits: List[str] = dataclasses.field(default_factory=list)
    pushed: Optional[bool] = None
    push_reason: str = ""
    pushed_destination: str = ""
    # The served version the Evaluator compared against (None: no baseline).
    baseline_version: Optional[int] = None
    baseline_source: str = ""
    # What the drift check compared (None: the DriftValidator did not run).
    drift_note: Optional[str] = None
    # Keras' training metrics of the candidate (epoch averages), for the gap.
    train_metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    # What the runner cleaned up before this run (dead runs' executions,
    # broken serving versions); set by the runner, not read from MLMD.
    cleanup: List[str] = dataclasses.field(default_factory=list)
    # With --tune: the Tuner's best hyper-parameter values and every completed
    # trial ({"trial_id", "score" (validation AUC), values...}, best first).
    tuned_hyperparameters: Optional[Dict[str, object]] = None
    tuning_trials: Optional[List[Dict[str, object]]] = None
    # MLflow (components/experiment_tracking): the pusher's run and the
    # registered version, from the PushedModel; "" when none.
    mlflow_run_id: str = ""
    mlflow_registered_model: str = ""
    mlflow_model_version: str = ""
    mlflow_error: str = ""
    # How ExampleGen split train/eval (time: each station's cutoff), as
    # recorded on its Examples artifact; None when ExampleGen did not say.
    split_note: Optional[str] = None
    # The NaiveBaselines task's baselines.json (components/naive_baselines):
    # persistence, climatology and linear AUCs on the eval split.
    naive_baselines: Optional[dict] = None

    def status_of(self, node_id: str) -> Optional[str]:
        return next((c.status for c in self.components if c.node_id == node_id), None)


def collect_run_summary(
    connection_config: metadata_store_pb2.ConnectionConfig,
    pipeline_name: str,
    run_id: Optional[str] = None,
) -> Optional[RunSummary]:
    """Reads the given run (default: the newest run of the pipeline)."""
    store = metadata_store.MetadataStore(connection_config)
    run_context = _run_context(store, pipeline_name, run_id)
    if run_context is None:
        return None
    executions = sorted(
        store.get_executions_by_context(run_context.id),
        key=lambda e: e.create_time_since_epoch,
    )
    summary = RunSummary(pipeline_name, run_context.name, [])
    for execution in executions:
        node_id = _node_id(store, execution, pipeline_name)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        status = _STATE_NAMES.get(execution.last_known_state, "UNKNOWN")
        summary.components.append(ComponentRun(node_id, status, seconds))
        _read_outputs(store, execution, summary, node_id)
    return summary


def _run_context(store, pipeline_name: str, run_id: Optional[str]):
    pipeline_context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_context is None:
        return None
    runs = store.get_contexts_by_type("pipeline_run")
    # Several pipelines may share one store: keep the runs of this pipeline.
    pipeline_execution_ids = {e.id for e in store.get_executions_by_context(pipeline_context.id)}
    runs = [
        c for c in runs
        if run_id in (None, c.name)
        and any(e.id in pipeline_execution_ids for e in store.get_executions_by_context(c.id))
    ]
    return max(runs, key=lambda c: c.create_time_since_epoch, default=None)


def _node_id(store, execution, pipeline_name: str) -> str:
    prefix = pipeline_name + "."
    for context in store.get_contexts_by_execution(execution.id):
        if context.name.startswith(prefix) and context.type == "node":
            return context.name[len(prefix):]
    for context in store.get_contexts_by_execution(execution.id):
        if context.name.startswith(prefix):
            return context.name[len(prefix):]
    return execution.type or str(execution.id)


def _read_outputs(store, execution, summary: RunSummary, node_id: str = "") -> None:
    events = store.get_events_by_execution_ids([execution.id])
    # Keyed by output name: Transform also writes ExampleStatistics
    # (pre/post transform), which are not the data statistics.
    output_keys = {
        e.artifact_id: e.path.steps[0].key
        for e in events
        if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps
    }
    if not output_keys:
        return
    types = {t.id: t.name for t in store.get_artifact_types()}
    for artifact in store.get_artifacts_by_id(list(output_keys)):
        kind = types.get(artifact.type_id)
        if kind == "ExampleStatistics" and output_keys[artifact.id] == "statistics":
            summary.statistics_uri = artifact.uri
            summary.statistics_splits = artifact_utils.decode_split_names(
                artifact.properties["split_names"].string_value)
        elif kind == "ExampleAnomalies":
            splits = artifact_utils.decode_split_names(
                artifact.properties["split_names"].string_value)
            # ExampleValidator's schema anomalies and the DriftValidator's
            # drift findings, in one table.
            summary.anomalies = (summary.anomalies or []) + load_anomaly_rows(artifact.uri, splits)
            if node_id == node_ids.DRIFT_VALIDATOR:
                props = artifact.custom_properties
                summary.drift_note = (
                    props[drift.DRIFT_NOTE].string_value if drift.DRIFT_NOTE in props else "")

        elif kind == "Examples" and node_id == node_ids.EXAMPLE_GEN:
            props = artifact.custom_properties
            if example_gen_executor.SPLIT_SUMMARY_PROPERTY in props:
                summary.split_note = props[example_gen_executor.SPLIT_SUMMARY_PROPERTY].string_value
        elif kind == "HyperParameters":
            summary.tuned_hyperparameters = _read_json(
                artifact.uri, "best_hyperparameters.txt", {}).get("values")
        elif kind == "TunerResults":
            summary.tuning_trials = _read_json(artifact.uri, "tuner_results.json", None)
        elif kind == naive_artifacts.NaiveBaselineMetrics.TYPE_NAME:
            try:
                summary.naive_baselines = naive_artifacts.read_baselines(artifact.uri)
            except ValueError:  # a summary never fails on one unreadable artifact
                summary.naive_baselines = None
        elif kind == "ModelRun":
            summary.train_metrics = evaluation_results.keras_train_metrics(artifact.uri)
        elif kind == "ModelEvaluation":
            summary.evaluation_uri = artifact.uri
            summary.evaluation = evaluation_results.summarize(artifact.uri)
        elif kind == "Model" and baseline_properties.BASELINE_FOUND in artifact.custom_properties:
            props = artifact.custom_properties
            summary.baseline_source = props[baseline_properties.BASELINE_SOURCE].string_value
            if props[baseline_properties.BASELINE_FOUND].int_value:
                summary.baseline_version = props[baseline_properties.BASELINE_VERSION].int_value
        elif kind == "PushedModel":
            props = artifact.custom_properties
            summary.pushed = bool(props[pusher_executor.PUSHED].int_value)
            summary.push_reason = props[pusher_executor.PUSH_REASON].string_value
            summary.pushed_destination = props[pusher_executor.PUSHED_DESTINATION].string_value
            for field in ("mlflow_run_id", "mlflow_registered_model", "mlflow_model_version",
                          "mlflow_error"):
                if field in props:
                    setattr(summary, field, props[field].string_value)
            if execution.last_known_state == metadata_store_pb2.Execution.CACHED:
                # An earlier run's push, reused: nothing was pushed by this run.
                summary.push_reason = (
                    "unchanged model, the pusher's earlier result was reused (cache)"
                    + (f"; it is served as {summary.pushed_destination}"
                       if summary.pushed else f": {summary.push_reason}"))
                summary.pushed = False


def _read_json(directory: str, name: str, default):
    """The JSON file `name` in an artifact directory; `default` if absent or unreadable."""
    import json

    from tfx.utils import io_utils

    try:
        return json.loads(io_utils.read_string_file(f"{directory.rstrip('/')}/{name}"))
    except Exception:  # a summary never fails on one unreadable artifact
        return default


def format_tuning(summary: RunSummary) -> List[str]:
    """The Tuner's search: its best validation AUC and the values the Trainer got."""
    if summary.tuned_hyperparameters is None and summary.tuning_trials is None:
        return []
    trials = summary.tuning_trials or []
    best = max((t.get("score") for t in trials if t.get("score") is not None), default=None)
    values = ", ".join(f"{name} {_hp_text(value)}"
                       for name, value in sorted((summary.tuned_hyperparameters or {}).items()))
    cached = " (cached: an earlier run's search)" if summary.status_of(node_ids.TUNER) == "CACHED" else ""
    auc = "not recorded" if best is None else f"{best:.4f}"
    count = f"{len(trials)} trial{'' if len(trials) == 1 else 's'}"
    return [f"Tuning: {count}{cached}, best validation AUC {auc}",
            f"  Trainer's hyper-parameters from the search: {values or 'none recorded'}"]


def _hp_text(value) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def format_run_summary(summary: RunSummary, components: bool = True) -> str:
    """A plain-text report for the terminal.

    `components=False` leaves out the component/status/seconds table, for a
    console that already showed one line per component as it ended.
    """
    lines = [f"Pipeline {summary.pipeline_name}, run {summary.run_id}", ""]
    if components:
        lines.append(f"  {'component':<32}{'status':<10}{'seconds':>8}")
        for c in summary.components:
            lines.append(f"  {c.node_id:<32}{c.status:<10}{c.seconds:>8.1f}")
        lines.append("")
    if summary.cleanup:
        lines.append("Clean-up at start:")
        lines += [f"  - {note}" for note in summary.cleanup]
    if summary.split_note:
        lines.append(f"Split: {summary.split_note}")
    lines.extend(_format_validation(summary))
    lines.extend(format_tuning(summary))
    lines.extend(_format_evaluation(summary))
    lines.extend(_format_push(summary))
    return "\n".join(lines)


def _format_validation(summary: RunSummary) -> List[str]:
    drift_line = [] if summary.drift_note is None else [f"Drift: {summary.drift_note}"]
    if summary.anomalies is None:
        return ["Data validation: not run"] + drift_line
    if not summary.anomalies:
        return ["Data validation: no anomalies"] + drift_line
    lines = [f"Data validation: {len(summary.anomalies)} anomalies (run stopped before Transform)"]
    lines += [f"  [{a.split}] {a.feature}: {a.anomaly} - {a.description}" for a in summary.anomalies]
    return lines + drift_line


def _format_evaluation(summary: RunSummary) -> List[str]:
    evaluation = summary.evaluation
    if evaluation is None:
        return ["Evaluation: not run"]
    lines = ["Evaluation (overall slice):"]
    candidate = evaluation.metrics.get(evaluation_results.CANDIDATE, {})
    baseline = evaluation.metrics.get(evaluation_results.BASELINE, {})
    for name in sorted(set(candidate) | set(evaluation.undefined)):
        if name in evaluation.undefined:
            text = f"  {name:<20}{'undefined':>10}   ({evaluation.undefined[name]})"
        else:
            text = f"  {name:<20}{candidate[name]:>10.4f}"
        if name in baseline:
            text += f"   baseline {baseline[name]:.4f}"
        rule = evaluation.thresholds.get(name)
        if name == evaluation_results.MEAN_LABEL and rule:
            text += "   threshold strictly between 0 and 1 (both classes present)"
        elif rule:
            text += "   threshold " + _describe_threshold(rule, evaluation.has_baseline)
        lines.append(text)
    lines.append(f"Eval examples: {eval_size(evaluation)}")
    lines.append(f"Train/eval gap: {train_eval_gap(summary)}")
    lines.extend(format_slice_gates(evaluation))
    # After the station table (whose rows start with the station's name too).
    lines.extend(naive_reporting.summary_lines(evaluation, summary.naive_baselines))
    compared = ""
    if evaluation.has_baseline:
        served = ("" if summary.baseline_version is None else
                  f", served version {summary.baseline_version} in {summary.baseline_source}")
        compared = f" (compared with the latest blessed model{served})"
    if evaluation.blessed:
        met = ("all blocking thresholds met, station warnings below" if evaluation.warnings
               else "all thresholds met")
        why = met + (
            compared or " (first model: no baseline, absolute thresholds only)")
        lines.append(f"Blessed: yes, {why}")
    else:
        lines.append("Blessed: no" + compared)
        lines += [f"  - {f}" for f in evaluation.failures]
    if evaluation.warnings:
        lines.append("Per-station warnings (--slice-gates warn: reported, the blessing is not refused):")
        lines += [f"  - report only: {w}" for w in evaluation.warnings]
    return lines


def slice_gate_result(gate: evaluation_results.SliceGateResult,
                      gates: evaluation_results.SliceGates) -> str:
    """'passed', 'FAILED (< 0.65)', 'too small to gate (< 50 eval examples)', ..."""
    if gate.status == evaluation_results.PASSED:
        return "passed"
    if gate.status == evaluation_results.TOO_SMALL:
        return f"too small to gate (< {evaluation_results.bound_text(gates.min_examples)} eval examples)"
    if gate.status == evaluation_results.UNDEFINED:
        text = "FAILED: one class only, AUC undefined"
    else:
        text = f"FAILED (< {evaluation_results.bound_text(gates.min_auc)})"
    return text + (", report only" if gates.mode == evaluation_results.WARN else "")


def format_slice_gates(evaluation: evaluation_results.EvaluationSummary) -> List[str]:
    """The per-station gates: mode and thresholds, then one line per station."""
    gates = evaluation.slice_gates
    if gates is None:
        return []
    lines = [f"Per-station gates: {gates.describe()}"]
    if not gates.slices:
        return lines
    column = "/".join(sorted({g.column for g in gates.slices}))
    lines.append(f"  {column:<20}{'examples':>10}{'auc':>11}   result")
    for gate in gates.slices:
        examples = "?" if gate.examples is None else str(gate.examples)
        auc = "undefined" if gate.auc is None else f"{gate.auc:.4f}"
        lines.append(f"  {gate.value:<20}{examples:>10}{auc:>11}   {slice_gate_result(gate, gates)}")
    return lines


def eval_size(evaluation: evaluation_results.EvaluationSummary) -> str:
    if evaluation.eval_examples is None:
        return "not counted"
    floor = evaluation.thresholds.get(evaluation_results.EXAMPLE_COUNT, {}).get("lower_bound")
    if floor is None:
        return str(evaluation.eval_examples)
    verdict = "enough" if evaluation.eval_examples >= floor else "too few to bless"
    return f"{evaluation.eval_examples} (minimum {floor:g}: {verdict})"


def train_eval_gap(summary: RunSummary) -> str:
    """Train AUC (Keras, over the training epoch) vs eval AUC (TFMA), and the gap."""
    evaluation = summary.evaluation
    train = summary.train_metrics.get(evaluation_results.AUC)
    if train is None:
        return "no training AUC recorded"
    if evaluation is None or evaluation_results.AUC in evaluation.undefined:
        return f"train AUC {train:.4f}, eval AUC undefined"
    eval_auc = evaluation.metrics.get(evaluation_results.CANDIDATE, {}).get(evaluation_results.AUC)
    if eval_auc is None:
        return f"train AUC {train:.4f}, eval AUC not computed"
    return (f"train AUC {train:.4f} (Keras, averaged over training) vs eval AUC "
            f"{eval_auc:.4f}: gap {train - eval_auc:+.4f}")


def _describe_threshold(rule: Dict[str, float], has_baseline: bool) -> str:
    parts = []
    if "lower_bound" in rule:
        parts.append(f">= {rule['lower_bound']:g}")
    if "upper_bound" in rule:
        parts.append(f"<= {rule['upper_bound']:g}")
    if "max_decrease" in rule:
        parts.append(f"no more than {rule['max_decrease']:g} below baseline"
                     + ("" if has_baseline else " (no baseline yet)"))
    return ", ".join(parts)


def _format_push(summary: RunSummary) -> List[str]:
    if summary.pushed is None:
        if summary.status_of(node_ids.PUSHER) == "FAILED":
            return ["Push: the pusher failed, nothing pushed (see the error above)"]
        return ["Push: pusher did not run, nothing pushed"]
    if summary.pushed:
        return [f"Pushed: {summary.pushed_destination}"] + format_mlflow(summary)
    return [f"Not pushed: {summary.push_reason}"] + format_mlflow(summary)


def format_mlflow(summary: RunSummary) -> List[str]:
    """The pusher's MLflow run and registered version; a tracking failure loudly."""
    if summary.status_of(node_ids.PUSHER) == "CACHED":
        return []  # an earlier run's MLflow run; the runner logs this one
    lines = []
    if summary.mlflow_run_id:
        registered = (f"; registered model {summary.mlflow_registered_model} version "
                      f"{summary.mlflow_model_version} (alias serving)"
                      if summary.mlflow_model_version else "; no registered version")
        lines.append(f"MLflow: run {summary.mlflow_run_id}{registered}")
    if summary.mlflow_error:
        lines.append(f"MLflow: FAILED (the push itself stands): {summary.mlflow_error}")
    return lines
