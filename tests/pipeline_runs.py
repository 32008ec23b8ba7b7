"""Runs the bundled data through the local runner four times, once per session.

The end-to-end, notebook and report tests all assert on these runs, so the
slow part (about four pipeline runs) happens once:

1. first run: curation + the whole pipeline, a version is pushed;
2. unchanged re-run with --force: cache hits, nothing new pushed;
   then unchanged without --force: "Up to date", nothing runs;
3. a worse candidate (untrained, cache off): not blessed vs the baseline;
4. a new span with injected anomalies (wind 300 m/s): stops at the AnomalyGate.
"""
import contextlib
import dataclasses
import glob
import io
import os
import re
from typing import Dict, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

import local_runner
from pipeline.run_summary import RunSummary, collect_run_summary

TRAIN_STEPS = "400"
ANOMALOUS_WIND = 300.0


@dataclasses.dataclass
class RunRecord:
    exit_code: int
    summary: Optional[RunSummary]
    stdout: str
    stderr: str
    serving_files: Dict[str, float]  # path -> mtime, after the run


@dataclasses.dataclass
class PipelineRuns:
    runs_dir: str
    first: RunRecord
    rerun: RunRecord
    uptodate: RunRecord
    worse: RunRecord
    anomalous: RunRecord

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.runs_dir, "pipeline")

    @property
    def model_dir(self) -> str:
        return os.path.join(self.runs_dir, "serving", "rain_tomorrow")

    def versions(self) -> List[str]:
        return sorted(v for v in os.listdir(self.model_dir) if v.isdigit())


def _serving_files(runs_dir: str) -> Dict[str, float]:
    return {p: os.path.getmtime(p)
            for p in glob.glob(os.path.join(runs_dir, "serving", "**"), recursive=True)}


def run_once(runs_dir: str, *extra: str) -> RunRecord:
    argv = ["--runs-dir", runs_dir, "--train-steps", TRAIN_STEPS, "--eval-steps", "20", *extra]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        exit_code = local_runner.main(argv)
    flags = local_runner.parse_flags(argv)
    from tfx import v1 as tfx

    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(flags.pipeline_root, local_runner.METADATA_FILE))
    # The run id the runner announced: its summary describes that run.
    announced = re.search(r"^Run (\S+) \(pid \d+\)$", out.getvalue(), re.MULTILINE)
    summary = collect_run_summary(connection, flags.pipeline_name,
                                  run_id=announced.group(1) if announced else None)
    return RunRecord(exit_code, summary, out.getvalue(), err.getvalue(), _serving_files(runs_dir))


def inject_anomalous_span(runs_dir: str) -> str:
    """Copies span 1 as span 2 with 50 impossible wind values."""
    curated = os.path.join(runs_dir, "data", "curated")
    table = pq.read_table(os.path.join(curated, "span-1"))
    wind = table.column("wind").to_pylist()
    wind[:50] = [ANOMALOUS_WIND] * 50
    table = table.set_column(table.schema.get_field_index("wind"), "wind", pa.array(wind))
    span_dir = os.path.join(curated, "span-2")
    os.makedirs(span_dir)
    pq.write_table(table, os.path.join(span_dir, "part-0.parquet"))
    return span_dir


def run_all(runs_dir: str) -> PipelineRuns:
    first = run_once(runs_dir)
    # --force: past the up-to-date check, so TFX's cache is what is tested.
    rerun = run_once(runs_dir, "--force")
    uptodate = run_once(runs_dir)
    # One step at a negligible learning rate: an essentially untrained model
    # (seeded, so repeatable) that clears an absolute floor of 0.01 but not
    # the comparison with the baseline.
    worse = run_once(runs_dir, "--no-cache", "--train-steps", "1", "--learning-rate", "1e-9",
                     "--min-auc", "0.01")
    inject_anomalous_span(runs_dir)
    anomalous = run_once(runs_dir)
    return PipelineRuns(runs_dir, first, rerun, uptodate, worse, anomalous)
