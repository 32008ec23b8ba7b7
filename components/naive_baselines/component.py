"""NaiveBaselines: persistence, climatology and a linear model beside every candidate."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.naive_baselines import executor as baselines_executor
from components.naive_baselines.artifacts import NaiveBaselineMetrics


class NaiveBaselinesSpec(ComponentSpec):
    PARAMETERS = {
        baselines_executor.SEED_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        baselines_executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        baselines_executor.BASELINES_KEY: ChannelParameter(type=NaiveBaselineMetrics),
    }


class NaiveBaselines(base_component.BaseComponent):
    """Naive baselines of the examples' train/eval splits, as `baselines.json`.

    Reads ExampleGen's raw Examples (the splits the Evaluator and the Trainer
    use), scores three baselines on the eval split (AUC overall and per
    station) and writes them into a `NaiveBaselineMetrics` artifact:

    - persistence: rain tomorrow if it rained today (precipitation > 0);
    - climatology: the train split's share of rainy tomorrows per (station,
      month), falling back to the station, then to all of train;
    - linear: a logistic regression (scikit-learn) on the model's raw numeric
      features and the one-hot weather, median-imputed and standardized, fit
      on train.

    BaselineAwareEvaluator can refuse a candidate that does not beat
    persistence by a margin; the run summary, the report and the pushed
    version's push_metadata.json show the baselines beside the candidate.
    """

    SPEC_CLASS = NaiveBaselinesSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(baselines_executor.Executor)

    def __init__(self, examples: types.BaseChannel, seed: Optional[int] = None):
        """Args:
          examples: ExampleGen's Examples (train and eval splits).
          seed: the linear model's random_state (default 0).
        """
        super().__init__(spec=NaiveBaselinesSpec(
            examples=examples,
            seed=seed,
            baselines=types.Channel(type=NaiveBaselineMetrics),
        ))
