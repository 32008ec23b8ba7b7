"""TFMA configuration: metrics, slices and the thresholds that bless a model."""
import json

import tensorflow_model_analysis as tfma

from models import features
from models.model import SERVING_OUTPUT_KEY
from pipeline.config import BlessingThresholds

BLESSING_METRIC = "auc"
# A mean label strictly inside (0, 1) means both classes are present; with one
# class AUC is undefined, and TFMA would report it as a number anyway.
ONE_CLASS_MARGIN = 1e-9
# Slices gated one by one (per-station gates). Month slices are reported only:
# one month of one station is too small and too noisy to gate on.
GATED_SLICE_KEYS = (features.STATION_KEY,)
# With --slice-gates warn the eval config carries this (cheap) metric as a
# marker: the station thresholds are the same as with "block", and
# BaselineAwareEvaluator blesses despite station failures, reporting them
# (components/evaluation_results.slice_gates).
REPORT_ONLY_MARKER = "slice_gates_report_only"


def _overall(threshold: tfma.MetricThreshold):
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def _value(lower=None, upper=None) -> tfma.MetricThreshold:
    bounds = {}
    if lower is not None:
        bounds["lower_bound"] = {"value": lower}
    if upper is not None:
        bounds["upper_bound"] = {"value": upper}
    return tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(**bounds))


def _gated(thresholds: BlessingThresholds, threshold: tfma.MetricThreshold):
    """The per-slice threshold for every gated slice (none with slice gates off)."""
    if thresholds.slice_gates == "off":
        return []
    return [tfma.PerSliceMetricThreshold(
        slicing_specs=[tfma.SlicingSpec(feature_keys=[key]) for key in GATED_SLICE_KEYS],
        threshold=threshold)]


def create_eval_config(thresholds: BlessingThresholds) -> tfma.EvalConfig:
    """EvalConfig with an absolute AUC floor and a change threshold vs baseline.

    The change threshold only applies when a baseline (the latest blessed model)
    exists; the first run is judged by the absolute floor alone. A candidate
    evaluated on fewer than `min_eval_examples` examples, or on examples of
    one class only (mean label 0 or 1: AUC undefined), is never blessed.

    Per-station gates (unless `slice_gates` is "off"): every station slice
    gets three TFMA thresholds of its own, AUC >= `slice_auc_floor`, a mean
    label strictly inside (0, 1) (both classes, AUC defined) and
    example_count >= `min_slice_size`. TFMA checks them like the overall
    ones, so a failing station refuses the blessing. A station slice whose
    example_count threshold failed is too small to gate: BaselineAwareEvaluator
    waives its other failures (reported, never dropped). With "warn" the
    REPORT_ONLY_MARKER metric is added and station failures are waived too,
    as warnings.
    """
    one_class = _value(lower=ONE_CLASS_MARGIN, upper=1 - ONE_CLASS_MARGIN)
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": thresholds.min_auc}
        ),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -thresholds.max_auc_decrease},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=features.LABEL_KEY,
                prediction_key=SERVING_OUTPUT_KEY,
            )
        ],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[key]) for key in features.SLICE_KEYS],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    # Too few eval examples, or only one class: not blessed,
                    # whatever the AUC says (it is noise, or undefined).
                    tfma.MetricConfig(
                        class_name="ExampleCount",
                        per_slice_thresholds=(
                            _overall(_value(lower=thresholds.min_eval_examples))
                            + _gated(thresholds, _value(lower=thresholds.min_slice_size))),
                    ),
                    tfma.MetricConfig(
                        class_name="MeanLabel",
                        per_slice_thresholds=(
                            _overall(one_class)
                            + _gated(thresholds, one_class)),
                    ),
                    tfma.MetricConfig(class_name="BinaryAccuracy"),
                    tfma.MetricConfig(class_name="Precision"),
                    tfma.MetricConfig(class_name="Recall"),
                    # Overall: the floor and the change vs the baseline.
                    # Station slices: their own floor (no change threshold).
                    # Month slices are reported only.
                    tfma.MetricConfig(
                        class_name="AUC",
                        per_slice_thresholds=(
                            _overall(auc_threshold)
                            + _gated(thresholds, _value(lower=thresholds.slice_auc_floor))),
                    ),
                ] + ([tfma.MetricConfig(class_name="ExampleCount",
                                        config=json.dumps({"name": REPORT_ONLY_MARKER}))]
                     if thresholds.slice_gates == "warn" else [])
            )
        ],
    )
