"""The bundled Seattle data through the whole local pipeline (see pipeline_runs)."""
import json
import os
import re

import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from models import features
from tests.pipeline_runs import ANOMALOUS_WIND

pytestmark = pytest.mark.slow

PIPELINE_NODES = (
    "FileBasedExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
    "DriftValidator", "AnomalyGate", "Transform", "Trainer", "BaselineModel", "Evaluator", "Pusher",
    "NaiveBaselines",
)


def _statuses(record):
    return {c.node_id: c.status for c in record.summary.components}


def _raw_request(runs_dir, n=5):
    """Serialized tf.Examples with only the model's raw features, as a client sends."""
    table = pq.read_table(os.path.join(runs_dir, "data", "curated", "span-1"))
    examples = []
    for row in table.slice(0, n).to_pylist():
        feature = {}
        for name, kind in features.MODEL_FEATURES.items():
            if row[name] is None:
                continue
            if kind == features.CATEGORICAL:
                feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[row[name].encode()]))
            else:
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[row[name]]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return examples


def test_first_run_executes_every_component_and_pushes(pipeline_runs):
    first = pipeline_runs.first
    assert first.exit_code == 0, first.stderr[-3000:]
    assert "1461 rows in, 1460 written" in first.stdout
    statuses = _statuses(first)
    assert {n: statuses.get(n) for n in PIPELINE_NODES} == {n: "COMPLETE" for n in PIPELINE_NODES}
    assert first.summary.anomalies == []
    evaluation = first.summary.evaluation
    assert evaluation.blessed and not evaluation.has_baseline
    assert evaluation.metrics["candidate"]["auc"] >= 0.65
    assert evaluation.metrics["candidate"]["example_count"] > 300
    assert "Blessed: yes" in first.stdout and "no baseline" in first.stdout
    assert first.summary.baseline_version is None
    assert first.summary.baseline_source == pipeline_runs.model_dir
    # Issue #12: the runner's own run, drift, eval size and train/eval gap.
    assert f"Run {first.summary.run_id} (pid " in first.stdout
    assert "Drift: span 1 is the first span: nothing to compare with" in first.stdout
    assert f"Eval examples: {evaluation.eval_examples} (minimum 100: enough)" in first.stdout
    assert "Train/eval gap: train AUC " in first.stdout and "gap " in first.stdout


def test_pushed_version_layout_and_metadata(pipeline_runs):
    first = pipeline_runs.first
    versions = [p for p in first.serving_files if os.path.dirname(p) == pipeline_runs.model_dir]
    assert len(versions) == 1 and os.path.basename(versions[0]).isdigit()
    version_dir = versions[0]
    assert first.summary.pushed and first.summary.pushed_destination == version_dir
    assert f"Pushed: {version_dir}" in first.stdout
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.path.isdir(os.path.join(version_dir, "variables"))
    metadata = json.load(open(os.path.join(version_dir, "push_metadata.json")))
    assert metadata["version"] == int(os.path.basename(version_dir))
    assert metadata["pipeline_run_id"] == first.summary.run_id
    assert metadata["data"][0]["span"] == 1
    assert metadata["thresholds"]["auc"]["lower_bound"] == pytest.approx(0.65)
    assert metadata["metrics"]["candidate"]["auc"] == pytest.approx(
        first.summary.evaluation.metrics["candidate"]["auc"])
    config = open(os.path.join(pipeline_runs.runs_dir, "serving", "models.config")).read()
    assert 'name: "rain_tomorrow"' in config and f'base_path: "{pipeline_runs.model_dir}"' in config


def test_pushed_model_serves_raw_examples(pipeline_runs):
    version_dir = pipeline_runs.first.summary.pushed_destination
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    outputs = serve(examples=tf.constant(_raw_request(pipeline_runs.runs_dir)))
    probabilities = outputs["rain_probability"].numpy()
    assert probabilities.shape == (5, 1)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_unchanged_rerun_hits_the_cache_and_pushes_nothing(pipeline_runs):
    rerun = pipeline_runs.rerun
    assert rerun.exit_code == 0, rerun.stderr[-3000:]
    assert "already curated as span 1" in rerun.stdout
    statuses = _statuses(rerun)
    for node in ("FileBasedExampleGen", "StatisticsGen", "ExampleValidator", "DriftValidator",
                 "Transform", "Trainer", "BaselineModel", "Evaluator", "Pusher"):
        assert statuses[node] == "CACHED", statuses
    assert rerun.serving_files == pipeline_runs.first.serving_files
    assert not rerun.summary.pushed
    assert "Not pushed: unchanged model, the pusher's earlier result was reused (cache)" in rerun.stdout


def test_unchanged_run_is_up_to_date_and_reprints_the_last_summary(pipeline_runs):
    """Issue #11: nothing changed since a successful run -> its summary, nothing runs."""
    uptodate, rerun = pipeline_runs.uptodate, pipeline_runs.rerun
    assert uptodate.exit_code == 0, uptodate.stderr[-3000:]
    rerun_id = re.search(r"^Run (\S+) \(pid", rerun.stdout, re.MULTILINE).group(1)
    assert f"Up to date: raw data, code, schema, flags, curated spans and serving versions " \
           f"are unchanged since run {rerun_id}" in uptodate.stdout
    assert _step_lines(uptodate.stdout) == {}  # not even curation started
    assert uptodate.summary is None  # nothing of this run id in ML Metadata
    assert f"Pipeline rain-tomorrow, run {rerun_id}" in uptodate.stdout
    assert "Report: " in uptodate.stdout
    assert uptodate.serving_files == pipeline_runs.first.serving_files


def test_worse_candidate_is_not_blessed_and_not_pushed(pipeline_runs):
    worse = pipeline_runs.worse
    assert worse.exit_code == 0, worse.stderr[-3000:]
    evaluation = worse.summary.evaluation
    assert evaluation.has_baseline and not evaluation.blessed
    assert any("vs the baseline" in f for f in evaluation.failures), evaluation.failures
    assert evaluation.metrics["candidate"]["auc"] < evaluation.metrics["baseline"]["auc"]
    assert worse.summary.pushed is False and "not blessed" in worse.summary.push_reason
    first_version = int(os.path.basename(pipeline_runs.first.summary.pushed_destination))
    assert worse.summary.baseline_version == first_version
    assert (f"Blessed: no (compared with the latest blessed model, served version {first_version}"
            in worse.stdout)
    assert worse.serving_files == pipeline_runs.first.serving_files


def test_anomalous_span_stops_before_transform_and_leaves_serving_untouched(pipeline_runs):
    anomalous = pipeline_runs.anomalous
    assert anomalous.exit_code == 1
    statuses = _statuses(anomalous)
    assert statuses["AnomalyGate"] == "FAILED"
    assert not {"Transform", "Trainer", "Evaluator", "Pusher"} & set(statuses)
    wind = [a for a in anomalous.summary.anomalies
            if a.feature == "wind" and a.anomaly == "FLOAT_TYPE_BIG_FLOAT"]
    assert wind and f"{ANOMALOUS_WIND:g}" in wind[0].description
    # 50 values at 300 m/s also move wind's distribution away from span 1's.
    assert any(a.feature == "wind" and a.anomaly == "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"
               for a in anomalous.summary.anomalies)
    assert "wind" in anomalous.stderr and "FLOAT_TYPE_BIG_FLOAT" in anomalous.stderr
    assert anomalous.summary.drift_note.startswith("span 2 compared with span 1")
    assert anomalous.serving_files == pipeline_runs.first.serving_files


def _step_lines(stdout):
    """{step: status} from the runner's per-step end lines."""
    import re

    steps = {}
    for line in stdout.splitlines():
        match = re.match(r"^  (\S+)\s+(COMPLETE|CACHED|RESOLVED|FAILED)\s+[0-9.]+ s$", line)
        if match:
            steps[match.group(1)] = match.group(2)
    return steps


def test_console_is_one_line_per_step_and_library_output_is_in_the_log(pipeline_runs):
    """Issue #11: the default console is the runner's lines; the rest is in the run's log."""
    first, rerun = pipeline_runs.first, pipeline_runs.rerun
    assert _step_lines(first.stdout) == {"SparkCuration": "COMPLETE",
                                         **{n: "COMPLETE" for n in PIPELINE_NODES}}
    assert _step_lines(rerun.stdout) == {"SparkCuration": "CACHED",
                                         **{n: "CACHED" for n in PIPELINE_NODES}}
    for record in (first, rerun):
        console = record.stdout + record.stderr
        for noise in ("WARNING:absl", "tensorflow/core", "[Stage ", "ETA:", "Epoch 1/1",
                      "WARN Utils", "loss:"):
            assert noise not in console, noise
        # What stays on a terminal (start/"still running" lines are rewritten
        # in place there; on this pipe they depend on the machine's load).
        screen = [l for l in console.splitlines()
                  if not re.match(r"^  \S+\s+(started|still running)", l)]
        assert len(screen) <= 50, console
    (log_line,) = [l for l in first.stdout.splitlines() if l.startswith("Log: ")]
    log_path = log_line.split()[1]
    assert log_path.startswith(os.path.join(pipeline_runs.pipeline_root, "logs") + os.sep)
    log = open(log_path, errors="replace").read()
    # Keras' one line for the epoch (sys.stdout during the run). TFX's
    # "WARNING:absl:" lines come from a root handler logging.basicConfig adds
    # in a plain process; under pytest its log capture takes them instead, so
    # they are checked in tests/test_devloop_console.py, not here.
    assert re.search(r"^\d+/\d+ - .*loss: .* - val_auc: ", log, re.MULTILINE), log[-2000:]


def test_anomalous_run_says_which_step_failed(pipeline_runs):
    anomalous = pipeline_runs.anomalous
    steps = _step_lines(anomalous.stdout)
    assert steps["AnomalyGate"] == "FAILED"
    assert "Transform" not in steps
    assert "Pipeline stopped: " in anomalous.stderr and "Traceback" not in anomalous.stderr


def test_default_run_shows_the_naive_baselines_beside_the_candidate(pipeline_runs):
    """Issue #14: persistence, climatology and linear beside the candidate, everywhere."""
    first = pipeline_runs.first
    baselines = first.summary.naive_baselines
    assert baselines["eval_examples"] == first.summary.evaluation.eval_examples
    aucs = {name: baselines["baselines"][name]["auc"] for name in ("persistence", "climatology", "linear")}
    assert all(0.5 < auc < 1 for auc in aucs.values()), aucs
    candidate = first.summary.evaluation.metrics["candidate"]["auc"]
    assert (f"Naive baselines ({baselines['eval_examples']} eval examples): Candidate AUC "
            f"{candidate:.4f} | persistence {aucs['persistence']:.4f} | "
            f"climatology {aucs['climatology']:.4f} | linear {aucs['linear']:.4f}") in first.stdout
    # The default margin is 0: the pushed candidate beat persistence, and says so.
    assert candidate >= aucs["persistence"]
    assert (f"Margin over persistence: passed: candidate AUC {candidate:.4f} >= persistence AUC "
            f"{aucs['persistence']:.4f} + margin 0 = ") in first.stdout
    metadata = json.load(open(os.path.join(first.summary.pushed_destination, "push_metadata.json")))
    assert metadata["naive_baselines"]["baselines"] == baselines["baselines"]
    assert metadata["naive_baselines"]["margin_over_persistence"]["status"] == "passed"
