"""Honest metrics (issue #12, item 4).

A real (tiny) SavedModel with the Trainer's signatures is evaluated by TFMA
with the pipeline's own eval config, on eval sets of one class, of 43
examples and of 300 mixed examples; the summary is read back exactly as the
runner and the pusher read it. Those three share one tiny model and take
about two minutes together (marked slow).
"""
import os

import pytest

from components import evaluation_results
from pipeline.config import BlessingThresholds
from pipeline.eval_config import create_eval_config
from pipeline.run_summary import RunSummary, format_run_summary

LABEL = "rain_tomorrow"


@pytest.fixture(scope="module")
def evaluate(tmp_path_factory):
    """evaluate(rows, thresholds) -> EvaluationSummary of a real TFMA run."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    from serving import features as serving_features
    from serving import tiny_model
    from serving.backend import serialize_row

    work = tmp_path_factory.mktemp("honest-metrics")
    model = tiny_model.build(str(work / "model"), train_steps=(30,), rows=300)[0]
    rows = serving_features.curated_rows(
        tiny_model.SEATTLE_STATION, tiny_model.seattle_observations(700))[300:]
    from tensorflow_metadata.proto.v0 import schema_pb2

    import tensorflow_data_validation as tfdv

    schema = tfdv.load_schema_text(tiny_model.DEFAULT_SCHEMA_PATH)
    kinds = {f.name: {schema_pb2.FLOAT: "float", schema_pb2.BYTES: "bytes"}.get(f.type, "int")
             for f in schema.feature}  # with the label, as the curated examples

    def run(selected, thresholds, name):
        data = str(work / f"{name}.tfrecord")
        with tf.io.TFRecordWriter(data) as writer:
            for row in selected:
                writer.write(serialize_row(row, kinds))
        config = create_eval_config(thresholds)
        output = str(work / name)
        tfma.run_model_analysis(
            eval_shared_model=tfma.default_eval_shared_model(
                eval_saved_model_path=model.export_dir, eval_config=config,
                rubber_stamp=True),  # as TFX's Evaluator on a first run (no baseline)
            eval_config=config, data_location=data, output_path=output)
        return evaluation_results.summarize(output)

    run.rows = rows
    return run


@pytest.mark.slow
def test_one_class_eval_set_reports_auc_undefined_and_is_not_blessed(evaluate):
    dry = [r for r in evaluate.rows if r[LABEL] == 0][:150]
    assert len(dry) == 150
    summary = evaluate(dry, BlessingThresholds(min_auc=0.01, min_eval_examples=100), "dry")
    assert not summary.blessed
    assert summary.undefined["auc"] == "the eval set has no positive examples"
    assert "auc" not in summary.metrics[evaluation_results.CANDIDATE]
    assert any("one class only" in f and "AUC is undefined" in f for f in summary.failures)
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary))
    auc_line = next(line for line in text.splitlines() if line.strip().startswith("auc"))
    assert "undefined" in auc_line and "0.0000" not in auc_line
    assert "Blessed: no" in text and "Train/eval gap: no training AUC recorded" in text
    assert "threshold strictly between 0 and 1 (both classes present)" in text


@pytest.mark.slow
def test_too_few_eval_examples_is_not_blessed_with_the_reason(evaluate):
    mixed = evaluate.rows[:43]
    assert {r[LABEL] for r in mixed} == {0, 1}
    summary = evaluate(mixed, BlessingThresholds(min_auc=0.01, min_eval_examples=100), "few")
    assert not summary.blessed
    assert summary.eval_examples == 43
    assert "only 43 eval examples, fewer than the minimum 100 a blessing may rest on" in summary.failures
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary))
    assert "Eval examples: 43 (minimum 100: too few to bless)" in text


@pytest.mark.slow
def test_enough_examples_of_both_classes_can_be_blessed(evaluate):
    mixed = evaluate.rows[:300]
    summary = evaluate(mixed, BlessingThresholds(min_auc=0.01, min_eval_examples=100), "enough")
    assert summary.blessed, summary.failures
    assert summary.undefined == {} and summary.eval_examples == 300
    auc = summary.metrics[evaluation_results.CANDIDATE]["auc"]
    assert 0.0 < auc <= 1.0
    train = {"auc": 0.9}
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary, train_metrics=train))
    assert f"vs eval AUC {auc:.4f}: gap {0.9 - auc:+.4f}" in text
    assert "Eval examples: 300 (minimum 100: enough)" in text


def test_undefined_metrics_from_the_mean_label():
    assert evaluation_results.undefined_metrics({"auc": 0.0, "mean_label": 0.0, "recall": 0.0}) == {
        "auc": "the eval set has no positive examples",
        "recall": "the eval set has no positive examples"}
    assert evaluation_results.undefined_metrics({"auc": 0.5, "mean_label": 1.0}) == {
        "auc": "the eval set has no negative examples"}
    assert evaluation_results.undefined_metrics({"auc": 0.7, "mean_label": 0.3}) == {}


def test_keras_train_metrics_are_read_from_the_trainers_logs(tmp_path):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    with writer.as_default():
        tf.summary.scalar("epoch_auc", 0.75, step=0)
        tf.summary.scalar("epoch_loss", 0.5, step=0)
    writer.close()
    metrics = evaluation_results.keras_train_metrics(str(tmp_path))
    assert metrics == pytest.approx({"auc": 0.75, "loss": 0.5})


def test_summary_prints_undefined_and_the_mean_label_rule_without_tfma():
    summary = evaluation_results.EvaluationSummary(
        metrics={"candidate": {"example_count": 150.0, "mean_label": 0.0}},
        thresholds={"auc": {"lower_bound": 0.65}, "example_count": {"lower_bound": 100.0},
                    "mean_label": {"lower_bound": 1e-9, "upper_bound": 1 - 1e-9}},
        blessed=False, failures=["the eval set has one class only"], has_baseline=False,
        undefined={"auc": "the eval set has no positive examples"}, eval_examples=150)
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary,
                                         train_metrics={"auc": 0.99}))
    assert "auc" in text and "undefined   (the eval set has no positive examples)" in text
    assert "0.0000" not in next(l for l in text.splitlines() if l.strip().startswith("auc"))
    assert "threshold strictly between 0 and 1 (both classes present)" in text
    assert "Train/eval gap: train AUC 0.9900, eval AUC undefined" in text
    assert "Eval examples: 150 (minimum 100: enough)" in text


def test_a_one_class_station_slice_prints_undefined_and_refuses_like_the_overall_slice():
    gate = evaluation_results.SliceGateResult(
        "station", "desert", 80, None, evaluation_results.UNDEFINED,
        "station desert AUC undefined: its 80 eval examples are of one class "
        "(no positive examples), so it cannot pass the floor 0.65")
    gates = evaluation_results.SliceGates("block", 0.65, 50.0, [gate])
    summary = evaluation_results.EvaluationSummary(
        metrics={"candidate": {"auc": 0.8, "example_count": 600.0, "mean_label": 0.3}},
        thresholds={"auc": {"lower_bound": 0.65}}, blessed=False,
        failures=[evaluation_results.REFUSED + gate.message], has_baseline=False,
        eval_examples=600, slice_gates=gates)
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary))
    line = next(l for l in text.splitlines() if l.strip().startswith("desert"))
    assert "undefined" in line and "0.0000" not in line and "FAILED: one class only" in line
    assert "  - blessing refused: station desert AUC undefined" in text
