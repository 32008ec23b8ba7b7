"""Per-station gates (issue #12, item 4): a station slice below its AUC floor
refuses the blessing, and the summary and the report name it.

The fast tests here run the real TFX Evaluator executor (our
BaselineAwareEvaluator's, TFMA inside) and the real VersionedPusher executor
on an "oracle" SavedModel: it has the Trainer's `serving_default` signature
and returns each example's `score` feature as `rain_probability`, so each
station's AUC is chosen by the test (good stations: scores that follow the
label; the noisy station: random scores) without training anything. The
whole pipeline with a trained model is in tests/test_slice_gates_e2e.py.
"""
import json
import os
import random
from html import escape

import pytest
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import evaluation_results
from components.serving_baseline import executor as baseline_executor
from components.versioned_pusher import executor as pusher_executor
from pipeline.config import BlessingThresholds
from pipeline.eval_config import GATED_SLICE_KEYS, REPORT_ONLY_MARKER, create_eval_config
from pipeline.report import render_report
from pipeline.run_summary import ComponentRun, RunSummary, format_run_summary

LABEL = "rain_tomorrow"


# --- the eval config: thresholds per slice in the EvalConfig proto ------------


def _per_slice(config, class_name, feature_keys):
    """The value thresholds of `class_name` whose slicing spec has `feature_keys`."""
    found = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name != class_name or metric.config:
                continue
            for per_slice in metric.per_slice_thresholds:
                if any(list(s.feature_keys) == list(feature_keys) for s in per_slice.slicing_specs):
                    found.append(per_slice.threshold)
    return found


def _marker_present(config) -> bool:
    return any(REPORT_ONLY_MARKER in m.config for s in config.metrics_specs for m in s.metrics)


def test_station_slices_get_their_own_auc_one_class_and_size_thresholds():
    config = create_eval_config(BlessingThresholds(min_auc=0.7, min_slice_auc=0.6, min_slice_size=40))
    assert GATED_SLICE_KEYS == ("station",)
    (auc,) = _per_slice(config, "AUC", ["station"])
    assert auc.value_threshold.lower_bound.value == pytest.approx(0.6)
    assert not auc.HasField("change_threshold")  # stations: a floor, no comparison with the baseline
    (count,) = _per_slice(config, "ExampleCount", ["station"])
    assert count.value_threshold.lower_bound.value == 40
    (mean_label,) = _per_slice(config, "MeanLabel", ["station"])
    assert 0 < mean_label.value_threshold.lower_bound.value < 1e-6
    assert 1 - 1e-6 < mean_label.value_threshold.upper_bound.value < 1
    # The overall slice keeps its own floor, minimum size and change threshold.
    (overall_auc,) = _per_slice(config, "AUC", [])
    assert overall_auc.value_threshold.lower_bound.value == pytest.approx(0.7)
    assert overall_auc.HasField("change_threshold")
    (overall_count,) = _per_slice(config, "ExampleCount", [])
    assert overall_count.value_threshold.lower_bound.value == 100
    # Months are reported, never gated.
    assert not _per_slice(config, "AUC", ["month"])
    assert not _marker_present(config)


def test_the_station_floor_defaults_to_the_overall_floor():
    config = create_eval_config(BlessingThresholds(min_auc=0.72))
    (auc,) = _per_slice(config, "AUC", ["station"])
    assert auc.value_threshold.lower_bound.value == pytest.approx(0.72)
    (count,) = _per_slice(config, "ExampleCount", ["station"])
    assert count.value_threshold.lower_bound.value == 50


def test_warn_keeps_the_thresholds_and_adds_the_report_only_marker():
    block = create_eval_config(BlessingThresholds(slice_gates="block"))
    warn = create_eval_config(BlessingThresholds(slice_gates="warn"))
    for class_name in ("AUC", "ExampleCount", "MeanLabel"):
        assert _per_slice(warn, class_name, ["station"]) == _per_slice(block, class_name, ["station"])
    assert _marker_present(warn)


def test_off_has_no_station_thresholds():
    config = create_eval_config(BlessingThresholds(slice_gates="off"))
    for class_name in ("AUC", "ExampleCount", "MeanLabel"):
        assert not _per_slice(config, class_name, ["station"])
    assert _per_slice(config, "AUC", [])  # the overall gate stays
    assert not _marker_present(config)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="slice_gates 'maybe'"):
        BlessingThresholds(slice_gates="maybe")


# --- flags: checked types, shared by both runners ------------------------------


@pytest.mark.parametrize("argv,message", [
    (["--slice-gates", "maybe"], "argument --slice-gates: invalid choice: 'maybe'"),
    (["--min-slice-auc", "1.5"], "argument --min-slice-auc: 1.5: an AUC lies in [0, 1]"),
    (["--min-slice-auc", "0"], "argument --min-slice-auc: 0: an AUC lies in [0, 1]"),
    (["--min-slice-auc", "abc"], "argument --min-slice-auc: 'abc' is not a number"),
    (["--min-slice-size", "0"], "argument --min-slice-size: 0: must be > 0"),
    (["--min-slice-size", "2.5"], "argument --min-slice-size: '2.5' is not an integer"),
])
def test_bad_slice_flags_are_usage_errors_before_any_work(argv, message, tmp_path, capsys):
    import local_runner

    runs = tmp_path / "runs"
    assert local_runner.main(["--runs-dir", str(runs), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not runs.exists()  # nothing started: no lock, no curation


def test_slice_flags_reach_the_pipeline_config_of_both_runners(tmp_path):
    import kubeflow_runner
    import local_runner
    from pipeline.runner_settings import pipeline_config_from_flags

    argv = ["--slice-gates", "warn", "--min-slice-auc", "0.6", "--min-slice-size", "30"]
    flags = local_runner.parse_flags(["--runs-dir", str(tmp_path), *argv])
    local = pipeline_config_from_flags(flags, pipeline_root="p", curated_root="c",
                                       schema_path="s", serving_base="b").thresholds
    kubeflow = kubeflow_runner.settings_from_flags(kubeflow_runner.parse_flags(
        ["--image", "example.com/rain:1", "--pipeline-root", "minio://mlpipeline/v2/artifacts",
         "--output", str(tmp_path / "p.yaml"), *argv])).pipeline.thresholds
    for thresholds in (local, kubeflow):
        assert (thresholds.slice_gates, thresholds.min_slice_auc, thresholds.min_slice_size) == ("warn", 0.6, 30)
    defaults = pipeline_config_from_flags(
        local_runner.parse_flags(["--runs-dir", str(tmp_path), "--min-auc", "0.7"]),
        pipeline_root="p", curated_root="c", schema_path="s", serving_base="b").thresholds
    assert (defaults.slice_gates, defaults.min_slice_size, defaults.slice_auc_floor) == ("block", 50, 0.7)


def test_the_compiled_kubeflow_pipeline_carries_the_station_thresholds(tmp_path):
    import tensorflow_model_analysis as tfma
    import yaml

    import kubeflow_runner

    output = tmp_path / "pipeline.yaml"
    assert kubeflow_runner.main(["--image", "example.com/rain:1", "--output", str(output),
                                 "--pipeline-root", "minio://mlpipeline/v2/artifacts",
                                 "--min-slice-auc", "0.61", "--min-slice-size", "33",
                                 "--slice-gates", "warn"]) == 0
    spec = next(yaml.safe_load_all(output.read_text()))
    parameters = spec["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["parameters"]
    compiled = proto_utils.json_to_proto(
        parameters["eval_config"]["runtimeValue"]["constant"], tfma.EvalConfig())
    (auc,) = _per_slice(compiled, "AUC", ["station"])
    assert auc.value_threshold.lower_bound.value == pytest.approx(0.61)
    (count,) = _per_slice(compiled, "ExampleCount", ["station"])
    assert count.value_threshold.lower_bound.value == 33
    assert _marker_present(compiled)
    assert compiled == create_eval_config(
        BlessingThresholds(min_slice_auc=0.61, min_slice_size=33, slice_gates="warn"))


# --- the Evaluator and the Pusher on an oracle model ---------------------------


def _oracle_model(model_dir: str) -> None:
    """A SavedModel whose rain_probability is each example's `score` feature."""
    import tensorflow as tf

    class Oracle(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(examples, {"score": tf.io.FixedLenFeature([1], tf.float32)})
            return {"rain_probability": parsed["score"]}

    oracle = Oracle()
    tf.saved_model.save(oracle, model_dir, signatures={"serving_default": oracle.serve})


def _example(station: str, label: int, score: float, month: int) -> bytes:
    import tensorflow as tf

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        if isinstance(value, float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        "station": feature(station.encode()), "month": feature(month),
        LABEL: feature(label), "score": feature(float(score))})).SerializeToString()


def station_rows(station: str, count: int, kind: str, seed: int):
    """(station, label, score) rows: kind 'good' (score follows the label),
    'noise' (random score), 'dry' (no rain at all)."""
    rnd = random.Random(seed)
    rows = []
    for _ in range(count):
        label = 0 if kind == "dry" else int(rnd.random() < 0.4)
        if kind == "good":
            score = min(1.0, max(0.0, 0.5 + (0.25 if label else -0.25) + rnd.gauss(0, 0.2)))
        else:
            score = rnd.random() * (0.3 if kind == "dry" else 1.0)
        rows.append((station, label, score))
    return rows


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    work = tmp_path_factory.mktemp("oracle")
    model = standard_artifacts.Model()
    model.uri = str(work / "model")
    _oracle_model(os.path.join(model.uri, "Format-Serving"))
    model.id = 1
    return model


def evaluate(work, model, rows, thresholds: BlessingThresholds):
    """Runs BaselineAwareEvaluator's executor; returns (blessing, evaluation uri)."""
    import tensorflow as tf

    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(work, "examples")
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    os.makedirs(os.path.join(examples.uri, "Split-eval"))
    with tf.io.TFRecordWriter(os.path.join(examples.uri, "Split-eval", "data.tfrecord")) as writer:
        for i, (station, label, score) in enumerate(rows):
            writer.write(_example(station, label, score, 1 + i % 12))
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(work, "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(work, "blessing")
    for uri in (evaluation.uri, blessing.uri):
        os.makedirs(uri)
    baseline_executor.EvaluatorExecutor().Do(
        {standard_component_specs.EXAMPLES_KEY: [examples],
         standard_component_specs.MODEL_KEY: [model]},
        {standard_component_specs.EVALUATION_KEY: [evaluation],
         standard_component_specs.BLESSING_KEY: [blessing]},
        {standard_component_specs.EVAL_CONFIG_KEY:
             proto_utils.proto_to_json(create_eval_config(thresholds)),
         standard_component_specs.EXAMPLE_SPLITS_KEY: json.dumps(["eval"])})
    return blessing, evaluation


def push(work, model, blessing, evaluation):
    """Runs the VersionedPusher's executor; returns (pushed?, reason, versions on disk)."""
    pushed = standard_artifacts.PushedModel()
    pushed.uri = os.path.join(work, "pushed")
    serving = os.path.join(work, "serving")
    pusher_executor.Executor().Do(
        {pusher_executor.MODEL_KEY: [model], pusher_executor.MODEL_BLESSING_KEY: [blessing],
         pusher_executor.EVALUATION_KEY: [evaluation]},
        {pusher_executor.PUSHED_MODEL_KEY: [pushed]},
        {pusher_executor.SERVING_BASE_KEY: serving, pusher_executor.MODEL_NAME_KEY: "rain_tomorrow",
         pusher_executor.KEEP_VERSIONS_KEY: 0})
    model_dir = os.path.join(serving, "rain_tomorrow")
    versions = sorted(v for v in os.listdir(model_dir) if v.isdigit()) if os.path.isdir(model_dir) else []
    return (bool(pushed.get_int_custom_property(pusher_executor.PUSHED)),
            pushed.get_string_custom_property(pusher_executor.PUSH_REASON), versions)


def _blessing_files(blessing):
    return sorted(os.listdir(blessing.uri))


# Three stations as in the issue: two good ones and one whose scores are noise.
# Overall AUC passes 0.65 comfortably; the noisy station's slice does not.
THREE_STATIONS = (station_rows("alpha", 300, "good", 1) + station_rows("beta", 300, "good", 2)
                  + station_rows("noisy", 200, "noise", 3))


@pytest.fixture(scope="module")
def blocked(oracle, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("blocked"))
    blessing, evaluation = evaluate(work, oracle, THREE_STATIONS, BlessingThresholds())
    return work, blessing, evaluation, evaluation_results.summarize(evaluation.uri)


def test_a_failing_station_refuses_the_blessing_and_nothing_is_pushed(oracle, blocked):
    work, blessing, evaluation, summary = blocked
    overall_auc = summary.metrics["candidate"]["auc"]
    assert overall_auc >= 0.65  # overall passes...
    gates = {g.value: g for g in summary.slice_gates.slices}
    noisy = gates["noisy"]
    assert noisy.status == evaluation_results.FAILED and noisy.auc < 0.65 and noisy.examples == 200
    assert gates["alpha"].status == gates["beta"].status == evaluation_results.PASSED
    # ...yet the Evaluator's own blessing is refused, and the pusher does not push.
    assert blessing.get_int_custom_property("blessed") == 0
    assert _blessing_files(blessing) == ["NOT_BLESSED"]
    assert not summary.blessed
    expected = f"blessing refused: station noisy AUC {noisy.auc:.3f} < 0.65 (200 eval examples)"
    assert summary.failures == [expected]
    pushed, reason, versions = push(work, oracle, blessing, evaluation)
    assert (pushed, reason, versions) == (False, "model not blessed by the Evaluator", [])


def test_the_summary_and_the_report_name_the_failing_station(blocked):
    _, _, evaluation, summary = blocked
    noisy = next(g for g in summary.slice_gates.slices if g.value == "noisy")
    run = RunSummary("rain-tomorrow", "run-1", [ComponentRun("Evaluator", "COMPLETE", 1.0)],
                     evaluation=summary, evaluation_uri=evaluation.uri, pushed=False,
                     push_reason="model not blessed by the Evaluator")
    text = format_run_summary(run)
    refused = f"blessing refused: station noisy AUC {noisy.auc:.3f} < 0.65 (200 eval examples)"
    assert "Blessed: no" in text and f"  - {refused}" in text
    assert "Per-station gates: block" in text
    noisy_line = next(line for line in text.splitlines() if line.strip().startswith("noisy"))
    assert "200" in noisy_line and f"{noisy.auc:.4f}" in noisy_line and "FAILED" in noisy_line
    assert "passed" in next(line for line in text.splitlines() if line.strip().startswith("alpha"))
    html = render_report(run, evaluation_results.sliced_metrics(evaluation.uri))
    assert "Per-station gates" in html
    # In the verdict at the top, and in the gates table with the station's row.
    verdict = html[html.index('class="verdict bad"'):html.index("<h2>Components")]
    assert "Nothing pushed: model not blessed by the Evaluator" in verdict
    assert escape(refused) in verdict
    table = html[html.index("<h3>Per-station gates"):]
    noisy_row = next(r for r in table.split("<tr>") if r.startswith("<td>station noisy</td>"))
    assert f'<td class="num">200</td><td class="num">{noisy.auc:.4f}</td>' in noisy_row
    assert 'class="bad">FAILED (&lt; 0.65)' in noisy_row


def test_warn_reports_the_station_but_blesses_and_pushes(oracle, tmp_path):
    blessing, evaluation = evaluate(str(tmp_path), oracle, THREE_STATIONS,
                                    BlessingThresholds(slice_gates="warn"))
    summary = evaluation_results.summarize(evaluation.uri)
    # TFMA still fails the station threshold; the gate only reports it.
    assert not evaluation_results.tfma.load_validation_result(evaluation.uri).validation_ok
    assert summary.blessed and summary.failures == []
    assert blessing.get_int_custom_property("blessed") == 1 and _blessing_files(blessing) == ["BLESSED"]
    (warning,) = summary.warnings
    assert warning.startswith("station noisy AUC ") and "< 0.65 (200 eval examples)" in warning
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary))
    assert "Blessed: yes" in text and "Per-station gates: warn" in text
    assert f"report only: {warning}" in text
    assert "slice_gates_report_only" not in text  # the marker is no metric
    pushed, reason, versions = push(str(tmp_path), oracle, blessing, evaluation)
    assert pushed and reason == "blessed" and len(versions) == 1


def test_off_blesses_without_looking_at_stations(oracle, tmp_path):
    blessing, evaluation = evaluate(str(tmp_path), oracle, THREE_STATIONS,
                                    BlessingThresholds(slice_gates="off"))
    summary = evaluation_results.summarize(evaluation.uri)
    assert summary.blessed and blessing.get_int_custom_property("blessed") == 1
    assert summary.slice_gates.mode == "off" and summary.slice_gates.slices == []
    assert "Per-station gates: off" in format_run_summary(RunSummary("p", "r", [], evaluation=summary))


def test_a_lower_station_floor_lets_the_noisy_station_pass(oracle, tmp_path):
    noisy_auc = next(g.auc for g in evaluation_results.summarize(
        evaluate(str(tmp_path / "a"), oracle, THREE_STATIONS, BlessingThresholds())[1].uri
    ).slice_gates.slices if g.value == "noisy")
    floor = round(noisy_auc - 0.05, 2)
    blessing, evaluation = evaluate(str(tmp_path / "b"), oracle, THREE_STATIONS,
                                    BlessingThresholds(min_slice_auc=floor))
    summary = evaluation_results.summarize(evaluation.uri)
    assert summary.blessed, summary.failures
    assert blessing.get_int_custom_property("blessed") == 1
    assert summary.thresholds["auc"]["lower_bound"] == 0.65  # the overall floor is unchanged
    assert summary.slice_gates.min_auc == floor


def test_a_small_failing_station_is_reported_as_too_small_not_gated(oracle, tmp_path):
    rows = (station_rows("alpha", 300, "good", 1) + station_rows("beta", 300, "good", 2)
            + station_rows("tiny", 30, "noise", 4))
    blessing, evaluation = evaluate(str(tmp_path), oracle, rows, BlessingThresholds())
    summary = evaluation_results.summarize(evaluation.uri)
    tiny = next(g for g in summary.slice_gates.slices if g.value == "tiny")
    assert tiny.status == evaluation_results.TOO_SMALL and tiny.examples == 30
    # TFMA refused (the tiny slice's size threshold failed); the gate waives it.
    assert not evaluation_results.tfma.load_validation_result(evaluation.uri).validation_ok
    assert summary.blessed, summary.failures
    assert blessing.get_int_custom_property("blessed") == 1 and _blessing_files(blessing) == ["BLESSED"]
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary))
    tiny_line = next(line for line in text.splitlines() if line.strip().startswith("tiny"))
    assert "30" in tiny_line and "too small to gate (< 50 eval examples)" in tiny_line


def test_a_one_class_station_is_undefined_and_never_blessed_by_that_slice(oracle, tmp_path):
    rows = (station_rows("alpha", 300, "good", 1) + station_rows("beta", 300, "good", 2)
            + station_rows("desert", 80, "dry", 5))
    blessing, evaluation = evaluate(str(tmp_path), oracle, rows, BlessingThresholds())
    summary = evaluation_results.summarize(evaluation.uri)
    desert = next(g for g in summary.slice_gates.slices if g.value == "desert")
    assert desert.status == evaluation_results.UNDEFINED and desert.auc is None
    assert not summary.blessed and blessing.get_int_custom_property("blessed") == 0
    assert summary.failures == [
        "blessing refused: station desert AUC undefined: its 80 eval examples are of one class "
        "(no positive examples), so it cannot pass the floor 0.65"]
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary))
    desert_line = next(line for line in text.splitlines() if line.strip().startswith("desert"))
    assert "undefined" in desert_line and "0.0000" not in desert_line
