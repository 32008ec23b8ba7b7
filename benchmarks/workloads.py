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
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
        beam_pipeline_args: List[str], transform_statistics: bool = False,
        materialize: bool = False) -> None:
    """ExampleGen -> StatisticsGen -> Transform under LocalDagRunner."""
    from tfx import v1 as tfx

    from benchmarks.etl_pipeline import create_etl_pipeline
    from pipeline.run_summary import collect_run_summary

    name = f"bench-etl-{executor}"
    metadata_path = os.path.join(work_dir, "metadata.sqlite")
    pipeline = create_etl_pipeline(name, os.path.join(work_dir, "root"), metadata_path,
                                   executor, input_base, schema_path, beam_pipeline_args,
                                   transform_statistics=transform_statistics,
                                   materialize=materialize)
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


STEP_LINE = r"^  (\S+)\s+(COMPLETE|CACHED|RESOLVED|FAILED|done)\s+([0-9.]+) s$"


@workload
def devloop(run: Run, runs_dir: str, raw_data: Optional[List[str]] = None,
            station: Optional[str] = None, extra_args: Optional[List[str]] = None) -> None:
    """`python local_runner.py --runs-dir DIR` as a developer runs it: a fresh
    process, so interpreter and library start-up are in the wall time.

    Records the wall seconds, the console's step lines (name, status,
    seconds: curation is not in ML Metadata), the number of console lines,
    ML Metadata's component times and the eval AUC.
    """
    import re
    import subprocess

    argv = [sys.executable, os.path.join(_REPO_ROOT, "local_runner.py"), "--runs-dir", runs_dir]
    for path in raw_data or []:
        argv += ["--raw-data", path]
    if station:
        argv += ["--station", station]
    argv += list(extra_args or [])
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.start()
    done = subprocess.run(argv, cwd=_REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    seconds = run.seconds()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.extra["cpu_seconds"] = (after.ru_utime + after.ru_stime
                                - before.ru_utime - before.ru_stime)
    lines = done.stdout.splitlines()
    steps = {}
    for line in lines:
        match = re.match(STEP_LINE, line)
        if match:
            steps[match.group(1)] = {"status": match.group(2), "seconds": float(match.group(3))}
    run.extra.update({
        "exit_code": done.returncode, "wall_seconds": seconds, "steps": steps,
        "console_lines": len(lines) + len(done.stderr.splitlines()),
        # On a terminal the start and "still running" lines are rewritten in
        # place by the end line: what stays on the screen.
        "screen_lines": len([line for line in lines
                             if not re.match(r"^  \S+\s+(started|still running)", line)])
                        + len(done.stderr.splitlines()),
        "console_chars": len(done.stdout) + len(done.stderr),
        "stderr": done.stderr[-2000:],
    })
    run.extra.update(_pipeline_outcome(os.path.join(runs_dir, "pipeline", "metadata.sqlite"),
                                       "rain-tomorrow"))
    with open(os.path.join(runs_dir, "console.txt"), "w") as f:
        f.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"local_runner exited with {done.returncode}: {done.stderr[-500:]}")


def _pipeline_outcome(metadata_path: str, pipeline_name: str) -> Dict[str, Any]:
    """Component times and statuses (latest run) and the eval AUC, from ML Metadata."""
    from tfx import v1 as tfx

    from pipeline.run_summary import collect_run_summary

    summary = collect_run_summary(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
        pipeline_name)
    if summary is None:
        return {}
    outcome: Dict[str, Any] = {
        "components": {c.node_id: {"status": c.status, "seconds": c.seconds}
                       for c in summary.components}}
    if summary.evaluation is not None:
        outcome["eval_auc"] = summary.evaluation.metrics.get("candidate", {}).get("auc")
    return outcome


@workload
def pipeline_ours(run: Run, raw_data: List[str], station: Optional[str], runs_dir: str) -> None:
    """Our pipeline (local_runner, in-process) over raw data curated beforehand.

    Curation runs first in a separate process, untimed, so this times the
    TFX pipeline on the same curated rows the stock configuration gets.
    """
    import subprocess

    import local_runner

    argv = ["--runs-dir", runs_dir]
    for path in raw_data:
        argv += ["--raw-data", path]
    if station:
        argv += ["--station", station]
    subprocess.run([sys.executable, "-c",
                    "import sys, local_runner\n"
                    "flags = local_runner.parse_flags(sys.argv[1:])\n"
                    "local_runner.curate(flags)", *argv], cwd=_REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    run.rows = parquet_rows(os.path.join(runs_dir, "data", "curated", "span-*", "*.parquet"))
    run.start()
    exit_code = local_runner.main(argv)
    run.extra["exit_code"] = exit_code
    run.extra.update(_pipeline_outcome(
        os.path.join(runs_dir, "pipeline", local_runner.METADATA_FILE), "rain-tomorrow"))
    if exit_code != 0:
        raise RuntimeError(f"local_runner exited with {exit_code}")


@workload
def pipeline_stock(run: Run, span_dir: str, work_dir: str,
                   beam_pipeline_args: List[str]) -> None:
    """The stock configuration (benchmarks/stock_pipeline.py) over a curated span."""
    from tfx import v1 as tfx

    from benchmarks.stock_pipeline import create_stock_pipeline, write_curated_as_csv

    name = "bench-stock-pipeline"
    csv_dir = os.path.join(work_dir, "csv")
    run.rows = write_curated_as_csv(span_dir, os.path.join(csv_dir, "data.csv"))
    metadata_path = os.path.join(work_dir, "metadata.sqlite")
    pipeline = create_stock_pipeline(name, os.path.join(work_dir, "root"), metadata_path,
                                     csv_dir, os.path.join(work_dir, "serving"),
                                     beam_pipeline_args)
    run.start()
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        run.extra.update(_pipeline_outcome(metadata_path, name))


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
