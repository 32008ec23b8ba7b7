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

CANDIDATE = "candidate"
BASELINE = "baseline"
EXAMPLE_COUNT = "example_count"
MEAN_LABEL = "mean_label"
AUC = "auc"
# Metrics that are undefined on an eval set of one class (0/0 rates).
_UNDEFINED_WITHOUT_POSITIVES = ("auc", "recall")
_UNDEFINED_WITHOUT_NEGATIVES = ("auc",)


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
    """

    metrics: Dict[str, Dict[str, float]]
    thresholds: Dict[str, Dict[str, float]]
    blessed: bool
    failures: List[str]
    has_baseline: bool
    undefined: Dict[str, str] = dataclasses.field(default_factory=dict)
    eval_examples: Optional[int] = None

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
        label = ", ".join(
            f"{k.column}={k.bytes_value.decode() if k.HasField('bytes_value') else (k.int64_value if k.HasField('int64_value') else k.float_value)}"
            for k in keys
        ) or "Overall"
        row = {"slice": label}
        for item in metrics_for_slice.metric_keys_and_values:
            if item.key.model_name == BASELINE or item.key.is_diff or item.key.HasField("sub_key"):
                continue
            value = _metric_value(item.value)
            if value == value:
                row[item.key.name] = value
        rows.append(row)
    return rows


def configured_thresholds(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
    """Thresholds from the eval config TFMA stores beside its results."""
    path = os.path.join(evaluation_uri, "eval_config.json")
    if not fileio.exists(path):
        return {}
    with fileio.open(path) as f:
        eval_config = json.loads(f.read()).get("evalConfig", {})
    thresholds: Dict[str, Dict[str, float]] = {}
    for spec in eval_config.get("metricsSpecs", []):
        for metric in spec.get("metrics", []):
            rules = [metric.get("threshold")] + [
                p.get("threshold") for p in metric.get("perSliceThresholds", [])]
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


def summarize(evaluation_uri: str) -> EvaluationSummary:
    """Metrics, thresholds and the blessing verdict of one Evaluator run."""
    validation = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        where = ", ".join(k.column for k in per_slice.slice_key.single_slice_keys)
        for failure in per_slice.failures:
            failures.append(describe_failure(failure) + (f" (slice {where})" if where else ""))
    if validation.missing_thresholds:
        failures.append("a thresholded metric was not computed")
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
        blessed=bool(validation.validation_ok) and not undefined,
        failures=failures,
        has_baseline=BASELINE in metrics,
        undefined=undefined,
        eval_examples=None if count is None else int(count),
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
