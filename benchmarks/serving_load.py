"""Load and faults on the prediction service: bounded, 127.0.0.1 only, stops by itself.

  python -m benchmarks.serving_load [--seconds 20] [--output-dir benchmarks/results]

What it does, on a temporary serving directory with the small real model of
`serving.tiny_model` (trained through the real code path, pushed with the
real pusher's `publish_version`):
  1. starts the service as the README says (`python -m serving`, in-process
     backend) as a subprocess on a free 127.0.0.1 port;
  2. steady load: 2, then 8 concurrent clients, each sending station requests
     (8 raw days -> features -> P(rain)) back to back for `--seconds`:
     throughput, p50/p99 latency, errors;
  3. hot swap: 8 clients for `--seconds`, a new version pushed halfway:
     errors, which versions answered, seconds from the push to the first
     answer by the new version;
  4. faults: 8 clients for `--seconds` while a half-written version directory
     (saved_model.pb only) and a corrupt one (garbage graph) appear above the
     live version: errors, versions that answered, the reasons /v1/models
     gives and the service's log lines about them.
Writes `serving_load.json` and `serving_load.md` into `--output-dir`.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

import httpx

from benchmarks import report
from serving import model_dir as serving_dir
from serving import tiny_model

MODEL = "rain_tomorrow"
POLL_SECONDS = 0.5
RESULTS_NAME = "serving_load"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_body(first_day: int = 100, count: int = 8) -> Dict[str, Any]:
    days = tiny_model.seattle_observations()[first_day:first_day + count]
    return {"days": [{"date": d.date.isoformat(), "precipitation": d.precipitation,
                      "temp_max": d.temp_max, "temp_min": d.temp_min, "wind": d.wind,
                      "weather": d.weather} for d in days]}


class Service:
    """`python -m serving` as a subprocess; its log goes to a file."""

    def __init__(self, serving_base: str, log_path: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--serving-base", serving_base,
             "--model-name", MODEL, "--host", "127.0.0.1", "--port", str(self.port),
             "--poll-seconds", str(POLL_SECONDS)],
            cwd=_REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"service not ready after {timeout}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log_path) as f:
            return "".join(f.readlines()[-lines:])

    def log_lines(self, needle: str) -> List[str]:
        with open(self.log_path) as f:
            return [line.strip() for line in f if needle in line]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def run_load(url: str, clients: int, seconds: float, body: Dict[str, Any],
             during=None, until=None, grace_seconds: float = 30.0) -> Dict[str, Any]:
    """`clients` threads post `body` back to back for `seconds`; `during()` runs meanwhile.

    With `until(versions_seen)`, the load goes on past `seconds` (at most
    `grace_seconds` more) until it returns True, so a short run still sees
    the event it measures.

    Returns:
      requests, errors (non-200 or transport failures, with examples),
      throughput, latency percentiles and the answers per model version
      with the first time each version answered.
    """
    stop = threading.Event()
    records: List[tuple] = []  # (start offset s, latency s, status, version)
    seen = set()
    lock = threading.Lock()
    started = time.monotonic()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                begin = time.monotonic()
                try:
                    response = http.post("/v1/stations/seattle/predict", json=body)
                    status = response.status_code
                    version = response.json().get("model", {}).get("version") if status == 200 else None
                except httpx.HTTPError as error:
                    status, version = f"{type(error).__name__}", None
                end = time.monotonic()
                with lock:
                    records.append((begin - started, end - begin, status, version))
                    seen.add(version)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    extra = during() if during else None
    remaining = seconds - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    deadline = time.monotonic() + grace_seconds
    while until and not until(set(seen)) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies = sorted(r[1] for r in records)
    errors = [r for r in records if r[2] != 200]
    versions: Dict[str, Dict[str, Any]] = {}
    for offset, _, status, version in sorted(records):
        if status == 200:
            entry = versions.setdefault(str(version), {"answers": 0, "first_at_s": round(offset, 3)})
            entry["answers"] += 1
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(records),
        "errors": len(errors),
        "error_examples": [str(e[2]) for e in errors[:5]],
        "throughput_rps": round(len(records) / elapsed, 1),
        "latency_ms": {
            "p50": round(1000 * _percentile(latencies, 50), 2),
            "p99": round(1000 * _percentile(latencies, 99), 2),
            "max": round(1000 * latencies[-1], 2) if latencies else None,
            "mean": round(1000 * statistics.fmean(latencies), 2) if latencies else None,
        },
        "versions": versions,
        "during": extra,
        "started_at": started,
    }


def _percentile(values: List[float], percent: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(percent / 100 * len(values) + 0.5) - 1))
    return values[index]  # nearest-rank


def _after(delay: float, action):
    """Runs `action` after `delay` seconds in a thread; returns a dict it fills."""
    outcome: Dict[str, Any] = {}

    def run():
        time.sleep(delay)
        outcome.update(action() or {})
        outcome["done_at"] = time.monotonic()

    threading.Thread(target=run, daemon=True).start()
    return outcome


def run(seconds: float, output_dir: str, work_dir: Optional[str] = None) -> Dict[str, Any]:
    """The whole benchmark; returns the results written to `output_dir`."""
    own_work_dir = work_dir is None
    work_dir = work_dir or tempfile.mkdtemp(prefix="serving-load-")
    try:
        return _run(seconds, output_dir, work_dir)
    finally:
        if own_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def _run(seconds: float, output_dir: str, work_dir: str) -> Dict[str, Any]:
    models = tiny_model.build_once()
    model_dir = os.path.join(work_dir, "serving", MODEL)
    first = tiny_model.publish(models[0], model_dir)
    service = Service(os.path.dirname(model_dir), os.path.join(work_dir, "service.log"))
    body = request_body()
    results: Dict[str, Any] = {
        "benchmark": RESULTS_NAME, "date": report.now_iso(), "machine": report.describe_machine(),
        "load_average_before": os.getloadavg(), "seconds_per_phase": seconds,
        "poll_seconds": POLL_SECONDS, "model": "serving.tiny_model (Seattle days, 8 hidden units)",
        "request": f"POST /v1/stations/seattle/predict with {len(body['days'])} raw days",
        "backend": "inprocess",
    }
    try:
        service.wait_ready()
        run_load(service.url, 2, min(seconds, 2.0), body)  # warm-up, not reported
        results["steady"] = [run_load(service.url, n, seconds, body) for n in (2, 8)]
        for steady in results["steady"]:
            steady.pop("during"), steady.pop("started_at")

        def push_new():
            return {"pushed_version": tiny_model.publish(models[1], model_dir)}

        pushed_holder: Dict[str, Any] = {}

        def push_later():
            pushed_holder.update(outcome=_after(seconds / 2, push_new))
            return pushed_holder["outcome"]

        def new_version_answered(seen) -> bool:
            version = pushed_holder.get("outcome", {}).get("pushed_version")
            return version is not None and version in seen

        swap = run_load(service.url, 8, seconds, body, during=push_later,
                        until=new_version_answered)
        pushed = swap.pop("during")
        new = swap["versions"].get(str(pushed.get("pushed_version")))
        # The version is renamed into place as publish_version's last step.
        push_offset = pushed["done_at"] - swap.pop("started_at")
        swap["old_version"] = first
        swap["new_version"] = pushed.get("pushed_version")
        swap["swapped"] = new is not None
        swap["seconds_push_to_first_answer"] = (
            round(new["first_at_s"] - push_offset, 3) if new else None)
        results["hot_swap"] = swap

        results["faults"] = _faults(service, model_dir, models, seconds, body)
        results["load_average_after"] = os.getloadavg()
    finally:
        service.stop()
    results["passed"] = (
        all(r["errors"] == 0 for r in results["steady"])
        and results["hot_swap"]["errors"] == 0 and results["hot_swap"]["swapped"]
        and results["faults"]["errors"] == 0 and results["faults"]["old_version_kept"])
    write(results, output_dir)
    return results


def _faults(service: Service, model_dir: str, models, seconds: float, body) -> Dict[str, Any]:
    live = max(serving_dir.existing_versions(model_dir))
    half, corrupt = live + 10, live + 20

    def break_things():
        half_dir = serving_dir.version_path(model_dir, half)
        os.makedirs(half_dir)
        shutil.copy(os.path.join(models[1].export_dir, "saved_model.pb"), half_dir)
        corrupt_dir = serving_dir.version_path(model_dir, corrupt)
        shutil.copytree(models[1].export_dir, corrupt_dir)
        with open(os.path.join(corrupt_dir, "saved_model.pb"), "wb") as f:
            f.write(b"\x00 not a graph")
        with open(os.path.join(corrupt_dir, serving_dir.METADATA_FILE), "w") as f:
            json.dump({"version": corrupt}, f)

    broken: Dict[str, Any] = {}

    def break_later():
        broken.update(outcome=_after(seconds / 4, break_things))
        return broken["outcome"]

    def three_polls_after_breaking(seen) -> bool:
        done_at = broken.get("outcome", {}).get("done_at")
        return done_at is not None and time.monotonic() > done_at + 3 * POLL_SECONDS

    result = run_load(service.url, 8, seconds, body, during=break_later,
                      until=three_polls_after_breaking)
    result.pop("during"), result.pop("started_at")
    states = {v["version"]: v for v in httpx.get(service.url + "/v1/models").json()["versions"]}
    result.update(
        live_version=live, half_written_version=half, corrupt_version=corrupt,
        old_version_kept=set(result["versions"]) == {str(live)},
        reasons={str(v): states.get(v, {}).get("reason") for v in (half, corrupt)},
        states={str(v): states.get(v, {}).get("state") for v in (half, corrupt)},
        service_log=service.log_lines("Ignoring version")[:4],
    )
    return result


def write(results: Dict[str, Any], output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, f"{RESULTS_NAME}.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    with open(os.path.join(output_dir, f"{RESULTS_NAME}.md"), "w") as f:
        f.write(markdown(results))


def markdown(results: Dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# Prediction service under load",
        "",
        f"{results['date']}; {machine['cpu']}, {machine['logical_cores']} logical cores "
        f"(shared with other work: load average {_load(results['load_average_before'])} before, "
        f"{_load(results.get('load_average_after'))} after); Python {machine['python']}.",
        f"`python -m benchmarks.serving_load --seconds {results['seconds_per_phase']}`: "
        f"{results['request']}, in-process backend, `{results['model']}`, clients and service "
        "on 127.0.0.1 (HTTP/1.1 keep-alive, one connection per client).",
        "",
        "| phase | clients | seconds | requests | errors | req/s | p50 ms | p99 ms | versions that answered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    phases = [("steady", r) for r in results["steady"]]
    phases += [("hot swap", results["hot_swap"]), ("faults", results["faults"])]
    for name, r in phases:
        answered = ", ".join(f"{v}: {e['answers']}" for v, e in r["versions"].items())
        lines.append(f"| {name} | {r['clients']} | {r['seconds']} | {r['requests']} | "
                     f"{r['errors']} | {r['throughput_rps']} | {r['latency_ms']['p50']} | "
                     f"{r['latency_ms']['p99']} | {answered} |")
    swap, faults = results["hot_swap"], results["faults"]
    lines += [
        "",
        f"**Hot swap**: version {swap['new_version']} pushed halfway through; "
        f"{'picked up' if swap['swapped'] else 'NOT picked up'} "
        f"{swap['seconds_push_to_first_answer']} s after the push (poll every "
        f"{results['poll_seconds']} s), {swap['errors']} failed requests.",
        "",
        f"**Faults**: a half-written version {faults['half_written_version']} (saved_model.pb "
        f"only) and a corrupt version {faults['corrupt_version']} (garbage graph) appeared "
        f"above live version {faults['live_version']}; "
        f"{'only the old version answered' if faults['old_version_kept'] else 'OTHER versions answered'}, "
        f"{faults['errors']} failed requests. Reasons in `/v1/models`:",
        "",
    ]
    for version, reason in faults["reasons"].items():
        lines.append(f"- {version} ({faults['states'][version]}): {reason}")
    lines += ["", f"Passed: **{results['passed']}**.", ""]
    return "\n".join(lines)


def _load(value) -> str:
    return "/".join(f"{v:.2f}" for v in value) if value else "?"


def parse_flags(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--output-dir", default=os.path.join("benchmarks", "results"))
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    flags = parse_flags(argv)
    results = run(flags.seconds, flags.output_dir)
    print(markdown(results))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
