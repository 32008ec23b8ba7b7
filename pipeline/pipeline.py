"""The rain-tomorrow TFX pipeline, as a pure factory both runners call."""
from typing import Optional, Sequence, Union

from tfx import v1 as tfx
from tfx.dsl.components.base import base_node
from tfx.dsl.placeholder import placeholder

from components import distributed_training
from components.data_validation.component import AnomalyGate
from components.data_validation.drift import DriftValidator
from components.experiment_tracking.pusher import settings_params as mlflow_settings_params
from components.parquet_example_gen.component import parquet_example_gen
from components.naive_baselines.component import NaiveBaselines
from components.serving_baseline.component import BaselineAwareEvaluator, ServedBaseline
from components.versioned_pusher.component import VersionedPusher
from pipeline import node_ids
from pipeline.config import PipelineConfig
from pipeline.eval_config import create_eval_config

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"
TUNER_FN = "models.tuner.tuner_fn"


def transform_component(examples, schema, transform_statistics: bool = False,
                        materialize: bool = False) -> tfx.components.Transform:
    """The pipeline's Transform (the ETL benchmark builds the same one).

    Args:
      examples: the Examples channel to analyze (train) and transform (both).
      schema: the curated schema's channel.
      transform_statistics: whether TFX's pre- and post-transform statistics
        are computed too (see `create_pipeline`).
      materialize: whether Transform also writes the transformed examples
        (only distributed training reads them; see `create_pipeline`).
    """
    return tfx.components.Transform(
        examples=examples,
        schema=schema,
        preprocessing_fn=PREPROCESSING_FN,
        disable_statistics=not transform_statistics,
        materialize=materialize,
        # The analyzers (means, vocabularies) see only the training split, so
        # nothing of the eval days leaks into the features (TFX's default too,
        # pinned here); when materializing, both splits are transformed.
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    )


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
    data_preparation: Optional[base_node.BaseNode] = None,
    data_fingerprint: Union[str, placeholder.Placeholder, None] = None,
    train_args: Union[tfx.proto.TrainArgs, tfx.dsl.experimental.RuntimeParameter, None] = None,
    eval_args: Union[tfx.proto.EvalArgs, tfx.dsl.experimental.RuntimeParameter, None] = None,
    transform_statistics: bool = False,
    mlflow_tracking_uri: Union[str, tfx.dsl.experimental.RuntimeParameter, None] = None,
    log_rejections: bool = False,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline: curated Parquet in, a pushed TF Serving version out.

    Args:
      config: paths, training settings, thresholds and Beam options.
      metadata_connection_config: ML Metadata connection (local runs); None on
        Kubeflow, where the cluster provides it.
      data_preparation: an optional node that produces the curated Parquet
        (the Spark curation component on Kubeflow); ExampleGen runs after it.
      data_fingerprint: identifies the curated data ExampleGen will read, for
        orchestrators that key their cache before a task runs (Kubeflow: the
        Spark task's output); None where TFX's driver resolves the span.
      train_args: the Trainer's TrainArgs, or a runtime parameter holding them
        as proto JSON (a Kubeflow run parameter); default from `config`.
      eval_args: likewise for EvalArgs.
      transform_statistics: whether Transform also computes TFX's pre- and
        post-transform statistics (off by default: a TFDV pass over the raw
        and one over the transformed data, ~3-7 s of a bundled run's
        Transform; notebooks/data_exploration computes the transformed
        features' statistics itself; `local_runner.py --transform-statistics`).
      mlflow_tracking_uri: the pusher's MLflow tracking URI, or a runtime
        parameter holding it (a Kubeflow run parameter); default
        `config.mlflow_tracking_uri` ("" = no tracking).
      log_rejections: the AnomalyGate logs a FAILED MLflow run when it
        rejects the data (Kubeflow, where no runner is there to do it).

    Returns:
      A `tfx.dsl.Pipeline`.
    """
    example_gen = parquet_example_gen(
        input_base=config.curated_root, data_fingerprint=data_fingerprint, split=config.split
    ).with_id(node_ids.EXAMPLE_GEN)
    if data_preparation is not None:
        example_gen.add_upstream_node(data_preparation)
    # ExampleGen ingests (and the validators check) the latest span; training
    # and evaluation read either that span or the latest `span_window` spans.
    span_window = _span_window_resolver(example_gen, config.span_window)
    training_examples = (
        span_window.outputs["examples"] if span_window else example_gen.outputs["examples"]
    )
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"]
    ).with_id(node_ids.STATISTICS_GEN)
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=config.schema_path).with_id(node_ids.SCHEMA_GEN)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    ).with_id(node_ids.EXAMPLE_VALIDATOR)
    # Drift against the previous span's statistics, kept in a statistics
    # history both runners reach (see components/data_validation/drift.py).
    drift_validator = None
    if config.drift_history_root:
        drift_validator = DriftValidator(
            statistics=statistics_gen.outputs["statistics"],
            schema=schema_gen.outputs["schema"],
            # ExampleGen records the span on the Examples (StatisticsGen's copy is 0).
            examples=example_gen.outputs["examples"],
            history_root=config.drift_history_root,
        ).with_id(node_ids.DRIFT_VALIDATOR)
    # examples + schema let the gate name the station and date of the rows
    # behind an out-of-domain anomaly (read only when there is one).
    anomaly_gate = AnomalyGate(
        anomalies=example_validator.outputs["anomalies"],
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        **({"drift_anomalies": drift_validator.outputs["anomalies"]} if drift_validator else {}),
        **({"mlflow_tracking_uri": (config.mlflow_tracking_uri if mlflow_tracking_uri is None
                                    else mlflow_tracking_uri),
            "pipeline_name": config.pipeline_name} if log_rejections else {}),
    ).with_id(node_ids.ANOMALY_GATE)
    # Transformed examples are written only for distributed training, whose
    # workers shard and read them; the single-process Trainer and the Tuner
    # read the raw examples and apply the transform graph per batch
    # (models/trainer.input_fn), so Transform only analyzes.
    materialize = distributed_training.wants_distributed(config.training.custom_config())
    transform = transform_component(
        training_examples, schema_gen.outputs["schema"], transform_statistics,
        materialize=materialize,
    ).with_id(node_ids.TRANSFORM)
    # Transform does not read the gate's output; the edge is what makes an
    # anomaly stop everything downstream.
    transform.add_upstream_node(anomaly_gate)
    # With --tune: a random search (models/tuner.py) whose best
    # hyper-parameters the Trainer trains with.
    train_args = train_args or tfx.proto.TrainArgs(num_steps=config.training.train_steps)
    eval_args = eval_args or tfx.proto.EvalArgs(num_steps=config.training.eval_steps)
    tuner = _tuner(config, training_examples, transform, schema_gen, train_args, eval_args)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        **({"hyperparameters": tuner.outputs["best_hyperparameters"]} if tuner else {}),
        examples=(transform.outputs["transformed_examples"] if materialize
                  else training_examples),
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=train_args,
        eval_args=eval_args,
        custom_config=config.training.custom_config(),
    ).with_id(node_ids.TRAINER)
    # The baseline is the newest version in the serving directory (only
    # blessed models get there), not a TFX Resolver: KFP's open-source
    # backend cannot run resolver tasks (see components/serving_baseline).
    baseline = ServedBaseline(
        candidate=trainer.outputs["model"],
        serving_base=config.serving_base,
        model_name=config.model_name,
    ).with_id(node_ids.BASELINE_MODEL)
    # Persistence, climatology and a linear model on the Evaluator's examples
    # (components/naive_baselines): reported beside the candidate, and the
    # Evaluator refuses a candidate below persistence + the margin.
    naive_baselines = NaiveBaselines(
        examples=training_examples, seed=config.training.seed,
    ).with_id(node_ids.NAIVE_BASELINES)
    # Like Transform: data with anomalies stops it too.
    naive_baselines.add_upstream_node(anomaly_gate)
    evaluator = BaselineAwareEvaluator(
        examples=training_examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=create_eval_config(config.thresholds),
        naive_baselines=naive_baselines.outputs["baselines"],
        min_margin_over_persistence=config.thresholds.min_margin_over_persistence,
    ).with_id(node_ids.EVALUATOR)
    pusher = VersionedPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        evaluation=evaluator.outputs["evaluation"],
        examples=training_examples,
        naive_baselines=naive_baselines.outputs["baselines"],
        # Shipped inside the version (assets.extra/) for the prediction
        # service's training/serving skew check (serving/skew.py).
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        serving_base=config.serving_base,
        model_name=config.model_name,
        server_model_base_path=config.server_model_base_path,
        keep_versions=config.keep_versions,
        # MLflow: a run per pipeline run, a registered version per push.
        model_run=trainer.outputs["model_run"],
        mlflow_tracking_uri=(config.mlflow_tracking_uri if mlflow_tracking_uri is None
                             else mlflow_tracking_uri),
        mlflow_params=mlflow_settings_params(config),
    ).with_id(node_ids.PUSHER)

    components = [
        example_gen,
        *([span_window] if span_window else []),
        statistics_gen,
        schema_gen,
        example_validator,
        *([drift_validator] if drift_validator else []),
        anomaly_gate,
        transform,
        *([tuner] if tuner else []),
        trainer,
        baseline,
        naive_baselines,
        evaluator,
        pusher,
    ]
    if data_preparation is not None:
        components.insert(0, data_preparation)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )


def _tuner(config: PipelineConfig, examples, transform, schema_gen, train_args, eval_args):
    """TFX's Tuner over the raw `examples` and the transform graph with `config.tune`; else None.

    It gets the Trainer's train/eval args (eval_args.num_steps: the batches
    each trial is scored on; train_args' steps are tuned, see models/tuner.py)
    and the Trainer's hyper-parameters plus the number of trials.
    """
    if not config.tune:
        return None
    return tfx.components.Tuner(
        tuner_fn=TUNER_FN,
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=train_args,
        eval_args=eval_args,
        custom_config={**config.training.custom_config(), "tune_trials": config.tune_trials},
    ).with_id(node_ids.TUNER)


def _span_window_resolver(example_gen, span_window: int):
    """None for the latest span only; else a resolver of the latest N spans.

    TFX 1.16's ExampleGen reads exactly one span per run (it rejects a
    RollingRange of more), so a window is the spans earlier runs ingested,
    gathered from ML Metadata by span number.
    """
    if span_window <= 1:
        return None
    resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.SpanRangeStrategy,
        config={
            "range_config": tfx.proto.RangeConfig(
                rolling_range=tfx.proto.RollingRange(num_spans=span_window)
            )
        },
        examples=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.Examples,
            producer_component_id=example_gen.id,
        ),
    ).with_id(node_ids.SPAN_WINDOW)
    # Resolve after this run's ExampleGen, so the window includes its span.
    resolver.add_upstream_node(example_gen)
    return resolver


def component_ids(pipeline: tfx.dsl.Pipeline) -> Sequence[str]:
    """Node ids in the order the pipeline lists them."""
    return [component.id for component in pipeline.components]
