"""`parquet_example_gen`: FileBasedExampleGen with the lossless Parquet executor."""
from typing import Optional, Union

from tfx import types
from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.dsl.placeholder import placeholder
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.parquet_example_gen import time_split
from components.parquet_example_gen.executor import SPLIT_METHOD_KEY, Executor
from models import features

# The Spark curation job writes `<curated root>/span-<N>/part-*.parquet`
# (plus `_SUCCESS` / manifest files the `*.parquet` glob skips). ExampleGen's
# driver replaces {SPAN} with the latest span, or the range_config's spans.
SPAN_SPLIT_PATTERN = "span-{SPAN}/*.parquet"
SINGLE_SPLIT = "single_split"
TRAIN_EVAL_HASH_BUCKETS = {"train": 2, "eval": 1}
# Hashing the date rather than the whole record keeps a day in the same split
# across re-curations that change other columns (a new lag, a fixed value).
# The time split orders each station's rows by the same feature.
PARTITION_FEATURE = features.DATE_KEY
# How rows are split unless the caller says otherwise: per station, earlier
# days train and later days evaluate (time_split.py); "hash" is TFX's split.
DEFAULT_SPLIT = time_split.TIME


def default_input_config() -> tfx.proto.Input:
    """One input split addressing spans; the driver resolves {SPAN}."""
    return tfx.proto.Input(
        splits=[tfx.proto.Input.Split(name=SINGLE_SPLIT, pattern=SPAN_SPLIT_PATTERN)]
    )


def default_output_config() -> tfx.proto.Output:
    """train:eval = 2:1, by the date feature (hashed, or ordered per station)."""
    return tfx.proto.Output(
        split_config=tfx.proto.SplitConfig(
            splits=[
                tfx.proto.SplitConfig.Split(name=name, hash_buckets=buckets)
                for name, buckets in TRAIN_EVAL_HASH_BUCKETS.items()
            ],
            partition_feature_name=PARTITION_FEATURE,
        )
    )


DATA_FINGERPRINT_KEY = "data_fingerprint"


class ParquetExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's spec plus the split method and a data fingerprint.

    `split_method` is "time" or "hash" (absent: "hash", TFX's meaning of the
    output config); see the executor. The fingerprint is not read by the
    executor. It exists for orchestrators
    that compute a task's cache key before the task runs (Kubeflow
    Pipelines): fed from the Spark task's output, it makes ExampleGen's key
    change exactly when the curated data does, so an unchanged scheduled run
    is answered from the cache all the way to the pusher.
    """

    PARAMETERS = dict(
        standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        **{DATA_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
           SPLIT_METHOD_KEY: ExecutionParameter(type=str, optional=True)},
    )


class ParquetExampleGen(FileBasedExampleGen):
    """FileBasedExampleGen over curated Parquet with the lossless executor."""

    SPEC_CLASS = ParquetExampleGenSpec

    def __init__(
        self,
        input_base: str,
        input_config: example_gen_pb2.Input,
        output_config: example_gen_pb2.Output,
        range_config: Optional[tfx.proto.RangeConfig] = None,
        data_fingerprint: Union[str, placeholder.Placeholder, None] = None,
        split_method: Optional[str] = None,
    ):
        if split_method not in (None,) + time_split.SPLIT_METHODS:
            raise ValueError(f"split_method {split_method!r}: one of "
                             f"{', '.join(time_split.SPLIT_METHODS)}.")
        spec = ParquetExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            range_config=range_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            data_fingerprint=data_fingerprint,
            split_method=split_method,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        # FileBasedExampleGen's own __init__ only builds its fixed spec.
        base_beam_component.BaseBeamComponent.__init__(
            self, spec=spec, custom_executor_spec=executor_spec.BeamExecutorSpec(Executor))


def parquet_example_gen(
    input_base: str,
    *,
    range_config: Optional[tfx.proto.RangeConfig] = None,
    output_config: Optional[tfx.proto.Output] = None,
    input_config: Optional[tfx.proto.Input] = None,
    data_fingerprint: Union[str, placeholder.Placeholder, None] = None,
    split: str = DEFAULT_SPLIT,
) -> ParquetExampleGen:
    """ExampleGen over curated Parquet spans under `input_base`.

    Args:
      input_base: the curated root holding `span-<N>/` directories.
      range_config: which spans to read; None reads the latest span.
      output_config: defaults to `default_output_config()`.
      input_config: defaults to `default_input_config()`.
      data_fingerprint: what identifies the data to read, for cache keys
        computed before the task runs (see `ParquetExampleGenSpec`).
      split: "time" (default): per station, the earliest dates (in the
        output config's ratio) train and the latest evaluate; "hash": TFX's
        hash split of the partition feature (neighbouring days can land in
        both splits).

    Returns:
      A FileBasedExampleGen running `Executor` under Beam.
    """
    return ParquetExampleGen(
        input_base=input_base,
        input_config=input_config or default_input_config(),
        output_config=output_config or default_output_config(),
        range_config=range_config,
        data_fingerprint=data_fingerprint,
        split_method=split,
    )
