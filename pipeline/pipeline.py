"""The rain-tomorrow TFX pipeline, as a pure factory both runners call."""
from typing import Optional, Sequence

from tfx import v1 as tfx
from tfx.dsl.components.base import base_node

from components.data_validation.component import AnomalyGate
from components.parquet_example_gen.component import parquet_example_gen
from components.serving_baseline.component import Evaluator, ServedBaseline
from components.versioned_pusher.component import VersionedPusher
from pipeline.config import PipelineConfig
from pipeline.eval_config import create_eval_config

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
    data_preparation: Optional[base_node.BaseNode] = None,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline: curated Parquet in, a pushed TF Serving version out.

    Args:
      config: paths, training settings, thresholds and Beam options.
      metadata_connection_config: ML Metadata connection (local runs); None on
        Kubeflow, where the cluster provides it.
      data_preparation: an optional node that produces the curated Parquet
        (the Spark curation component on Kubeflow); ExampleGen runs after it.

    Returns:
      A `tfx.dsl.Pipeline`.
    """
    example_gen = parquet_example_gen(input_base=config.curated_root)
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
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    )
    anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"])
    transform = tfx.components.Transform(
        examples=training_examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
    )
    # Transform does not read the gate's output; the edge is what makes an
    # anomaly stop everything downstream.
    transform.add_upstream_node(anomaly_gate)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=config.training.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.training.eval_steps),
        custom_config=config.training.custom_config(),
    )
    # The baseline is the newest version in the serving directory (only
    # blessed models get there), not a TFX Resolver: KFP's open-source
    # backend cannot run resolver tasks (see components/serving_baseline).
    baseline = ServedBaseline(
        candidate=trainer.outputs["model"],
        serving_base=config.serving_base,
        model_name=config.model_name,
    ).with_id("baseline_model")
    evaluator = Evaluator(
        examples=training_examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=create_eval_config(config.thresholds),
    )
    pusher = VersionedPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        evaluation=evaluator.outputs["evaluation"],
        examples=training_examples,
        serving_base=config.serving_base,
        model_name=config.model_name,
        server_model_base_path=config.server_model_base_path,
    ).with_id("pusher")

    components = [
        example_gen,
        *([span_window] if span_window else []),
        statistics_gen,
        schema_gen,
        example_validator,
        anomaly_gate,
        transform,
        trainer,
        baseline,
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
    ).with_id("span_window_resolver")
    # Resolve after this run's ExampleGen, so the window includes its span.
    resolver.add_upstream_node(example_gen)
    return resolver


def component_ids(pipeline: tfx.dsl.Pipeline) -> Sequence[str]:
    """Node ids in the order the pipeline lists them."""
    return [component.id for component in pipeline.components]
