"""Per-station gates through the whole local pipeline (issue #12, item 4; slow).

Reproduces the issue's failure: several stations in one run, the overall AUC
clears the 0.65 floor but one station's slice does not. Three stations in one
CSV (with a `station` column):

* `seattle`: the bundled Seattle days 2012-2015, a learnable station;
* `noisy`: one year of the same days with precipitation shuffled across days
  (seeded), so tomorrow's rain is unrelated to today: its slice AUC is near 0.5;
* `tiny`: sixty Seattle days, too few eval examples to be gated.

Before the gates the model was pushed; now the run is not blessed, nothing is
pushed, and the summary and the HTML report name the station, its AUC, its
eval example count and the floor. The same runs directory re-run with
`--slice-gates warn` (Trainer cached, Evaluator re-run with the new config)
blesses and pushes the same model, naming the station as a warning: the gate,
nothing else, is what stopped the first push.
"""
import os
import random
import re

import pandas as pd
import pytest

from components import evaluation_results
from tests.pipeline_runs import run_once

pytestmark = pytest.mark.slow

NOISY_DAYS = 366
TINY_DAYS = 60


def three_stations_csv(path: str) -> str:
    from vega_datasets import local_data

    seattle = pd.read_csv(local_data.seattle_weather.filepath)
    noisy = seattle.iloc[:NOISY_DAYS].copy()
    precipitation = noisy["precipitation"].tolist()
    random.Random(12).shuffle(precipitation)
    noisy["precipitation"] = precipitation
    tiny = seattle.iloc[-TINY_DAYS:].copy()
    frames = []
    for station, frame in (("seattle", seattle), ("noisy", noisy), ("tiny", tiny)):
        frame = frame.copy()
        frame.insert(0, "station", station)
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("slice-gates-e2e")
    csv = three_stations_csv(str(work / "three_stations.csv"))
    runs_dir = str(work / "runs")
    block = run_once(runs_dir, "--raw-data", csv, "--seed", "1")
    warn = run_once(runs_dir, "--raw-data", csv, "--seed", "1", "--slice-gates", "warn")
    return runs_dir, block, warn


def _versions(runs_dir: str, record) -> list:
    """Version directories in the serving directory right after `record`'s run."""
    model_dir = os.path.join(runs_dir, "serving", "rain_tomorrow")
    return sorted({os.path.relpath(p, model_dir).split(os.sep)[0] for p in record.serving_files
                   if p.startswith(model_dir + os.sep)
                   and os.path.relpath(p, model_dir).split(os.sep)[0].isdigit()})


def _gate(summary, station):
    return next(g for g in summary.evaluation.slice_gates.slices if g.value == station)


def _report_html(record) -> str:
    path = re.search(r"^Report: (\S+)$", record.stdout, re.MULTILINE).group(1)
    with open(path) as f:
        return f.read()


def test_a_station_below_the_floor_stops_the_push_though_overall_passes(runs):
    runs_dir, block, _ = runs
    assert block.exit_code == 0, block.stderr
    evaluation = block.summary.evaluation
    # The situation: the overall AUC clears the floor...
    assert evaluation.metrics["candidate"]["auc"] >= 0.65
    assert evaluation.slice_gates.mode == "block"
    seattle, noisy, tiny = (_gate(block.summary, s) for s in ("seattle", "noisy", "tiny"))
    assert seattle.status == evaluation_results.PASSED and seattle.auc >= 0.65
    # ...one station's slice does not, with enough eval examples to gate it.
    assert noisy.status == evaluation_results.FAILED and noisy.auc < 0.65 and noisy.examples >= 50
    assert tiny.status == evaluation_results.TOO_SMALL and tiny.examples < 50
    # Not blessed by the Evaluator itself, so the pusher pushes nothing.
    assert not evaluation.blessed
    assert block.summary.pushed is False
    assert block.summary.push_reason == "model not blessed by the Evaluator"
    assert _versions(runs_dir, block) == []


def test_the_summary_and_report_name_the_station_auc_count_and_floor(runs):
    _, block, _ = runs
    noisy = _gate(block.summary, "noisy")
    refused = (f"blessing refused: station noisy AUC {noisy.auc:.3f} < 0.65 "
               f"({noisy.examples} eval examples)")
    assert block.summary.evaluation.failures == [refused]
    # Printed by the runner.
    assert "Blessed: no" in block.stdout and f"  - {refused}" in block.stdout
    assert "Per-station gates: block" in block.stdout
    tiny_line = next(l for l in block.stdout.splitlines() if l.strip().startswith("tiny"))
    assert "too small to gate (< 50 eval examples)" in tiny_line
    html = _report_html(block)
    verdict = html[html.index('class="verdict bad"'):html.index("<h2>Components")]
    assert refused.replace("<", "&lt;") in verdict
    assert "<td>station noisy</td>" in html and "<td>station tiny</td>" in html


def test_warn_blesses_and_pushes_the_same_model_naming_the_station(runs):
    runs_dir, block, warn = runs
    assert warn.exit_code == 0, warn.stderr
    # The same model (Trainer cached), evaluated again under the warn config.
    assert warn.summary.status_of("Trainer") == "CACHED"
    assert warn.summary.status_of("Evaluator") == "COMPLETE"
    evaluation = warn.summary.evaluation
    assert evaluation.slice_gates.mode == "warn" and evaluation.blessed
    noisy = _gate(warn.summary, "noisy")
    assert noisy.auc == pytest.approx(_gate(block.summary, "noisy").auc)
    assert evaluation.warnings == [
        f"station noisy AUC {noisy.auc:.3f} < 0.65 ({noisy.examples} eval examples)"]
    assert f"report only: {evaluation.warnings[0]}" in warn.stdout
    assert warn.summary.pushed is True and len(_versions(runs_dir, warn)) == 1
