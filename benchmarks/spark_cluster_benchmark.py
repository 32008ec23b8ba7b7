"""Spark curation: local[2] vs a standalone cluster of two one-core workers, same machine.

    python -m benchmarks.spark_cluster_benchmark [--rows 1000000] [--work-dir DIR]

Generates `--rows` synthetic weather rows (`components.synthetic_weather`,
the stations x days grid of `benchmarks/run_benchmarks.py`), then curates them
twice, each time in a fresh Python process measured from outside like every
other benchmark (`benchmarks.measure`): once with `local[2]` (driver and two
task threads in one JVM) and once against a standalone master with two
workers of one core and 1 GB each (`components.spark_curation.standalone`,
started before and stopped after its row, start-up not timed). Both use the
default executor/driver heap (1 GB). `seconds` is the child's own time from
before the SparkSession is built to the published span, as in the
`curation` workload; peak RSS is the child's process tree (driver JVM
included) and, for the cluster, also the master, workers and executors.
Both runs must publish the same span (manifest and row counts) or the
result says so. Writes `<output-dir>/spark_cluster.json` and `.md`.

On one machine the cluster can only cost more: the same two cores, plus
executor JVMs, shuffle and cached blocks moved between processes over
loopback, and task scheduling through RPC. The row shows that price.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import psutil

from benchmarks import measure, report

REPO_ROOT = measure.REPO_ROOT
DEFAULT_OUTPUT = os.path.join("benchmarks", "results")
RESULT_NAME = "spark_cluster"
SEED = 0
LOCAL_MASTER = "local[2]"
WORKERS, WORKER_CORES, WORKER_MEMORY = 2, 1, "1g"


def grid(size: int) -> "tuple[int, int]":
    """(stations, days), as `benchmarks.run_benchmarks.grid` (not imported: it pulls in TFX)."""
    days = min(1000, max(100, size // 10))
    return max(1, size // days), days


# ---------------------------------------------------------------- child


def child(params: Dict[str, Any], result_path: str) -> int:
    """Runs one curation and writes {status, seconds, rows, extra[, error]}."""
    from components.spark_curation.job import run_curation
    from components.spark_curation.spans import read_manifest

    started = time.perf_counter()
    try:
        result = run_curation(params["raw_pattern"], params["output_dir"], master=params["master"],
                              spark_conf=params.get("spark_conf") or {})
        manifest = read_manifest(params["output_dir"], result.span)
        manifest.pop("created_at", None)
        for entry in manifest.get("input_files", []):  # temp paths of this machine: names only
            entry["path"] = os.path.basename(entry["path"])
        manifest["quarantine_dir"] = None if not manifest.get("quarantine_dir") else os.path.relpath(
            manifest["quarantine_dir"], params["output_dir"])
        record = {"status": "ok", "seconds": time.perf_counter() - started, "rows": result.rows_in,
                  "extra": {"rows_written": result.rows_written,
                            "rows_quarantined": result.rows_quarantined, "manifest": manifest}}
    except Exception as error:  # reported, not raised: the parent records the failure
        record = {"status": "failed", "seconds": time.perf_counter() - started, "rows": None,
                  "extra": {}, "error": f"{type(error).__name__}: {str(error)[:1500]}"}
    with open(result_path, "w") as f:
        json.dump(record, f)
    return 0 if record["status"] == "ok" else 1


# ---------------------------------------------------------------- parent


def pids_rss_bytes(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += measure.tree_rss_bytes(psutil.Process(pid))
        except psutil.Error:
            pass
    return total


def run_child(params: Dict[str, Any], log_path: str, env: Dict[str, str],
              daemon_pids: List[int], timeout_seconds: float) -> Dict[str, Any]:
    """One curation in a fresh process, sampled like `measure.run_workload`."""
    result_path = log_path + ".result.json"
    command = [sys.executable, "-m", "benchmarks.spark_cluster_benchmark", "--child",
               json.dumps(params), result_path]
    env = dict(env, PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p))
    load_before = psutil.getloadavg()[0]
    started = time.perf_counter()
    peak = peak_daemons = 0
    status = None
    with open(log_path, "w") as log:
        process = psutil.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            peak = max(peak, measure.tree_rss_bytes(process))
            peak_daemons = max(peak_daemons, pids_rss_bytes(daemon_pids))
            if time.perf_counter() - started > timeout_seconds:
                for member in process.children(recursive=True) + [process]:
                    try:
                        member.kill()
                    except psutil.Error:
                        pass
                status = "timeout"
                break
            time.sleep(measure.SAMPLE_SECONDS)
        process.wait()
    record = {"process_seconds": time.perf_counter() - started, "peak_rss_mb": peak / 2 ** 20,
              "daemons_peak_rss_mb": peak_daemons / 2 ** 20 if daemon_pids else None,
              "load_average_1m": {"start": load_before, "end": psutil.getloadavg()[0]}}
    if status == "timeout" or not os.path.exists(result_path):
        with open(log_path, errors="replace") as f:
            tail = f.read()[-2000:]
        record.update(status=status or "failed", seconds=None, rows=None, extra={},
                      error=f"killed after {timeout_seconds:.0f} s" if status else f"no result: {tail}")
        return record
    with open(result_path) as f:
        record.update(json.load(f))
    return record


RUNS = ("local2", "local2_heap3g", "standalone_2x1")


def measure_runs(rows: int, work_dir: str, timeout_seconds: float, runs=RUNS) -> Dict[str, Any]:
    """Generates the data, then measures each of `runs` (names from RUNS)."""
    from components import synthetic_weather
    from components.spark_curation.standalone import StandaloneCluster, daemon_env

    stations, days = grid(rows)
    raw_dir = os.path.join(work_dir, "raw")
    shutil.rmtree(raw_dir, ignore_errors=True)
    synthetic_weather.generate(raw_dir, stations, days, seed=SEED)
    raw_pattern = os.path.join(raw_dir, "*.csv")
    logs = os.path.join(work_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    quiet = {"spark.ui.showConsoleProgress": "false"}
    measurements = []
    for run in runs:
        output_dir = os.path.join(work_dir, f"out-{run}")
        shutil.rmtree(output_dir, ignore_errors=True)
        print(f"[{report.now_iso()}] curation {run} @ {rows:,} ...", flush=True)
        if run.startswith("local2"):
            # local[2] keeps driver, tasks and cache in one JVM: 1 GB by default;
            # heap3g gives it what the cluster row has in total (driver 1 GB +
            # two executors of 1 GB).
            conf = dict(quiet, **({"spark.driver.memory": "3g"} if run == "local2_heap3g" else {}))
            env = daemon_env(os.path.join(work_dir, f"{run}-env"))
            record = run_child({"raw_pattern": raw_pattern, "output_dir": output_dir,
                                "master": LOCAL_MASTER, "spark_conf": conf},
                               os.path.join(logs, f"{run}.log"), env, [], timeout_seconds)
            record.update(master=LOCAL_MASTER, spark_conf=conf)
        else:
            cluster_root = os.path.join(work_dir, "cluster")
            shutil.rmtree(cluster_root, ignore_errors=True)
            started = time.perf_counter()
            with StandaloneCluster(cluster_root, workers=WORKERS, worker_memory=WORKER_MEMORY,
                                   cores=WORKER_CORES).start() as cluster:
                cluster_start_seconds = time.perf_counter() - started
                record = run_child({"raw_pattern": raw_pattern, "output_dir": output_dir,
                                    "master": cluster.url, "spark_conf": quiet},
                                   os.path.join(logs, f"{run}.log"), cluster.env, cluster.pids(),
                                   timeout_seconds)
                apps = cluster.master_state()["completedapps"]
            record.update(master="spark://127.0.0.1:<port>", spark_conf=quiet,
                          cluster_start_seconds=cluster_start_seconds,
                          cluster_apps=[{"id": a["id"], "cores": a["cores"], "state": a["state"]}
                                        for a in apps])
        measurements.append(dict(record, name=f"curation_{run}", size=rows, finished_at=report.now_iso()))
        _print(record)
    return {"rows": rows, "grid": {"stations": stations, "days": days}, "measurements": measurements}


def summarise(results: Dict[str, Any]) -> Dict[str, Any]:
    """Adds `same_output` (every ok run published the same span) and the ratios."""
    by_name = {m["name"]: m for m in results["measurements"]}
    manifests = [json.dumps(m["extra"]["manifest"], sort_keys=True)
                 for m in results["measurements"] if m["status"] == "ok"]
    results["same_output"] = (len(manifests) == len(results["measurements"])
                              and len(set(manifests)) == 1)
    cluster = by_name.get("curation_standalone_2x1")
    results["ratios"] = {}
    for local in ("curation_local2", "curation_local2_heap3g"):
        if cluster and local in by_name and cluster["status"] == by_name[local]["status"] == "ok":
            results["ratios"][f"standalone_2x1 / {local[len('curation_'):]}"] = (
                cluster["seconds"] / by_name[local]["seconds"])
    return results


def _print(record: Dict[str, Any]) -> None:
    seconds = "–" if record.get("seconds") is None else f"{record['seconds']:.1f} s"
    print(f"    {record['status']}, {seconds}, peak RSS {record['peak_rss_mb']:,.0f} MB"
          + (f": {record['error'][:300]}" if record.get("error") else ""), flush=True)


def markdown(results: Dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# Spark curation: local[2] vs a standalone cluster on the same machine",
        "",
        "Generated by " + " and ".join(f"`{c}`" for c in results["commands"])
        + f", last at {results['finished_at']}, on "
        f"{machine.get('cpu', '?')} ({machine.get('logical_cores', '?')} logical cores, "
        f"shared with other work: see the load column).",
        "",
        f"{results['rows']:,} synthetic rows ({results['grid']['stations']} stations x "
        f"{results['grid']['days']} days). local[2]: one JVM, two task threads, 1 GB heap "
        "(Spark's default) or 3 GB (`local2_heap3g`: the cluster row's total). Standalone: "
        f"master + {WORKERS} workers x {WORKER_CORES} core / {WORKER_MEMORY} on 127.0.0.1, one "
        "executor each (1 GB heap), driver (1 GB) in the measured process. Seconds: "
        "SparkSession start to published span; cluster start-up is not included (shown "
        "separately). Each row ran once.",
        "",
        "| run | master | status | rows | seconds | rows/s | peak RSS MB (driver) | "
        "peak RSS MB (master+workers+executors) | load 1 min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results["measurements"]:
        seconds = m.get("seconds")
        rate = f"{m['rows'] / seconds:,.0f}" if m["status"] == "ok" and seconds else "–"
        daemons = m.get("daemons_peak_rss_mb")
        load = m["load_average_1m"]
        lines.append(
            f"| {m['name']} | `{m['master']}` | {m['status']} | "
            f"{m['rows'] or 0:,} | {'–' if seconds is None else f'{seconds:.1f}'} | {rate} | "
            f"{m['peak_rss_mb']:,.0f} | {'–' if daemons is None else f'{daemons:,.0f}'} | "
            f"{load['start']:.1f}→{load['end']:.1f} |")
    ratios = "; ".join(f"{name}: {value:.2f}" for name, value in results["ratios"].items())
    lines += [
        "",
        f"Same published span in every run (manifest: counts, reasons, columns, input "
        f"digests): {'yes' if results['same_output'] else 'NO'}. Seconds ratios: {ratios or '–'}.",
    ]
    for m in results["measurements"]:
        if m.get("cluster_start_seconds") is not None:
            lines.append(f"Cluster start-up (master + {WORKERS} workers registered): "
                         f"{m['cluster_start_seconds']:.1f} s.")
    lines.append("")
    for note in results.get("notes", []):
        lines += [note, ""]
    return "\n".join(lines)


def parse_flags(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work-dir", default=None, help="data and Spark dirs (default: a temp dir, removed)")
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {','.join(RUNS)}")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other runs of an existing spark_cluster.json (same --rows)")
    parser.add_argument("--note", default=None, help="a sentence added to the Markdown")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(json.loads(argv[1]), argv[2])
    flags = parse_flags(argv)
    work_dir = flags.work_dir or tempfile.mkdtemp(prefix="spark-cluster-bench-")
    runs = [run for run in flags.runs.split(",") if run]
    unknown = set(runs) - set(RUNS)
    if unknown:
        print(f"unknown run(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    json_path = os.path.join(flags.output_dir, RESULT_NAME + ".json")
    previous = None
    if flags.merge and os.path.exists(json_path):
        with open(json_path) as f:
            previous = json.load(f)
        if previous["rows"] != flags.rows:
            print(f"--merge: {json_path} has {previous['rows']:,} rows, not {flags.rows:,}",
                  file=sys.stderr)
            return 2
    try:
        results = measure_runs(flags.rows, work_dir, flags.timeout, runs)
    finally:
        if not flags.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    shown = list(argv)
    if "--work-dir" in shown[:-1]:  # a path of this machine: not recorded
        shown[shown.index("--work-dir") + 1] = "<dir>"
    if "--note" in shown[:-1]:  # quoted in full below the table
        shown[shown.index("--note") + 1] = "<note>"
    command = " ".join(["python -m benchmarks.spark_cluster_benchmark", *shown])
    commands, notes = [command], [flags.note] if flags.note else []
    if previous:
        kept = [m for m in previous["measurements"] if m["name"] not in
                {m["name"] for m in results["measurements"]}]
        results["measurements"] = kept + results["measurements"]
        order = {f"curation_{run}": index for index, run in enumerate(RUNS)}
        results["measurements"].sort(key=lambda m: order.get(m["name"], len(order)))
        commands = previous.get("commands", [previous.get("command")]) + commands
        notes = previous.get("notes", [previous["note"]] if previous.get("note") else []) + notes
    for m in results["measurements"]:  # results of older versions kept temp paths
        for entry in m["extra"].get("manifest", {}).get("input_files", []):
            entry["path"] = os.path.basename(entry["path"])
    results.update(commands=commands, notes=notes, finished_at=report.now_iso(),
                   machine=report.describe_machine())
    summarise(results)
    os.makedirs(flags.output_dir, exist_ok=True)
    with open(os.path.join(flags.output_dir, RESULT_NAME + ".json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    with open(os.path.join(flags.output_dir, RESULT_NAME + ".md"), "w") as f:
        f.write(markdown(results))
    print(markdown(results))
    return 0 if results["same_output"] else 1


if __name__ == "__main__":
    sys.exit(main())
