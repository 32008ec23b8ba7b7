"""VersionedPusher: the Pusher for a TF Serving versioned model directory.

Differs from TFX's stock Pusher in what it guarantees: a version directory is
staged and renamed (never half-written, never overwritten), the same model is
never pushed twice, `models.config` is kept beside the versions, and each
version carries push_metadata.json (metrics, thresholds, data spans, run id).
"""
from typing import Optional

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx import types

from components.experiment_tracking import pusher as push_tracking
from components.naive_baselines.artifacts import NaiveBaselineMetrics
from components.versioned_pusher import executor as pusher_executor


class VersionedPusherSpec(ComponentSpec):
    PARAMETERS = {
        pusher_executor.SERVING_BASE_KEY: ExecutionParameter(type=str),
        pusher_executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
        pusher_executor.SERVER_BASE_PATH_KEY: ExecutionParameter(type=str, optional=True),
        pusher_executor.KEEP_VERSIONS_KEY: ExecutionParameter(type=int, optional=True),
        # MLflow (components/experiment_tracking): "" = off; may be a RuntimeParameter.
        push_tracking.TRACKING_URI_KEY: ExecutionParameter(type=str, optional=True),
        push_tracking.PARAMS_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        pusher_executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        pusher_executor.MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        pusher_executor.EVALUATION_KEY: ChannelParameter(
            type=standard_artifacts.ModelEvaluation, optional=True),
        pusher_executor.EXAMPLES_KEY: ChannelParameter(
            type=standard_artifacts.Examples, optional=True),
        pusher_executor.STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics, optional=True),
        pusher_executor.SCHEMA_KEY: ChannelParameter(
            type=standard_artifacts.Schema, optional=True),
    }
    OUTPUTS = {
        pusher_executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
    }
    # The Trainer's ModelRun: its hyperparameters.json is logged to MLflow.
    INPUTS[push_tracking.MODEL_RUN_KEY] = ChannelParameter(
        type=standard_artifacts.ModelRun, optional=True)
    # NaiveBaselines' output: recorded in push_metadata.json beside the metrics.
    INPUTS[pusher_executor.NAIVE_BASELINES_KEY] = ChannelParameter(
        type=NaiveBaselineMetrics, optional=True)


class VersionedPusher(base_component.BaseComponent):
    """Pushes a blessed model to `<serving_base>/<model_name>/<version>/`."""

    SPEC_CLASS = VersionedPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(pusher_executor.Executor)

    def __init__(
        self,
        model,
        model_blessing,
        serving_base: str,
        model_name: str,
        evaluation=None,
        examples=None,
        server_model_base_path: Optional[str] = None,
        keep_versions: int = 0,
        statistics=None,
        schema=None,
        model_run=None,
        naive_baselines=None,
        mlflow_tracking_uri=None,
        mlflow_params: Optional[str] = None,
    ):
        """Args:
          model: the Trainer's Model channel.
          model_blessing: the Evaluator's blessing channel.
          serving_base: TF Serving base directory (local path or URI).
          model_name: the model's name in TF Serving.
          evaluation: the Evaluator's ModelEvaluation, recorded in metadata.
          examples: the Examples the model was evaluated on (spans recorded).
          server_model_base_path: the model directory as the server sees it,
            for models.config; defaults to `<serving_base>/<model_name>`.
          statistics: StatisticsGen's output; its train split is shipped in
            the version (`assets.extra/`) for the service's skew check.
          schema: the curated schema, shipped beside it (skew thresholds).
          model_run: the Trainer's ModelRun (hyperparameters.json, for MLflow).
          naive_baselines: NaiveBaselines' output, recorded in push_metadata.json.
          mlflow_tracking_uri: MLflow tracking URI (str or RuntimeParameter);
            ""/None = no tracking (components/experiment_tracking/pusher.py).
          mlflow_params: JSON of the run's settings, logged as MLflow params.
        """
        spec = VersionedPusherSpec(
            model=model,
            model_blessing=model_blessing,
            evaluation=evaluation,
            examples=examples,
            **({pusher_executor.NAIVE_BASELINES_KEY: naive_baselines}
               if naive_baselines is not None else {}),
            statistics=statistics,
            schema=schema,
            serving_base=serving_base,
            model_name=model_name,
            server_model_base_path=server_model_base_path,
            keep_versions=keep_versions,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            **({push_tracking.MODEL_RUN_KEY: model_run} if model_run is not None else {}),
            **({push_tracking.TRACKING_URI_KEY: mlflow_tracking_uri}
               if mlflow_tracking_uri is not None else {}),
            **({push_tracking.PARAMS_KEY: mlflow_params} if mlflow_params else {}),
        )
        super().__init__(spec=spec)
