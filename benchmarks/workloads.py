"""The measured workloads, each run in its own process by `measure.run_workload`.

  python -m benchmarks.workloads NAME '{"param": ...}' RESULT.json

A workload does its imports and setup, calls `run.start()` right before the
work it measures, and may fill `run.rows` and `run.extra`. The result file
holds status, seconds since `run.start()` (also for a failure: the time until
it failed), rows, extra and, for a failure, the error.
"""
import glob
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

WORKLOADS: Dict[str, Callable[..., None]] = {}
_ERROR_HEAD_CHARS, _ERROR_TAIL_CHARS = 600, 1400
PRECIPITATION = "precipitation"


class Run:
    """What a workload reports back: when its work started, rows, extras."""

    def __init__(self):
        self._started: Optional[float] = None
        self.rows: Optional[int] = None
        self.extra: Dict[str, Any] = {}

    def start(self) -> None:
        self._started = time.perf_counter()

    def seconds(self) -> Optional[float]:
        return None if self._started is None else time.perf_counter() - self._started


def workload(function: Callable[..., None]) -> Callable[..., None]:
    WORKLOADS[function.__name__] = function
    return function


def parquet_rows(pattern: str) -> int:
    """Rows of the Parquet files matching `pattern`, from their footers."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in sorted(glob.glob(pattern)))


@workload
def curation(run: Run, raw_pattern: str, output_dir: str) -> None:
    """Spark curation of the raw CSVs (session start-up included)."""
    from components.spark_curation.job import run_curation

    run.start()
    result = run_curation(raw_pattern, output_dir, master="local[*]")
    run.rows = result.rows_in
    run.extra = {"rows_written": result.rows_written, "rows_quarantined": result.rows_quarantined,
                 "span_dir": result.span_dir, "input_files": len(result.input_files)}


@workload
def ingest(run: Run, executor: str, input_base: str, pattern: str, output_dir: str,
           beam_pipeline_args: List[str]) -> None:
    """One ExampleGen executor's `Do` on a real Examples artifact."""
    from tfx.components.example_gen.custom_executors import parquet_executor as stock_parquet
    from tfx.types import standard_artifacts, standard_component_specs as specs
    from tfx.utils import proto_utils

    from benchmarks.etl_pipeline import input_config, output_config
    from components.parquet_example_gen.executor import Executor as OurExecutor

    executor_class = {"ours": OurExecutor, "stock": stock_parquet.Executor}[executor]
    exec_properties = {
        specs.INPUT_BASE_KEY: input_base,
        specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config(pattern)),
        specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output_config()),
    }
    examples = standard_artifacts.Examples()
    examples.uri = output_dir
    run.rows = parquet_rows(os.path.join(input_base, pattern))
    context = executor_class.Context(beam_pipeline_args=beam_pipeline_args)
    run.start()
    executor_class(context).Do({}, {specs.EXAMPLES_KEY: [examples]}, exec_properties)


@workload
def floor(run: Run, pattern: str) -> None:
    """Our conversion without Beam: pyarrow read + record_batch_to_examples."""
    from components.parquet_example_gen.conversion import parquet_to_serialized_examples

    run.start()
    count, size = 0, 0
    for example in parquet_to_serialized_examples(pattern):
        count += 1
        size += len(example)
    run.rows = count
    run.extra = {"serialized_bytes": size}


@workload
def floor_write(run: Run, pattern: str, output_path: str) -> None:
    """The floor plus writing one gzipped TFRecord file, still without Beam.

    What any TFX ExampleGen executor must also do (TFX's WriteSplit adds a
    Reshuffle and per-element steps on top), so the gap between this and the
    executor is Beam's, not the conversion's.
    """
    import tensorflow as tf

    from components.parquet_example_gen.conversion import parquet_to_serialized_examples

    run.start()
    count = 0
    with tf.io.TFRecordWriter(output_path, options="GZIP") as writer:
        for example in parquet_to_serialized_examples(pattern):
            writer.write(example)
            count += 1
    run.rows = count
    run.extra = {"output_bytes": os.path.getsize(output_path)}


@workload
def etl(run: Run, executor: str, input_base: str, work_dir: str, schema_path: str,
        beam_pipeline_args: List[str]) -> None:
    """ExampleGen -> StatisticsGen -> Transform under LocalDagRunner."""
    from tfx import v1 as tfx

    from benchmarks.etl_pipeline import create_etl_pipeline
    from pipeline.run_summary import collect_run_summary

    name = f"bench-etl-{executor}"
    metadata_path = os.path.join(work_dir, "metadata.sqlite")
    pipeline = create_etl_pipeline(name, os.path.join(work_dir, "root"), metadata_path,
                                   executor, input_base, schema_path, beam_pipeline_args)
    run.rows = parquet_rows(os.path.join(input_base, "span-*", "*.parquet"))
    run.start()
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        summary = collect_run_summary(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path), name)
        if summary is not None:
            run.extra["components"] = {c.node_id: {"status": c.status, "seconds": c.seconds}
                                       for c in summary.components}


@workload
def full_pipeline(run: Run, runs_dir: str) -> None:
    """local_runner.main with default settings on the bundled data."""
    import local_runner
    from pipeline.config import DEFAULT_PIPELINE_NAME
    from pipeline.run_summary import collect_run_summary
    from tfx import v1 as tfx
    from vega_datasets import local_data

    with open(local_data.seattle_weather.filepath) as f:
        run.rows = sum(1 for _ in f) - 1
    run.start()
    exit_code = local_runner.main(["--runs-dir", runs_dir])
    run.extra["exit_code"] = exit_code
    summary = collect_run_summary(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(runs_dir, "pipeline", local_runner.METADATA_FILE)), DEFAULT_PIPELINE_NAME)
    if summary is not None:
        run.extra["components"] = {c.node_id: {"status": c.status, "seconds": c.seconds}
                                   for c in summary.components}
    if exit_code != 0:
        raise RuntimeError(f"local_runner exited with {exit_code}")


@workload
def verify_ingestion(run: Run, parquet_pattern: str, outputs: Dict[str, str]) -> None:
    """Counts rows and precipitation zeros in the Parquet and in each output.

    Examples are decoded with tfx_bsl's C++ decoder, which also is how
    StatisticsGen and Transform see them: a feature with no value (what the
    stock executor writes for 0.0) decodes as null, like an absent one.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    run.start()
    column = pa.concat_tables([pq.read_table(path, columns=[PRECIPITATION])
                               for path in sorted(glob.glob(parquet_pattern))]).column(PRECIPITATION)
    run.rows = len(column)
    run.extra["parquet"] = {"rows": len(column), "nulls": column.null_count,
                            "zeros": int(pc.sum(pc.equal(column, 0.0)).as_py() or 0)}
    for label, uri in outputs.items():
        counts = {"rows": 0, "zeros": 0, "missing": 0, "splits": {}}
        for split_dir in sorted(glob.glob(os.path.join(uri, "Split-*"))):
            split_counts = _count_examples(glob.glob(os.path.join(split_dir, "*.gz")))
            counts["splits"][os.path.basename(split_dir)[len("Split-"):]] = split_counts["rows"]
            for key in ("rows", "zeros", "missing"):
                counts[key] += split_counts[key]
        run.extra[label] = counts


def _count_examples(files: List[str]) -> Dict[str, int]:
    import numpy as np
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    counts = {"rows": 0, "zeros": 0, "missing": 0}
    if not files:
        return counts
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65_536)
    for batch in dataset.as_numpy_iterator():
        records = decoder.DecodeBatch(list(batch))
        counts["rows"] += records.num_rows
        index = records.schema.get_field_index(PRECIPITATION)
        if index < 0:
            counts["missing"] += records.num_rows
            continue
        lists = records.column(index)
        counts["missing"] += lists.null_count
        counts["zeros"] += int(np.count_nonzero(np.asarray(lists.flatten()) == 0.0))
    return counts


def _describe(error: BaseException) -> str:
    """The error and, when Beam or TFX wrapped it, its innermost cause."""
    text = f"{type(error).__name__}: {error}"
    root = error
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    if root is not error and str(root) not in text:
        text += f" <- caused by {type(root).__name__}: {root}"
    if len(text) > _ERROR_HEAD_CHARS + _ERROR_TAIL_CHARS:
        text = f"{text[:_ERROR_HEAD_CHARS]} [...] {text[-_ERROR_TAIL_CHARS:]}"
    return text


def main(argv: List[str]) -> int:
    name, params, result_path = argv
    run = Run()
    status, error = "ok", None
    try:
        WORKLOADS[name](run, **json.loads(params))
    except Exception as failure:  # reported in the result; the benchmark goes on
        traceback.print_exc()
        status, error = "failed", _describe(failure)
    result = {"status": status, "seconds": run.seconds(), "rows": run.rows,
              "extra": run.extra, "error": error}
    with open(result_path, "w") as f:
        json.dump(result, f, indent=2)
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
