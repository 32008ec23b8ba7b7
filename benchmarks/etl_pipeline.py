"""ExampleGen -> StatisticsGen -> (ImportSchemaGen) -> Transform, ours or stock.

The two configurations differ only in ExampleGen's executor; both use the
same input and output configs, the curated schema and the project's
`preprocessing_fn`, so what differs in time and outcome is the executor.
"""
from typing import Sequence

from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen.custom_executors import parquet_executor as stock_parquet
from tfx.dsl.components.base import executor_spec

from components.parquet_example_gen.component import parquet_example_gen
from pipeline.pipeline import transform_component

EXECUTORS = ("ours", "stock")
SPAN_PATTERN = "span-{SPAN}/*.parquet"
PARTITION_FEATURE = "date"


def input_config(pattern: str = SPAN_PATTERN) -> tfx.proto.Input:
    """One input split."""
    return tfx.proto.Input(splits=[tfx.proto.Input.Split(name="single_split", pattern=pattern)])


def output_config() -> tfx.proto.Output:
    """2:1 train/eval hash split on the date, as the project's pipeline does."""
    return tfx.proto.Output(split_config=tfx.proto.SplitConfig(
        splits=[tfx.proto.SplitConfig.Split(name="train", hash_buckets=2),
                tfx.proto.SplitConfig.Split(name="eval", hash_buckets=1)],
        partition_feature_name=PARTITION_FEATURE))


def example_gen(executor: str, input_base: str):
    """ExampleGen over `<input_base>/span-<N>/*.parquet` with the named executor."""
    if executor == "ours":
        return parquet_example_gen(input_base, input_config=input_config(),
                                   output_config=output_config())
    if executor == "stock":
        return FileBasedExampleGen(
            input_base=input_base, input_config=input_config(), output_config=output_config(),
            custom_executor_spec=executor_spec.BeamExecutorSpec(stock_parquet.Executor))
    raise ValueError(f"Unknown executor '{executor}'; expected one of {EXECUTORS}.")


def create_etl_pipeline(pipeline_name: str, pipeline_root: str, metadata_path: str,
                        executor: str, input_base: str, schema_path: str,
                        beam_pipeline_args: Sequence[str], transform_statistics: bool = False,
                        materialize: bool = False) -> tfx.dsl.Pipeline:
    """The data half of the project's pipeline, caching off.

    Transform is the pipeline's own (`pipeline.pipeline.transform_component`:
    analyzes train; statistics off and no transformed examples written unless
    asked for, as for a single-process Trainer).
    """
    examples = example_gen(executor, input_base)
    statistics_gen = tfx.components.StatisticsGen(examples=examples.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    transform = transform_component(examples.outputs["examples"], schema_gen.outputs["schema"],
                                    transform_statistics=transform_statistics,
                                    materialize=materialize)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[examples, statistics_gen, schema_gen, transform],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path),
        beam_pipeline_args=list(beam_pipeline_args),
    )
