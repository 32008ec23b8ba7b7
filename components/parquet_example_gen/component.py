"""`parquet_example_gen`: FileBasedExampleGen with the lossless Parquet executor."""
from typing import Optional

from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec

from components.parquet_example_gen.executor import Executor
from models import features

# The Spark curation job writes `<curated root>/span-<N>/part-*.parquet`
# (plus `_SUCCESS` / manifest files the `*.parquet` glob skips). ExampleGen's
# driver replaces {SPAN} with the latest span, or the range_config's spans.
SPAN_SPLIT_PATTERN = "span-{SPAN}/*.parquet"
SINGLE_SPLIT = "single_split"
TRAIN_EVAL_HASH_BUCKETS = {"train": 2, "eval": 1}
# Hashing the date rather than the whole record keeps a day in the same split
# across re-curations that change other columns (a new lag, a fixed value).
PARTITION_FEATURE = features.DATE_KEY


def default_input_config() -> tfx.proto.Input:
    """One input split addressing spans; the driver resolves {SPAN}."""
    return tfx.proto.Input(
        splits=[tfx.proto.Input.Split(name=SINGLE_SPLIT, pattern=SPAN_SPLIT_PATTERN)]
    )


def default_output_config() -> tfx.proto.Output:
    """2:1 train/eval hash split, deterministic by the date feature."""
    return tfx.proto.Output(
        split_config=tfx.proto.SplitConfig(
            splits=[
                tfx.proto.SplitConfig.Split(name=name, hash_buckets=buckets)
                for name, buckets in TRAIN_EVAL_HASH_BUCKETS.items()
            ],
            partition_feature_name=PARTITION_FEATURE,
        )
    )


def parquet_example_gen(
    input_base: str,
    *,
    range_config: Optional[tfx.proto.RangeConfig] = None,
    output_config: Optional[tfx.proto.Output] = None,
    input_config: Optional[tfx.proto.Input] = None,
) -> FileBasedExampleGen:
    """ExampleGen over curated Parquet spans under `input_base`.

    Args:
      input_base: the curated root holding `span-<N>/` directories.
      range_config: which spans to read; None reads the latest span.
      output_config: defaults to `default_output_config()`.
      input_config: defaults to `default_input_config()`.

    Returns:
      A FileBasedExampleGen running `Executor` under Beam.
    """
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=input_config or default_input_config(),
        output_config=output_config or default_output_config(),
        range_config=range_config,
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    )
