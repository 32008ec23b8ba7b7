"""The HTML run report: written for real runs, names the version and metrics."""
import os
import re
import shutil
import subprocess

import pytest

from pipeline.report import write_report

pytestmark = pytest.mark.slow


def test_report_of_first_run_names_pushed_version_and_metrics(pipeline_runs, tmp_path):
    first = pipeline_runs.first
    assert "Report: " in first.stdout
    path = write_report(first.summary, str(tmp_path))
    html = open(path).read()
    assert first.summary.pushed_destination in html
    auc = first.summary.evaluation.metrics["candidate"]["auc"]
    assert f"{auc:.4f}" in html
    assert "<svg" in html and "Per slice" in html
    for node in ("Transform", "Trainer", "Pusher"):
        assert f"<td>{node}</td>" in html
    assert not re.search(r"(src|href)=\"https?://", html), "report must be self-contained"
    # The default time split, with the bundled station's cutoff.
    assert "<h2>Train/eval split</h2><p>by time per station" in html and "seattle train &lt;= 20" in html


def test_report_of_anomalous_run_says_why_nothing_was_pushed(pipeline_runs, tmp_path):
    html = open(write_report(pipeline_runs.anomalous.summary, str(tmp_path))).read()
    assert "Nothing pushed: data anomalies stopped the run" in html
    assert "FLOAT_TYPE_BIG_FLOAT" in html and "<td>wind</td>" in html


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(pipeline_runs, tmp_path):
    path = write_report(pipeline_runs.first.summary, str(tmp_path))
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={screenshot}", "--window-size=1200,1600", f"file://{path}"],
        check=True, timeout=120, capture_output=True)
    assert screenshot.stat().st_size > 10_000


def test_report_of_first_run_shows_the_per_station_gate(pipeline_runs, tmp_path):
    html = open(write_report(pipeline_runs.first.summary, str(tmp_path))).read()
    gates = html[html.index("<h3>Per-station gates"):]
    assert "block (a failing slice refuses the blessing)" in gates
    seattle = next(r for r in gates.split("<tr>") if r.startswith("<td>station seattle</td>"))
    assert '<td class="ok">passed</td>' in seattle
    count = pipeline_runs.first.summary.evaluation.eval_examples
    assert f'<td class="num">{count}</td>' in seattle  # one station: its slice is the whole eval set
