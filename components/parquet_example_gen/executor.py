"""ExampleGen executor: Parquet row groups -> serialized tf.Examples, columnar.

Replaces TFX's stock Parquet executor, which reads rows as Python dicts,
crashes on DATE columns and drops every falsy value (0, 0.0, '', False).
Conversion rules are those of `conversion` (see its docstring and README.md).

Records leave the converter already serialized. TFX's base executor hashes
bytes records whole, but for `SplitConfig.partition_feature_name` it wants
parsed tf.train.Example objects; parsing each one again would cost more than
the whole conversion. With a partition feature this executor therefore splits
the examples itself, hashing the very bytes TFX hashes (the partition
Feature serialized deterministically), so every row lands in the split stock
TFX would choose.

Two ways to write the output (`choose_writer`):

  direct  Beam's DirectRunner, in any running mode (in-memory, the local
          default, multi-threading or multi-processing): the shards are
          written straight from Arrow record batches by `direct.write_splits`,
          threads over batches, no per-element Beam step. ~5x faster than
          the Beam path at 1M rows, bounded memory.
  beam    every other runner (Dataflow, Flink, Spark, Prism, a portable
          runner) or a caller-supplied Beam pipeline: TFX's base executor
          runs `GenerateExamplesByBeam` and TFX's own `WriteSplit`, so the
          work is distributed the way the runner distributes it.

Both give the same examples in the same splits (tests check this). The
environment variable PARQUET_EXAMPLE_GEN_WRITER=direct|beam overrides the
rule (default `auto`).

How rows are split (exec property `split_method`, set by the component):

  hash    TFX's hash split, as the output config says (also when the
          property is absent: a plain FileBasedExampleGen config means this).
  time    per station, the earliest dates to the first split and the latest
          to the last, in the output config's ratio (`time_split`); a
          pre-pass over the station and date columns computes the cutoffs,
          which are recorded next to the splits (`time_split.json`) and on
          the artifact.
"""
import copy
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from absl import flags, logging
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import input_processor
from tfx.components.example_gen import utils, write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.parquet_example_gen import conversion, direct, time_split

WRITER_ENV = "PARQUET_EXAMPLE_GEN_WRITER"
DIRECT, BEAM, AUTO = "direct", "beam", "auto"
# Runner names (lower case, without a trailing 'runner') that run the whole
# pipeline in this process or in worker processes on this machine.
_DIRECT_RUNNERS = ("direct", "switchingdirect", "bundlebaseddirect")
# Exec property: how output splits are chosen, time_split.TIME or HASH.
SPLIT_METHOD_KEY = "split_method"
# Custom properties of the output Examples artifact.
SPLIT_METHOD_PROPERTY = "split_method"
SPLIT_SUMMARY_PROPERTY = "split_summary"
TIME_SPLIT_PROPERTY = "time_split"  # the record, as JSON (also in time_split.RECORD_FILE)


def input_pattern(exec_properties: Dict[str, Any], split_pattern: str) -> str:
    """The split's file glob under `input_base`; raises if it matches no file."""
    return _input_files(exec_properties, split_pattern)[0]


def _input_files(exec_properties: Dict[str, Any], split_pattern: str) -> Tuple[str, List[str]]:
    """(glob, the files it matches in sorted order); raises if it matches none."""
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    files = sorted(metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list)
    if not files:
        raise FileNotFoundError(
            f"No Parquet file matches the ExampleGen input pattern '{pattern}' "
            f"(input_base + split pattern '{split_pattern}').")
    return pattern, files


def choose_writer(beam_pipeline_args: Sequence[str], exec_properties: Dict[str, Any],
                  custom_pipeline: bool = False) -> Tuple[str, str]:
    """Which path writes the output, and why: (DIRECT or BEAM, reason).

    DIRECT when the Beam runner is the DirectRunner (Beam's default when no
    --runner is given), in any --direct_running_mode, and the output is
    tf.Examples in gzipped TFRecords; BEAM for any other runner, a
    caller-supplied pipeline (`make_beam_pipeline_fn`) or another output
    format. PARQUET_EXAMPLE_GEN_WRITER=direct|beam in the environment
    overrides the rule.
    """
    forced = os.environ.get(WRITER_ENV, AUTO).strip().lower() or AUTO
    if forced not in (DIRECT, BEAM, AUTO):
        raise ValueError(f"{WRITER_ENV}={forced!r}: expected {DIRECT}, {BEAM} or {AUTO}.")
    if forced != AUTO:
        return forced, f"{WRITER_ENV}={forced}"
    payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload not in (None, example_gen_pb2.FORMAT_TF_EXAMPLE):
        return BEAM, f"payload format {payload} is not FORMAT_TF_EXAMPLE"
    file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
    if file_format not in (None, example_gen_pb2.FILE_FORMAT_UNSPECIFIED,
                           example_gen_pb2.FORMAT_TFRECORDS_GZIP):
        return BEAM, f"file format {file_format} is not gzipped TFRecords"
    if custom_pipeline:
        return BEAM, "the caller supplies the Beam pipeline"
    runner = PipelineOptions(list(beam_pipeline_args)).view_as(StandardOptions).runner
    if runs_on_this_machine(beam_pipeline_args):
        return DIRECT, f"runner {runner or 'DirectRunner (default)'} runs on this machine"
    return BEAM, f"runner {runner} distributes the work"


def runs_on_this_machine(beam_pipeline_args: Sequence[str]) -> bool:
    """True for Beam's DirectRunner (the default), in any running mode."""
    runner = PipelineOptions(list(beam_pipeline_args)).view_as(StandardOptions).runner
    name = (runner or "DirectRunner").strip().lower()
    if name.endswith("runner"):
        name = name[:-len("runner")]
    return name in _DIRECT_RUNNERS


def table_to_examples(table: pa.Table) -> Iterator[bytes]:
    """Serialized examples of one Parquet row group, BATCH_ROWS rows at a time."""
    for batch in table.to_batches(max_chunksize=conversion.BATCH_ROWS):
        yield from conversion.record_batch_to_examples(batch)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _ParquetToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    """Reads one split's Parquet files and emits serialized tf.Examples."""
    pattern = input_pattern(exec_properties, split_pattern)
    return (
        pipeline
        | "ReadParquet" >> beam.io.ReadFromParquetBatched(pattern)
        | "ToExamples" >> beam.FlatMap(table_to_examples)
    )


class _ToSplitExamples(beam.DoFn):
    """Converts row groups and routes each example to its split.

    `router` is the direct path's own (`direct.HashSplits`, whose arithmetic
    is TFX's `_PartitionFn`, or `time_split.TimeSplits`), so both paths
    split alike.
    """

    def __init__(self, router):
        super().__init__()
        self._router = router

    def process(self, table: pa.Table):
        for batch in table.to_batches(max_chunksize=conversion.BATCH_ROWS):
            examples, indices = self._router.examples_and_indices(batch)
            for example, index in zip(examples.to_pylist(), indices.tolist()):
                yield beam.pvalue.TaggedOutput(self._router.names[index], example)


def resolve_span_if_unresolved(
    exec_properties: Dict[str, Any], examples: types.Artifact
) -> Dict[str, Any]:
    """Does the ExampleGen driver's work when no driver ran.

    Locally, and on Vertex AI (as a `preCacheCheck` hook), TFX's driver
    resolves `{SPAN}` in the split patterns to the latest span and records
    span, version and input fingerprint before the executor starts. The
    open-source KFP backend has no such hook, so the executor would see the
    raw pattern; here it resolves the span the same way (TFX's
    FileBasedInputProcessor) and records it on the output artifact, as the
    driver would have.

    Returns:
      `exec_properties`, unchanged if a driver already resolved them.
    """
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    unresolved = any(utils.SPAN_SPEC in split.pattern or utils.VERSION_SPEC in split.pattern
                     for split in input_config.splits)
    if not unresolved and utils.SPAN_PROPERTY_NAME in exec_properties:
        return exec_properties
    range_config = None
    if exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY):
        range_config = range_config_pb2.RangeConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.RANGE_CONFIG_KEY], range_config)
    processor = input_processor.FileBasedInputProcessor(
        exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits, range_config)
    span, version = processor.resolve_span_and_version()
    resolved = dict(exec_properties)
    resolved[utils.SPAN_PROPERTY_NAME] = span
    resolved[utils.VERSION_PROPERTY_NAME] = version
    resolved[utils.FINGERPRINT_PROPERTY_NAME] = processor.get_input_fingerprint(span, version)
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    resolved[standard_component_specs.INPUT_CONFIG_KEY] = proto_utils.proto_to_json(input_config)
    example_gen_driver.update_output_artifact(resolved, examples.mlmd_artifact)
    logging.info("No ExampleGen driver ran: resolved span %s (patterns %s) in the executor.",
                 span, [split.pattern for split in input_config.splits])
    return resolved


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """ExampleGen executor for Parquet that keeps every value."""

    def __init__(self, context: Optional[base_beam_executor.BaseBeamExecutor.Context] = None):
        """As TFX's, without packaging TFX for remote workers a DirectRunner never has.

        TFX's BaseBeamExecutor, given Beam args without --extra_package /
        --setup_file / --requirements_file / a container image, copies the
        TFX installation and builds an sdist of it (`setup.py sdist` in a
        subprocess: seconds, a minute on a loaded machine) so that remote
        workers can import TFX. A DirectRunner's workers are this process or
        its local subprocesses, which import TFX as it is; so for a
        DirectRunner the Beam args are kept as given.
        """
        args = list(getattr(context, "beam_pipeline_args", None) or [])
        if not (args and isinstance(context, base_beam_executor.BaseBeamExecutor.Context)
                and runs_on_this_machine(args)):
            super().__init__(context)
            return
        without_args = copy.copy(context)
        without_args.beam_pipeline_args = None
        super().__init__(without_args)
        self._beam_pipeline_args = args
        # What the base class does with the args besides packaging.
        flags.FLAGS(sys.argv + args, known_only=True)

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        exec_properties = resolve_span_if_unresolved(exec_properties, examples)
        method = split_method(exec_properties)
        writer, reason = choose_writer(self._beam_pipeline_args or [], exec_properties,
                                       custom_pipeline=self._make_beam_pipeline_fn is not None)
        self._time_splits, record = None, None
        if method == time_split.TIME:
            self._time_splits, record = _plan_time_split(exec_properties)
            logging.info("Time split: %s.", time_split.describe(record))
        logging.info("Parquet ExampleGen writes through the %s path: %s.", writer, reason)
        if writer == BEAM:
            super().Do(input_dict, output_dict, exec_properties)
        else:
            self._do_direct(input_dict, output_dict, exec_properties)
        _record_split(output_dict[standard_component_specs.EXAMPLES_KEY], exec_properties,
                      method, record)

    def _do_direct(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        """The base class's `Do` with `direct.write_splits` in place of Beam."""
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config, output_config = _configs(exec_properties)
        split_names = utils.generate_output_split_names(input_config, output_config)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(split_names)

        split_config = output_config.split_config
        sources = []
        if split_config.splits:
            if len(input_config.splits) != 1:
                raise ValueError("An output split_config needs exactly one input split; got "
                                 f"{[split.name for split in input_config.splits]}.")
            route = getattr(self, "_time_splits", None) or direct.HashSplits(
                tuple(split_names),
                tuple(direct.split_boundaries([s.hash_buckets for s in split_config.splits])),
                split_config.partition_feature_name or None)
            _, files = _input_files(exec_properties, input_config.splits[0].pattern)
            sources.append(direct.Source(tuple(files), route, direct.parquet_rows(files)))
        else:
            for name, split in zip(split_names, input_config.splits):
                _, files = _input_files(exec_properties, split.pattern)
                sources.append(direct.Source(tuple(files), direct.WholeSplit(name),
                                             direct.parquet_rows(files)))

        logging.info("Generating examples (direct path, no Beam).")
        split_dirs = {name: artifact_utils.get_split_uri([examples], name) for name in split_names}
        counts = direct.write_splits(sources, split_dirs, direct.new_staging_dir(examples.uri))
        logging.info("Examples generated: %s.", counts)

        # What the base class records after its Beam pipeline.
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY,
                                          example_gen_pb2.FILE_FORMAT_UNSPECIFIED)
        for artifact in output_dict[standard_component_specs.EXAMPLES_KEY]:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _ParquetToExample

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
    ) -> Dict[str, beam.pvalue.PCollection]:
        """As the base class, but splits by `partition_feature_name` on bytes."""
        input_config, output_config = _configs(exec_properties)
        # Footers first: a truncated file or an empty span fails here, named,
        # before any worker starts.
        for split in input_config.splits:
            direct.parquet_rows(_input_files(exec_properties, split.pattern)[1])
        split_config = output_config.split_config
        router = getattr(self, "_time_splits", None)
        if router is None and split_method(exec_properties) == time_split.TIME:
            router, _ = _plan_time_split(exec_properties)
        if router is None and not (split_config.splits and split_config.partition_feature_name):
            return super().GenerateExamplesByBeam(pipeline, exec_properties)
        if len(input_config.splits) != 1:
            raise ValueError("An output split_config needs exactly one input split; got "
                             f"{[split.name for split in input_config.splits]}.")
        split_names = utils.generate_output_split_names(input_config, output_config)
        if router is None:
            buckets = direct.split_boundaries([split.hash_buckets for split in split_config.splits])
            router = direct.HashSplits(tuple(split_names), tuple(buckets),
                                       split_config.partition_feature_name)
        pattern = input_pattern(exec_properties, input_config.splits[0].pattern)
        splits = (
            pipeline
            | "ReadParquet" >> beam.io.ReadFromParquetBatched(pattern)
            | "ToSplitExamples" >> beam.ParDo(_ToSplitExamples(router)).with_outputs(*split_names)
        )
        return {name: splits[name] for name in split_names}


def _configs(exec_properties: Dict[str, Any]) -> Tuple[example_gen_pb2.Input, example_gen_pb2.Output]:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    return input_config, output_config


def split_method(exec_properties: Dict[str, Any]) -> str:
    """The exec property `split_method`: 'time' or 'hash' (absent: 'hash')."""
    method = exec_properties.get(SPLIT_METHOD_KEY) or time_split.HASH
    if method not in time_split.SPLIT_METHODS:
        raise ValueError(f"ExampleGen {SPLIT_METHOD_KEY}={method!r}: expected one of "
                         f"{', '.join(time_split.SPLIT_METHODS)}.")
    return method


def _plan_time_split(exec_properties: Dict[str, Any]) -> Tuple["time_split.TimeSplits", dict]:
    """The time split's router and record, from a pre-pass over the input files."""
    input_config, output_config = _configs(exec_properties)
    split_config = output_config.split_config
    if not split_config.splits:
        raise ValueError("The time split divides one input split by date: it needs an output "
                         "split_config (e.g. train:eval = 2:1), and the output config has none.")
    if len(input_config.splits) != 1:
        raise ValueError("An output split_config needs exactly one input split; got "
                         f"{[split.name for split in input_config.splits]}.")
    if not split_config.partition_feature_name:
        raise ValueError("The time split orders rows by the output config's "
                         "partition_feature_name (the date column), which is not set.")
    _, files = _input_files(exec_properties, input_config.splits[0].pattern)
    direct.parquet_rows(files)  # unreadable footers or an empty span: named errors
    return time_split.plan_time_split(
        files, [split.name for split in split_config.splits],
        [split.hash_buckets for split in split_config.splits],
        split_config.partition_feature_name)


def _record_split(artifacts: List[types.Artifact], exec_properties: Dict[str, Any], method: str,
                  record: Optional[dict]) -> None:
    """Says on the artifact (and, for the time split, in a file) how rows were split."""
    input_config, output_config = _configs(exec_properties)
    split_config = output_config.split_config
    if not split_config.splits:
        return  # input splits kept as they are
    if record is None:
        names = utils.generate_output_split_names(input_config, output_config)
        summary = time_split.describe_hash(names, [s.hash_buckets for s in split_config.splits],
                                           split_config.partition_feature_name)
    else:
        summary = time_split.describe(record)
    for artifact in artifacts:
        artifact.set_string_custom_property(SPLIT_METHOD_PROPERTY, method)
        artifact.set_string_custom_property(SPLIT_SUMMARY_PROPERTY, summary)
        if record is None:
            continue
        text = time_split.dumps(record)
        artifact.set_string_custom_property(TIME_SPLIT_PROPERTY, text)
        path = os.path.join(artifact.uri, time_split.RECORD_FILE)
        staging = path + ".tmp"
        with fileio.open(staging, "w") as output:
            output.write(text + "\n")
        fileio.rename(staging, path, overwrite=True)
