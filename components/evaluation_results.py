"""Reads an Evaluator's output into plain dicts: metrics, thresholds, verdict.

Shared by the pusher (which records them beside each pushed version) and the
runners' summaries, so "why was this model (not) blessed" is answered the
same way everywhere.
"""
import dataclasses
import glob
import json
import os
import re
from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma
from tfx.dsl.io import fileio

from components.naive_baselines import gate as naive_gate

CANDIDATE = "candidate"
BASELINE = "baseline"
EXAMPLE_COUNT = "example_count"
MEAN_LABEL = "mean_label"
AUC = "auc"
# The eval config's marker of --slice-gates warn (pipeline/eval_config.py):
# an ExampleCount under this name; it is no metric to report.
REPORT_ONLY_MARKER = "slice_gates_report_only"
BLOCK, WARN, OFF = "block", "warn", "off"
# What a gated slice (a station) came to.
PASSED, FAILED, UNDEFINED, TOO_SMALL = "passed", "failed", "undefined", "too small to gate"
REFUSED = "blessing refused: "
# Metrics that are undefined on an eval set of one class (0/0 rates).
_UNDEFINED_WITHOUT_POSITIVES = ("auc", "recall")
_UNDEFINED_WITHOUT_NEGATIVES = ("auc",)


@dataclasses.dataclass
class SliceGateResult:
    """One gated slice (a station): its numbers and what the gate made of them.

    Attributes:
      column, value: the slice, e.g. "station", "seattle".
      examples: its eval example count (None: not computed).
      auc: its AUC (None: undefined, one class, or not computed).
      status: PASSED, FAILED (AUC below the floor), UNDEFINED (one class:
        never blessed by this slice) or TOO_SMALL (fewer eval examples than
        the minimum: reported, not gated).
      message: one line naming slice, AUC, example count and threshold.
    """

    column: str
    value: str
    examples: Optional[int]
    auc: Optional[float]
    status: str
    message: str

    @property
    def name(self) -> str:
        return f"{self.column} {self.value}"


@dataclasses.dataclass
class SliceGates:
    """The per-slice (per-station) gates of one evaluation.

    Attributes:
      mode: BLOCK (a failing slice refuses the blessing), WARN (reported
        only) or OFF (no per-slice thresholds in the eval config).
      min_auc: the slices' AUC floor; min_examples: the fewest eval examples
        a slice needs to be gated (None with OFF).
      slices: every gated slice, in slice order.
    """

    mode: str
    min_auc: Optional[float] = None
    min_examples: Optional[float] = None
    slices: List[SliceGateResult] = dataclasses.field(default_factory=list)

    def failing(self) -> List[SliceGateResult]:
        """Slices below the floor or with AUC undefined (refusing, unless WARN)."""
        return [s for s in self.slices if s.status in (FAILED, UNDEFINED)]

    def describe(self) -> str:
        """'block: AUC >= 0.65 on each station with >= 50 eval examples'."""
        if self.mode == OFF:
            return "off (no per-station thresholds)"
        columns = sorted({s.column for s in self.slices}) or ["slice"]
        what = {BLOCK: "a failing slice refuses the blessing",
                WARN: "report only, a failing slice does not refuse the blessing"}[self.mode]
        return (f"{self.mode} ({what}): AUC >= {bound_text(self.min_auc)}, both classes present, "
                f"on each {'/'.join(columns)} slice with >= {bound_text(self.min_examples)} "
                "eval examples")


def bound_text(bound: Optional[float]) -> str:
    """A threshold as printed: 0.65, 50; '?' when the eval config has none."""
    return "?" if bound is None else f"{bound:g}"


@dataclasses.dataclass
class EvaluationSummary:
    """What an Evaluator run decided and on which numbers.

    Attributes:
      metrics: {"candidate"|"baseline": {metric name: value}} on the overall slice.
      thresholds: {metric name: {"lower_bound"?, "max_decrease"?}} from the config.
      blessed: whether every threshold passed (TFMA's validation_ok).
      failures: human-readable reasons, one per failed threshold.
      has_baseline: whether a previously blessed model was compared against.
      undefined: {metric name: why} for metrics that have no value on this
        eval set (AUC with one class); they are left out of `metrics`.
      eval_examples: the candidate's eval example count (None: not computed).
      slice_gates: the per-station gates (None: an evaluation without them).
      warnings: failing slices that did not refuse the blessing (WARN mode).
      naive_baselines: the naive baselines and the margin-over-persistence
        judgement BaselineAwareEvaluator recorded (components/naive_baselines/
        gate.py: status, message, margin, candidate/persistence AUC,
        "baselines"); None: evaluated without naive baselines.
    """

    metrics: Dict[str, Dict[str, float]]
    thresholds: Dict[str, Dict[str, float]]
    blessed: bool
    failures: List[str]
    has_baseline: bool
    undefined: Dict[str, str] = dataclasses.field(default_factory=dict)
    eval_examples: Optional[int] = None
    slice_gates: Optional[SliceGates] = None
    warnings: List[str] = dataclasses.field(default_factory=list)
    naive_baselines: Optional[dict] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _metric_value(value) -> float:
    if value.HasField("double_value"):
        return value.double_value.value
    if value.HasField("bounded_value"):
        return value.bounded_value.value.value
    return float("nan")


def overall_metrics(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
    """Scalar metrics of the overall slice, keyed by model role."""
    result: Dict[str, Dict[str, float]] = {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        if metrics_for_slice.slice_key.single_slice_keys:
            continue
        for item in metrics_for_slice.metric_keys_and_values:
            if item.key.HasField("sub_key") or item.key.is_diff:
                continue
            if item.key.name == REPORT_ONLY_MARKER:
                continue
            role = BASELINE if item.key.model_name == BASELINE else CANDIDATE
            value = _metric_value(item.value)
            if value == value:  # skip NaN (non-scalar metrics)
                result.setdefault(role, {})[item.key.name] = value
    return result


def sliced_metrics(evaluation_uri: str) -> List[dict]:
    """Candidate metrics per slice: [{"slice": "station=seattle", name: value}]."""
    rows = []
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        keys = metrics_for_slice.slice_key.single_slice_keys
        label = ", ".join(f"{k.column}={_slice_value(k)}" for k in keys) or "Overall"
        row = {"slice": label}
        for item in metrics_for_slice.metric_keys_and_values:
            if (item.key.model_name == BASELINE or item.key.is_diff
                    or item.key.HasField("sub_key") or item.key.name == REPORT_ONLY_MARKER):
                continue
            value = _metric_value(item.value)
            if value == value:
                row[item.key.name] = value
        rows.append(row)
    return rows


def _slice_value(key) -> str:
    if key.HasField("bytes_value"):
        return key.bytes_value.decode()
    if key.HasField("int64_value"):
        return str(key.int64_value)
    return f"{key.float_value:g}"


def _stored_eval_config(evaluation_uri: str) -> dict:
    path = os.path.join(evaluation_uri, "eval_config.json")
    if not fileio.exists(path):
        return {}
    with fileio.open(path) as f:
        return json.loads(f.read()).get("evalConfig", {})


def _gated_column(slicing_spec: dict) -> Optional[str]:
    """The column of a per-slice spec that gates each value ('station'), else None."""
    keys = slicing_spec.get("featureKeys") or []
    if len(keys) == 1 and not slicing_spec.get("featureValues") and not slicing_spec.get("sliceKeysSql"):
        return keys[0]
    return None


def configured_thresholds(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
    """Thresholds of the overall slice, from the eval config TFMA stores beside its results.

    Per-station thresholds are left out (they may differ: `slice_gates`).
    """
    eval_config = _stored_eval_config(evaluation_uri)
    thresholds: Dict[str, Dict[str, float]] = {}
    for spec in eval_config.get("metricsSpecs", []):
        for metric in spec.get("metrics", []):
            rules = [metric.get("threshold")] + [
                p.get("threshold") for p in metric.get("perSliceThresholds", [])
                if any(not s for s in p.get("slicingSpecs", []))]
            for threshold in filter(None, rules):
                entry = thresholds.setdefault(_metric_name(metric), {})
                lower = threshold.get("valueThreshold", {}).get("lowerBound")
                if lower is not None:
                    entry["lower_bound"] = float(lower)
                upper = threshold.get("valueThreshold", {}).get("upperBound")
                if upper is not None:
                    entry["upper_bound"] = float(upper)
                change = threshold.get("changeThreshold", {}).get("absolute")
                if change is not None:
                    entry["max_decrease"] = -float(change)
    return thresholds


def _metric_name(metric: dict) -> str:
    """The metric's key name: its configured name, else TFMA's snake_case of the class."""
    config = json.loads(metric.get("config") or "{}")
    return config.get("name") or re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", metric["className"]).lower()


def describe_failure(failure) -> str:
    """One line: which metric, measured how, against which threshold."""
    value = _metric_value(failure.metric_value)
    threshold = failure.metric_threshold
    name = failure.metric_key.name
    if name == EXAMPLE_COUNT and not failure.metric_key.is_diff:
        return (f"only {value:.0f} eval examples, fewer than the minimum "
                f"{threshold.value_threshold.lower_bound.value:.0f} a blessing may rest on")
    if name == MEAN_LABEL and not failure.metric_key.is_diff:
        return (f"the eval set has one class only (mean label {value:g}: "
                f"{'no' if value < 0.5 else 'only'} positive examples), so AUC is undefined")
    if failure.metric_key.is_diff:
        allowed = threshold.change_threshold.absolute.value
        return (f"{failure.metric_key.name} is {value:+.4f} vs the baseline "
                f"(latest blessed model); allowed change >= {allowed:+.4f}")
    rule = threshold.value_threshold
    bound = (f">= {rule.lower_bound.value:g}" if rule.HasField("lower_bound")
             else f"<= {rule.upper_bound.value:g}")
    return f"{failure.metric_key.name} = {value:.4f}, required {bound}"


def gated_slice_thresholds(eval_config: dict) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{column: {metric: {"lower_bound"?, "upper_bound"?}}} of the per-slice gates."""
    gated: Dict[str, Dict[str, Dict[str, float]]] = {}
    for spec in eval_config.get("metricsSpecs", []):
        for metric in spec.get("metrics", []):
            for per_slice in metric.get("perSliceThresholds", []):
                bounds = per_slice.get("threshold", {}).get("valueThreshold", {})
                for slicing_spec in per_slice.get("slicingSpecs", []):
                    column = _gated_column(slicing_spec)
                    if column is None:
                        continue
                    entry = gated.setdefault(column, {}).setdefault(_metric_name(metric), {})
                    for key, name in (("lowerBound", "lower_bound"), ("upperBound", "upper_bound")):
                        if bounds.get(key) is not None:
                            entry[name] = float(bounds[key])
    return gated


def _gate_mode(eval_config: dict, gated: dict) -> str:
    if not gated:
        return OFF
    names = {_metric_name(m) for spec in eval_config.get("metricsSpecs", [])
             for m in spec.get("metrics", [])}
    return WARN if REPORT_ONLY_MARKER in names else BLOCK


def _gate_message(column: str, value: str, status: str, examples: Optional[int],
                  auc: Optional[float], mean_label: Optional[float], rules: dict) -> str:
    floor = bound_text(rules.get(AUC, {}).get("lower_bound"))
    minimum = bound_text(rules.get(EXAMPLE_COUNT, {}).get("lower_bound"))
    count = "?" if examples is None else str(examples)
    auc_text = "not computed" if auc is None else f"{auc:.3f}"
    if status == TOO_SMALL:
        return (f"{column} {value}: {count} eval examples, fewer than {minimum}: too small "
                f"to gate (AUC {auc_text}, floor {floor})")
    if status == UNDEFINED:
        kind = "no positive" if (mean_label or 0.0) < 0.5 else "no negative"
        return (f"{column} {value} AUC undefined: its {count} eval examples are of one class "
                f"({kind} examples), so it cannot pass the floor {floor}")
    if status == FAILED:
        return f"{column} {value} AUC {auc_text} < {floor} ({count} eval examples)"
    return f"{column} {value} AUC {auc_text} >= {floor} ({count} eval examples)"


def slice_gates(evaluation_uri: str, validation=None) -> SliceGates:
    """What the per-slice gates made of each gated slice, from TFMA's own results.

    The status of a slice is read from TFMA's validation failures on it (its
    example_count, mean_label and AUC thresholds); its numbers from the
    sliced metrics.
    """
    eval_config = _stored_eval_config(evaluation_uri)
    gated = gated_slice_thresholds(eval_config)
    mode = _gate_mode(eval_config, gated)
    if mode == OFF:
        return SliceGates(mode)
    if validation is None:
        validation = tfma.load_validation_result(evaluation_uri)
    failed_names: Dict[tuple, set] = {}
    for per_slice in validation.metric_validations_per_slice:
        keys = per_slice.slice_key.single_slice_keys
        if len(keys) == 1 and keys[0].column in gated:
            failed_names[(keys[0].column, _slice_value(keys[0]))] = {
                f.metric_key.name for f in per_slice.failures}
    results = []
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        keys = metrics_for_slice.slice_key.single_slice_keys
        if len(keys) != 1 or keys[0].column not in gated:
            continue
        column, value = keys[0].column, _slice_value(keys[0])
        values = {item.key.name: _metric_value(item.value)
                  for item in metrics_for_slice.metric_keys_and_values
                  if item.key.model_name != BASELINE and not item.key.is_diff
                  and not item.key.HasField("sub_key")}
        names = failed_names.get((column, value), set())
        if EXAMPLE_COUNT in names:
            status = TOO_SMALL
        elif MEAN_LABEL in names:
            status = UNDEFINED
        elif names:
            status = FAILED
        else:
            status = PASSED
        count = values.get(EXAMPLE_COUNT)
        examples = None if count is None or count != count else int(count)
        mean_label = values.get(MEAN_LABEL)
        auc = values.get(AUC)
        if auc is not None and (auc != auc or undefined_metrics(
                {AUC: auc, MEAN_LABEL: mean_label if mean_label is not None else 0.5})):
            auc = None
        results.append(SliceGateResult(column, value, examples, auc, status, _gate_message(
            column, value, status, examples, auc, mean_label, gated[column])))
    # A slice TFMA failed but whose metrics are missing still refuses.
    seen = {(r.column, r.value) for r in results}
    for (column, value), names in failed_names.items():
        if names and (column, value) not in seen:
            results.append(SliceGateResult(
                column, value, None, None, FAILED,
                f"{column} {value} failed {', '.join(sorted(names))} (its metrics are missing)"))
    results.sort(key=lambda r: (r.column, r.value))
    some = next(iter(gated.values()))
    return SliceGates(mode, some.get(AUC, {}).get("lower_bound"),
                      some.get(EXAMPLE_COUNT, {}).get("lower_bound"), results)


def summarize(evaluation_uri: str) -> EvaluationSummary:
    """Metrics, thresholds and the blessing verdict of one Evaluator run.

    The verdict is TFMA's, with the per-station gates' waivers: failures on
    a station slice too small to gate, and (WARN mode) any station
    failure, do not refuse the blessing. BaselineAwareEvaluator writes this
    verdict into the blessing, so the summary and the pusher agree.
    """
    validation = tfma.load_validation_result(evaluation_uri)
    gates = slice_gates(evaluation_uri, validation)
    gated_columns = {s.column for s in gates.slices}
    if gates.mode != OFF:
        gated_columns |= set(gated_slice_thresholds(_stored_eval_config(evaluation_uri)))
    failures, gated_failure_seen = [], False
    for per_slice in validation.metric_validations_per_slice:
        keys = per_slice.slice_key.single_slice_keys
        if per_slice.failures and len(keys) == 1 and keys[0].column in gated_columns:
            gated_failure_seen = True  # judged below, by the gate
            continue
        where = ", ".join(f"{k.column}={_slice_value(k)}" for k in keys)
        for failure in per_slice.failures:
            failures.append(describe_failure(failure) + (f" (slice {where})" if where else ""))
    refusals = [REFUSED + s.message for s in gates.failing()] if gates.mode == BLOCK else []
    warnings = [s.message for s in gates.failing()] if gates.mode == WARN else []
    failures += refusals
    if validation.missing_thresholds:
        failures.append("a thresholded metric was not computed")
    incomplete = bool(validation.missing_thresholds or validation.missing_slices
                      or validation.missing_cross_slices)
    # TFMA refused only for gated slices, each one waived: too small, or WARN.
    waived_only = gated_failure_seen and not failures and not incomplete
    # The margin over persistence, judged after TFMA by BaselineAwareEvaluator.
    naive_record = naive_gate.read_record(evaluation_uri)
    if naive_gate.refuses(naive_record):
        failures.append(REFUSED + naive_record["message"])
    metrics = overall_metrics(evaluation_uri)
    candidate = metrics.get(CANDIDATE, {})
    undefined = undefined_metrics(candidate)
    for role in metrics.values():
        for name in undefined:
            role.pop(name, None)
    count = candidate.get(EXAMPLE_COUNT)
    return EvaluationSummary(
        metrics=metrics,
        thresholds=configured_thresholds(evaluation_uri),
        # Never blessed on an undefined metric, even with an old eval config.
        blessed=((bool(validation.validation_ok) or waived_only) and not undefined
                 and not naive_gate.refuses(naive_record)),
        failures=failures,
        has_baseline=BASELINE in metrics,
        undefined=undefined,
        eval_examples=None if count is None else int(count),
        slice_gates=gates,
        warnings=warnings,
        naive_baselines=naive_record,
    )


def undefined_metrics(candidate: Dict[str, float]) -> Dict[str, str]:
    """{metric: why undefined} when the eval set holds one class only."""
    mean_label = candidate.get(MEAN_LABEL)
    if mean_label is None:
        return {}
    if mean_label <= 0.0:
        why = "the eval set has no positive examples"
        names = _UNDEFINED_WITHOUT_POSITIVES
    elif mean_label >= 1.0:
        why = "the eval set has no negative examples"
        names = _UNDEFINED_WITHOUT_NEGATIVES
    else:
        return {}
    return {name: why for name in names if name in candidate}


def keras_train_metrics(model_run_uri: str) -> Dict[str, float]:
    """Keras' training metrics (epoch averages) from the Trainer's TensorBoard logs.

    {"auc": ..., "loss": ...} from `<model_run>/train/` events, the last value
    of each `epoch_<name>` tag; {} if there are none.
    """
    import tensorflow as tf

    result: Dict[str, float] = {}
    for path in sorted(glob.glob(os.path.join(model_run_uri, "train", "*tfevents*"))):
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if not value.tag.startswith("epoch_"):
                        continue
                    if value.HasField("tensor"):
                        number = float(tf.make_ndarray(value.tensor))
                    else:
                        number = float(value.simple_value)
                    result[value.tag[len("epoch_"):]] = number
        except tf.errors.DataLossError:  # a truncated last record
            continue
    return result
