"""ServedBaseline, and BaselineAwareEvaluator that takes its (possibly empty) output."""
from typing import List, Optional

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import base_beam_component, base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import json_utils
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.naive_baselines.artifacts import NaiveBaselineMetrics
from components.serving_baseline import executor as baseline_executor


class ServedBaselineSpec(ComponentSpec):
    PARAMETERS = {
        baseline_executor.SERVING_BASE_KEY: ExecutionParameter(type=str),
        baseline_executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        baseline_executor.CANDIDATE_KEY: ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        baseline_executor.BASELINE_KEY: ChannelParameter(type=standard_artifacts.Model),
    }


class ServedBaseline(base_component.BaseComponent):
    """The newest model version in `<serving_base>/<model_name>/`, as a Model artifact.

    Only blessed models are pushed there, so this is the latest blessed model
    that is actually being served (a version removed from serving by hand is
    no longer the baseline). With no version yet, the output holds no model
    and `BaselineAwareEvaluator` below evaluates without a baseline.

    The candidate is an input so that the task re-runs for every new
    candidate and is a cache hit exactly when the candidate is: an unchanged
    re-run reuses the whole evaluation, a new model is always compared with
    what is being served now.
    """

    SPEC_CLASS = ServedBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(baseline_executor.Executor)

    def __init__(self, candidate, serving_base: str, model_name: str):
        """Args:
          candidate: the Trainer's Model channel.
          serving_base: TF Serving base directory (local path or URI).
          model_name: the model's name in TF Serving.
        """
        super().__init__(spec=ServedBaselineSpec(
            candidate=candidate,
            serving_base=serving_base,
            model_name=model_name,
            model=types.Channel(type=standard_artifacts.Model),
        ))


class BaselineAwareEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """TFX's EvaluatorSpec plus the naive baselines and the margin over persistence."""

    PARAMETERS = dict(
        standard_component_specs.EvaluatorSpec.PARAMETERS,
        **{baseline_executor.MIN_MARGIN_KEY: ExecutionParameter(type=float, optional=True)},
    )
    INPUTS = dict(
        standard_component_specs.EvaluatorSpec.INPUTS,
        **{baseline_executor.NAIVE_BASELINES_KEY: ChannelParameter(
            type=NaiveBaselineMetrics, optional=True)},
    )


class BaselineAwareEvaluator(tfx.components.Evaluator):
    """TFX's Evaluator, treating an empty baseline Model as no baseline.

    With `naive_baselines` (NaiveBaselines' output) it also refuses a
    candidate whose overall AUC is below persistence's AUC +
    `min_margin_over_persistence` (None: baselines reported, not gated);
    see components/naive_baselines/gate.py.
    """

    SPEC_CLASS = BaselineAwareEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(baseline_executor.EvaluatorExecutor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: Optional[types.BaseChannel] = None,
        baseline_model: Optional[types.BaseChannel] = None,
        eval_config=None,
        schema: Optional[types.BaseChannel] = None,
        example_splits: Optional[List[str]] = None,
        naive_baselines: Optional[types.BaseChannel] = None,
        min_margin_over_persistence: Optional[float] = None,
    ):
        """Args as TFX's Evaluator (eval_config required), plus:
          naive_baselines: a NaiveBaselineMetrics channel (optional).
          min_margin_over_persistence: the margin; None: not gated.
        """
        if eval_config is None:
            raise ValueError("BaselineAwareEvaluator needs an eval_config")
        # As TFX's Evaluator.__init__ builds its spec, with this spec class.
        spec = BaselineAwareEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            fairness_indicator_thresholds=json_utils.dumps(None),
            example_splits=json_utils.dumps(example_splits),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            eval_config=eval_config,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            schema=schema,
            naive_baselines=naive_baselines,
            min_margin_over_persistence=min_margin_over_persistence,
        )
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
