"""Benchmarks: Spark curation, Parquet -> tf.Example ingestion (ours vs stock
vs the no-Beam floor), ExampleGen -> Transform (ours vs stock), the dev loop
(`python local_runner.py` on the bundled data: first run and unchanged
re-run, per component, repeated) and the whole pipeline ours vs a stock TFX
configuration (bundled data and synthetic weather of the given sizes).

  python -m benchmarks.run_benchmarks [--sizes 10000,100000,1000000] [--smoke]
                                      [--parts devloop,pipeline_vs_stock] [--repeat 3]
                                      [--output benchmarks/results] [--merge]

Writes <output>/results.json and <output>/results.md (after every measurement,
so an interrupted run keeps what it measured) and prints the tables.
"""
import argparse
import dataclasses
import glob
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional

import psutil

from benchmarks import measure, report
from components import synthetic_weather
from pipeline.config import beam_args

REPO_ROOT = measure.REPO_ROOT
SCHEMA_PATH = os.path.join(REPO_ROOT, "schema", "schema.pbtxt")
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
SMOKE_SIZES = (200,)
DEFAULT_OUTPUT = os.path.join("benchmarks", "results")
PARTS = ("curation", "ingestion", "etl", "etl_stock", "etl_mp", "full_pipeline", "devloop",
         "pipeline_vs_stock")
SMOKE_PARTS = ("curation", "ingestion", "etl")
SPAN = "span-1"
PARQUET_GLOB = "*.parquet"
IN_MEMORY = beam_args(0)
MULTI_PROCESSING = beam_args(2)
SEED = 0


def grid(size: int) -> "tuple[int, int]":
    """(stations, days) with stations x days = size: 1,000 days once size allows."""
    days = min(1000, max(100, size // 10))
    return max(1, size // days), days


@dataclasses.dataclass
class Bench:
    """Where a benchmark run writes, and the results it has so far."""

    work_dir: str
    output_dir: str
    results: Dict[str, Any]
    timeout_seconds: Optional[float]

    def measure(self, name: str, size: int, workload: str, **params) -> Dict[str, Any]:
        """Runs one workload in a fresh process, records and saves the measurement."""
        os.makedirs(os.path.join(self.work_dir, "logs"), exist_ok=True)
        log_path = os.path.join(self.work_dir, "logs", f"{name}-{size}.log")
        print(f"[{report.now_iso()}] {name} @ {size:,} ...", flush=True)
        load_before = list(psutil.getloadavg())
        result = measure.run_workload(workload, params, log_path, self.timeout_seconds)
        rows_per_s = (result.rows / result.seconds
                      if result.status == "ok" and result.rows and result.seconds else None)
        record = {
            "name": name, "size": size, "status": result.status, "rows": result.rows,
            "seconds": result.seconds, "process_seconds": result.process_seconds,
            "rows_per_s": rows_per_s, "peak_rss_mb": result.peak_rss_mb,
            "extra": result.extra, "error": result.error,
            # Other work on a shared machine shows up here, not in the timings.
            "load_average_1m": {"start": load_before[0], "end": psutil.getloadavg()[0]},
        }
        measurements = self.results["measurements"]
        measurements[:] = [m for m in measurements if (m["name"], m["size"]) != (name, size)]
        measurements.append(record)
        self.save()
        seconds = "–" if result.seconds is None else f"{result.seconds:.1f} s"
        print(f"    {result.status}, {seconds}, peak RSS {result.peak_rss_mb:,.0f} MB"
              + (f": {result.error[:300]}" if result.error else ""), flush=True)
        return record

    def save(self) -> str:
        self.results["load_average_end"] = list(psutil.getloadavg())
        return report.write(self.results, self.output_dir)


def run_size(bench: Bench, size: int, parts: List[str], largest: bool, first: bool) -> None:
    """Every measurement of one data size."""
    base = os.path.join(bench.work_dir, str(size))
    stations, days = grid(size)
    raw_dir = os.path.join(base, "raw")
    synthetic_weather.generate(raw_dir, stations, days, seed=SEED)
    data_dir = os.path.join(base, "data")
    # Curation skips raw files it has curated before: start from nothing.
    shutil.rmtree(data_dir, ignore_errors=True)
    curated = bench.measure("curation", size, "curation",
                            raw_pattern=os.path.join(raw_dir, "*.csv"), output_dir=data_dir)
    if curated["status"] != "ok":
        print(f"    curation failed at {size:,}; nothing else to measure at this size.")
        return
    dated_root = os.path.join(data_dir, "curated")
    string_root = os.path.join(base, "curated_strdate")
    write_string_date_copy(os.path.join(dated_root, SPAN), os.path.join(string_root, SPAN))
    if "ingestion" in parts:
        ingestion(bench, size, base, dated_root, string_root, with_date_crash=first)
    if "etl" in parts:
        bench.measure("etl_ours", size, "etl", executor="ours", input_base=dated_root,
                      work_dir=os.path.join(base, "etl_ours"), schema_path=SCHEMA_PATH,
                      beam_pipeline_args=IN_MEMORY)
    if "etl_stock" in parts:
        bench.measure("etl_stock", size, "etl", executor="stock", input_base=string_root,
                      work_dir=os.path.join(base, "etl_stock"), schema_path=SCHEMA_PATH,
                      beam_pipeline_args=IN_MEMORY)
    if "pipeline_vs_stock" in parts:
        pipeline_vs_stock(bench, size, raw_data=[os.path.join(raw_dir, "*.csv")], station=None,
                          stock_span_dir=os.path.join(dated_root, SPAN),
                          base=os.path.join(base, "pipeline_vs_stock"))
    if "etl_mp" in parts and largest:
        bench.measure("etl_ours_mp2", size, "etl", executor="ours", input_base=dated_root,
                      work_dir=os.path.join(base, "etl_ours_mp2"), schema_path=SCHEMA_PATH,
                      beam_pipeline_args=MULTI_PROCESSING)
    # The examples and pipeline roots are large at 1M rows; the next size needs the disk.
    for leftover in ("examples", "etl_ours", "etl_stock", "etl_ours_mp2", "raw",
                     "pipeline_vs_stock"):
        shutil.rmtree(os.path.join(base, leftover), ignore_errors=True)


def ingestion(bench: Bench, size: int, base: str, dated_root: str, string_root: str,
              with_date_crash: bool) -> None:
    """Ours vs stock ExampleGen executors vs the floor, then the count checks."""
    outputs = {}
    runs = [("ours", "ours", dated_root), ("ours_strdate", "ours", string_root),
            ("stock_strdate", "stock", string_root)]
    if with_date_crash:  # documents the crash once; it fails the same way at every size
        runs.append(("stock_date", "stock", dated_root))
    for label, executor, root in runs:
        output_dir = os.path.join(base, "examples", label)
        record = bench.measure(f"ingest_{label}", size, "ingest", executor=executor,
                               input_base=root, pattern=f"{SPAN}/{PARQUET_GLOB}",
                               output_dir=output_dir, beam_pipeline_args=IN_MEMORY)
        if record["status"] == "ok":
            outputs[label] = output_dir
    pattern = os.path.join(dated_root, SPAN, PARQUET_GLOB)
    floor = bench.measure("ingest_floor", size, "floor", pattern=pattern)
    bench.measure("ingest_floor_write", size, "floor_write", pattern=pattern,
                  output_path=os.path.join(base, "examples", "floor.tfrecord.gz"))
    verified = measure.run_workload(
        "verify_ingestion", {"parquet_pattern": pattern, "outputs": outputs},
        os.path.join(bench.work_dir, "logs", f"verify-{size}.log"))
    bench.results["checks"][str(size)] = ingestion_checks(verified, floor)
    bench.save()


def ingestion_checks(verified: measure.Measurement, floor: Dict[str, Any]) -> Dict[str, Any]:
    """Same example counts everywhere; ours keeps every zero; what stock lost."""
    if verified.status != "ok":
        return {"passed": False, "error": verified.error, "parquet_rows": None, "examples": {},
                "zeros": {}, "floor_rows": floor["rows"], "parquet_zeros": None,
                "stock_lost_zeros": None}
    parquet = verified.extra.pop("parquet")
    examples = {label: counts["rows"] for label, counts in verified.extra.items()}
    zeros = {label: counts["zeros"] for label, counts in verified.extra.items()}
    stock_zeros = zeros.get("stock_strdate")
    counts_match = (set(examples.values()) == {parquet["rows"]}
                    and floor["rows"] == parquet["rows"]
                    and {"ours", "ours_strdate", "stock_strdate"} <= set(examples))
    ours_keep_zeros = all(zeros.get(label) == parquet["zeros"] for label in ("ours", "ours_strdate"))
    return {
        "passed": counts_match and ours_keep_zeros,
        "counts_match": counts_match,
        "ours_keep_every_zero": ours_keep_zeros,
        "parquet_rows": parquet["rows"],
        "parquet_zeros": parquet["zeros"],
        "floor_rows": floor["rows"],
        "examples": examples,
        "zeros": zeros,
        "missing_precipitation": {label: c["missing"] for label, c in verified.extra.items()},
        "splits": {label: c["splits"] for label, c in verified.extra.items()},
        "stock_lost_zeros": None if stock_zeros is None else parquet["zeros"] - stock_zeros,
    }


def write_string_date_copy(source_dir: str, target_dir: str) -> None:
    """The curated span with `date` cast to string: what the stock executor can read.

    The target is emptied first: Spark names its part files with a run id, so
    a copy from an earlier benchmark run in the same work directory would
    otherwise stay beside this one and be read (and counted) as well.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shutil.rmtree(target_dir, ignore_errors=True)
    os.makedirs(target_dir)
    for path in sorted(glob.glob(os.path.join(source_dir, PARQUET_GLOB))):
        table = pq.read_table(path)
        index = table.schema.get_field_index("date")
        table = table.set_column(index, "date", pc.cast(table.column(index), "string"))
        pq.write_table(table, os.path.join(target_dir, os.path.basename(path)))


def full_pipeline(bench: Bench) -> None:
    """First run and unchanged re-run of local_runner on the bundled data."""
    runs_dir = os.path.join(bench.work_dir, "full_pipeline_runs")
    shutil.rmtree(runs_dir, ignore_errors=True)
    first = bench.measure("full_pipeline_first", 0, "full_pipeline", runs_dir=runs_dir)
    # Measured as size 0 until the row count is known, then renamed to it.
    size = first["rows"] or 0
    bench.results["full_pipeline_size"] = size
    first["size"] = size
    bench.measure("full_pipeline_rerun", size, "full_pipeline", runs_dir=runs_dir)


def bundled_data() -> "tuple[str, int]":
    """The bundled Seattle CSV and its row count."""
    from vega_datasets import local_data

    path = local_data.seattle_weather.filepath
    with open(path) as f:
        return path, sum(1 for _ in f) - 1


def devloop(bench: Bench, repeats: int) -> None:
    """`python local_runner.py --runs-dir FRESH` on the bundled data, then the
    same command again (unchanged: up to date, nothing runs), then with
    --force (every component a TFX cache hit), `repeats` times in fresh
    directories."""
    _, rows = bundled_data()
    bench.results["devloop_size"] = rows
    for index in range(1, repeats + 1):
        runs_dir = os.path.join(bench.work_dir, f"devloop_runs_{index}")
        shutil.rmtree(runs_dir, ignore_errors=True)
        bench.measure(f"devloop_first_{index}", rows, "devloop", runs_dir=runs_dir)
        bench.measure(f"devloop_rerun_{index}", rows, "devloop", runs_dir=runs_dir)
        # Past the up-to-date check (pipeline/up_to_date.py): TFX's cache hits.
        bench.measure(f"devloop_cached_{index}", rows, "devloop", runs_dir=runs_dir,
                      extra_args=["--force"])
        for name in ("console.txt",):  # the last command's console, kept beside the logs
            if os.path.exists(os.path.join(runs_dir, name)):
                shutil.copy(os.path.join(runs_dir, name),
                            os.path.join(bench.work_dir, "logs", f"devloop_{index}_{name}"))
        shutil.rmtree(runs_dir, ignore_errors=True)


def pipeline_vs_stock(bench: Bench, size: int, raw_data: List[str], station: Optional[str],
                      stock_span_dir: Optional[str], base: str) -> None:
    """Our pipeline (local_runner, curated beforehand) vs the stock configuration
    (benchmarks/stock_pipeline.py) on the same curated rows."""
    shutil.rmtree(base, ignore_errors=True)
    ours_dir = os.path.join(base, "ours")
    ours = bench.measure("pipeline_ours", size, "pipeline_ours", raw_data=raw_data,
                         station=station, runs_dir=ours_dir)
    span_dir = stock_span_dir or os.path.join(ours_dir, "data", "curated", SPAN)
    if not os.path.isdir(span_dir):
        print(f"    no curated span for the stock configuration ({ours['status']})")
        return
    bench.measure("pipeline_stock", size, "pipeline_stock", span_dir=span_dir,
                  work_dir=os.path.join(base, "stock"), beam_pipeline_args=IN_MEMORY)


def parse_flags(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None,
                        help="comma-separated raw row counts, or 'none' (default "
                        f"{','.join(map(str, DEFAULT_SIZES))}; --smoke: {SMOKE_SIZES[0]})")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny size; ingestion and our ETL only: no stock ETL, multi-processing "
                        "or full pipeline (~2-3 min)")
    parser.add_argument("--parts", default=None,
                        help=f"comma-separated subset of {','.join(PARTS)} (curation always runs)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="results directory")
    parser.add_argument("--merge", action="store_true",
                        help="keep the measurements already in <output>/results.json, "
                        "replacing those measured again")
    parser.add_argument("--work-dir", default=None,
                        help="generated data and outputs (default: a temporary directory, removed)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="dev-loop repetitions (first run + re-run each)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds after which a measurement is killed and recorded as timeout")
    flags = parser.parse_args(argv)
    default_sizes = SMOKE_SIZES if flags.smoke else DEFAULT_SIZES
    if flags.sizes == "none":  # only the bundled-data parts (devloop, pipeline_vs_stock)
        flags.sizes = []
    else:
        flags.sizes = ([int(s) for s in flags.sizes.split(",")] if flags.sizes
                       else list(default_sizes))
    flags.parts = (flags.parts.split(",") if flags.parts
                   else list(SMOKE_PARTS if flags.smoke else PARTS))
    unknown = set(flags.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {PARTS}")
    return flags


def main(argv: Optional[List[str]] = None) -> int:
    flags = parse_flags(argv)
    output_dir = os.path.abspath(flags.output)
    previous = report.load(output_dir) if flags.merge else None
    results = {
        "date": report.now_iso(),
        "command": "python -m benchmarks.run_benchmarks " + " ".join(argv if argv is not None
                                                                     else sys.argv[1:]),
        "machine": report.describe_machine(),
        "load_average_start": list(psutil.getloadavg()),
        "measurements": previous["measurements"] if previous else [],
        "checks": previous["checks"] if previous else {},
        "full_pipeline_size": previous.get("full_pipeline_size") if previous else None,
        "devloop_size": previous.get("devloop_size") if previous else None,
        "devloop_before": (previous or {}).get("devloop_before") or report.DEVLOOP_BEFORE,
    }
    if previous:
        results["previous_runs"] = previous.get("previous_runs", []) + [
            {"date": previous["date"], "command": previous["command"],
             "cpu": previous.get("machine", {}).get("cpu")}]
    work_dir = flags.work_dir or tempfile.mkdtemp(prefix="rain-bench-")
    bench = Bench(work_dir, output_dir, results, flags.timeout)
    try:
        if "devloop" in flags.parts:
            devloop(bench, flags.repeat)
        if "pipeline_vs_stock" in flags.parts:
            raw, rows = bundled_data()
            pipeline_vs_stock(bench, rows, raw_data=[raw], station="seattle", stock_span_dir=None,
                              base=os.path.join(work_dir, "pipeline_vs_stock_bundled"))
        for index, size in enumerate(flags.sizes):
            run_size(bench, size, flags.parts, largest=size == max(flags.sizes),
                     first=index == 0)
        if "full_pipeline" in flags.parts:
            full_pipeline(bench)
    finally:
        text = bench.save()
        if not flags.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
