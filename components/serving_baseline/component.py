"""ServedBaseline, and BaselineAwareEvaluator that takes its (possibly empty) output."""
from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

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


class BaselineAwareEvaluator(tfx.components.Evaluator):
    """TFX's Evaluator, treating an empty baseline Model as no baseline."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(baseline_executor.EvaluatorExecutor)
