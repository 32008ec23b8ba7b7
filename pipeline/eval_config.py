"""TFMA configuration: metrics, slices and the thresholds that bless a model."""
import tensorflow_model_analysis as tfma

from models import features
from models.model import SERVING_OUTPUT_KEY
from pipeline.config import BlessingThresholds

BLESSING_METRIC = "auc"
# A mean label strictly inside (0, 1) means both classes are present; with one
# class AUC is undefined, and TFMA would report it as a number anyway.
ONE_CLASS_MARGIN = 1e-9


def _overall(threshold: tfma.MetricThreshold):
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def create_eval_config(thresholds: BlessingThresholds) -> tfma.EvalConfig:
    """EvalConfig with an absolute AUC floor and a change threshold vs baseline.

    The change threshold only applies when a baseline (the latest blessed model)
    exists; the first run is judged by the absolute floor alone. A candidate
    evaluated on fewer than `min_eval_examples` examples, or on examples of
    one class only (mean label 0 or 1: AUC undefined), is never blessed.
    """
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
                        per_slice_thresholds=_overall(tfma.MetricThreshold(
                            value_threshold=tfma.GenericValueThreshold(
                                lower_bound={"value": thresholds.min_eval_examples}))),
                    ),
                    tfma.MetricConfig(
                        class_name="MeanLabel",
                        per_slice_thresholds=_overall(tfma.MetricThreshold(
                            value_threshold=tfma.GenericValueThreshold(
                                lower_bound={"value": ONE_CLASS_MARGIN},
                                upper_bound={"value": 1 - ONE_CLASS_MARGIN}))),
                    ),
                    tfma.MetricConfig(class_name="BinaryAccuracy"),
                    tfma.MetricConfig(class_name="Precision"),
                    tfma.MetricConfig(class_name="Recall"),
                    # Blessing is decided on the overall slice only; per-slice
                    # values are reported, since small slices (one month of
                    # one station) are too noisy to gate on.
                    tfma.MetricConfig(
                        class_name="AUC",
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(
                                slicing_specs=[tfma.SlicingSpec()],
                                threshold=auc_threshold,
                            )
                        ],
                    ),
                ]
            )
        ],
    )
