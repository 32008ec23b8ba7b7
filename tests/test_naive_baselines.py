"""Naive baselines (issue #14): persistence, climatology and a linear model
beside every candidate, and the blessing's margin over persistence.

- the baseline math on small hand-made frames (AUCs worked out by hand,
  one class -> null with a note, climatology's fallbacks, the linear model);
- the NaiveBaselines executor on TFRecords written here (gzip and plain), and
  its errors;
- the gate in the real Evaluator executor (BaselineAwareEvaluator's, TFMA
  inside) on the "oracle" SavedModel of tests/test_slice_gates.py: refused
  with its reason below persistence + margin, blessed above it, "not
  applied" (said, not silent) when persistence's AUC is undefined, "off";
- the run summary, the HTML report and push_metadata.json carry the baselines;
- the flag, in both runners and in the compiled Kubeflow pipeline.

The default local run's summary is checked in tests/test_local_pipeline_e2e.py.
"""
import json
import os
import shutil
from html import escape

import numpy as np
import pandas as pd
import pytest
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import evaluation_results
from components.naive_baselines import artifacts as naive_artifacts
from components.naive_baselines import baselines as naive
from components.naive_baselines import examples_io
from components.naive_baselines import executor as naive_executor
from components.naive_baselines import gate as naive_gate
from components.serving_baseline import executor as baseline_executor
from components.versioned_pusher import executor as pusher_executor
from pipeline.config import BlessingThresholds
from pipeline.eval_config import create_eval_config
from pipeline.report import render_report
from pipeline.run_summary import ComponentRun, RunSummary, format_run_summary
from tests.test_slice_gates import _example, _oracle_model, station_rows

LABEL = "rain_tomorrow"


def frame(rows, columns=("station", "month", "precipitation", LABEL)):
    return pd.DataFrame(rows, columns=list(columns))


# --- the math --------------------------------------------------------------------


def test_persistence_auc_is_the_hand_computed_one():
    # Scores 0,0,0,1,1,0 (rained today?) vs labels 0,0,1,1,1,0: of the 9
    # (positive, negative) pairs, 6 are ordered right and 3 tie (count half).
    eval_frame = frame([("a", 1, p, y) for p, y in
                        [(0, 0), (0, 0), (0, 1), (3.0, 1), (0.5, 1), (0, 0)]])
    assert naive.persistence_scores(eval_frame).tolist() == [0, 0, 0, 1, 1, 0]
    result = naive.compute_baselines(eval_frame, eval_frame)
    persistence = result["baselines"]["persistence"]
    assert persistence["auc"] == pytest.approx(7.5 / 9)
    assert persistence["auc_note"] is None
    assert persistence["per_station"] == {"a": {"auc": pytest.approx(7.5 / 9), "examples": 6}}


def test_auc_is_null_with_a_note_for_one_class_never_zero():
    train = frame([("a", 1, 1.0, 1), ("a", 1, 0.0, 0)] * 5)
    dry = frame([("a", 1, 0.0, 0), ("a", 2, 2.0, 0), ("b", 1, 0.0, 0)])
    result = naive.compute_baselines(train, dry)
    for name in naive.BASELINE_NAMES:
        entry = result["baselines"][name]
        assert entry["auc"] is None, name
        assert "no positive label" in entry["auc_note"] and "undefined" in entry["auc_note"]
        assert entry["per_station"] == {"a": {"auc": None, "examples": 2},
                                         "b": {"auc": None, "examples": 1}}
    assert naive.roc_auc(np.array([1, 1]), np.array([0.2, 0.9])) == (
        None, "the 2 eval examples are all positive (rain tomorrow): AUC undefined")
    assert naive.roc_auc(np.array([]), np.array([]))[0] is None
    # A per-station AUC is null when only that station is one-class.
    mixed = frame([("a", 1, 1.0, 1), ("a", 1, 0.0, 0), ("b", 1, 0.0, 0)])
    per_station = naive.compute_baselines(train, mixed)["baselines"]["persistence"]["per_station"]
    assert per_station == {"a": {"auc": 1.0, "examples": 2}, "b": {"auc": None, "examples": 1}}
    assert json.loads(json.dumps(result, allow_nan=False)) == result  # null, not NaN


def test_climatology_uses_the_station_month_cell_then_the_station_then_all_of_train():
    train = frame([
        ("a", 1, 0, 1), ("a", 1, 0, 1), ("a", 1, 0, 0), ("a", 1, 0, 1),  # a/Jan: 3/4
        ("a", 2, 0, 0), ("a", 2, 0, 0),                                    # a/Feb: 0/2 -> a: 3/6
        ("b", 1, 0, 1), ("b", 1, 0, 0),                                    # b/Jan: 1/2 = b
    ])                                                                     # all: 4/8
    eval_frame = frame([("a", 1, 0, 0), ("a", 2, 0, 1), ("a", 7, 0, 0), ("b", 7, 0, 1),
                        ("c", 1, 0, 0), ("a", None, 0, 1)])
    scores = naive.climatology_scores(train, eval_frame)
    assert scores.tolist() == pytest.approx([0.75, 0.0, 0.5, 0.5, 0.5, 0.5])
    # Feb of station a is its own cell (0.0), not a's 0.5: the cell wins.
    with pytest.raises(ValueError, match="the train split has no examples"):
        naive.climatology_scores(train.iloc[:0], eval_frame)


def _weather_frame(rows: int, seed: int) -> pd.DataFrame:
    """Rain tomorrow follows today's humidity-like signal and the weather type."""
    rng = np.random.default_rng(seed)
    columns = {name: rng.normal(size=rows) for name in naive.numeric_features()}
    weather = rng.choice(["rain", "sun", "fog"], size=rows)
    logit = 2.0 * columns["precipitation"] + 1.5 * (weather == "rain") - 0.5
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    columns["precipitation_lag1"][::7] = np.nan  # missing values: imputed
    return pd.DataFrame({**columns, "weather": weather, "station": "a",
                         "month": rng.integers(1, 13, size=rows), LABEL: label})


def test_the_linear_model_is_seeded_and_learns_the_signal():
    train, eval_frame = _weather_frame(2000, 1), _weather_frame(800, 2)
    x_train, x_eval, columns = naive.linear_design(train, eval_frame)
    assert columns[-3:] == ["weather=fog", "weather=rain", "weather=sun"]
    assert x_train.shape == (2000, len(naive.numeric_features()) + 3)
    first = naive.linear_scores(train, eval_frame, seed=0)
    assert np.array_equal(first, naive.linear_scores(train, eval_frame, seed=0))
    result = naive.compute_baselines(train, eval_frame)["baselines"]
    assert result["linear"]["auc"] > 0.8 > result["climatology"]["auc"]
    # Fit on train only: one class there -> null with a note, no crash.
    one_class = train.assign(**{LABEL: 0})
    linear = naive.compute_baselines(one_class, eval_frame)["baselines"]["linear"]
    assert linear["auc"] is None
    assert linear["auc_note"] == ("not computed: the train split's 2000 examples are of one "
                                  "class (label 0): no model can be fit")


def test_an_unseen_weather_type_and_an_empty_numeric_column_do_not_break_the_linear_model():
    train, eval_frame = _weather_frame(500, 3), _weather_frame(200, 4)
    train["wind_lag2"] = np.nan  # no value at all in train: left out
    eval_frame.loc[:10, "weather"] = "hail"  # never seen in train: all zeros
    eval_frame.loc[11:20, "weather"] = None
    _, x_eval, columns = naive.linear_design(train, eval_frame)
    assert "wind_lag2" not in columns
    weather = [columns.index(c) for c in columns if c.startswith("weather=")]
    assert not x_eval[:21, weather].any()
    assert naive.compute_baselines(train, eval_frame)["baselines"]["linear"]["auc"] > 0.7


# --- the executor on TFRecords ------------------------------------------------------


def _record(station, month, precipitation, label, weather=None, extra=None) -> bytes:
    import tensorflow as tf

    feature = {
        "station": tf.train.Feature(bytes_list=tf.train.BytesList(value=[station.encode()])),
        "month": tf.train.Feature(int64_list=tf.train.Int64List(value=[month])),
        "precipitation": tf.train.Feature(float_list=tf.train.FloatList(value=[precipitation])),
        LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    if weather is not None:
        feature["weather"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[weather.encode()]))
    for name, value in (extra or {}).items():
        feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_examples(uri: str, splits: dict, gzip: bool = True) -> standard_artifacts.Examples:
    """An Examples artifact with one TFRecord file per split (as ExampleGen writes)."""
    import tensorflow as tf

    examples = standard_artifacts.Examples()
    examples.uri = uri
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    for split, records in splits.items():
        os.makedirs(os.path.join(uri, f"Split-{split}"))
        name = "data_tfrecord-00000-of-00001" + (".gz" if gzip else "")
        with tf.io.TFRecordWriter(os.path.join(uri, f"Split-{split}", name),
                                  options="GZIP" if gzip else None) as writer:
            for record in records:
                writer.write(record)
    return examples


def _run_executor(examples, work) -> dict:
    output = naive_artifacts.NaiveBaselineMetrics()
    output.uri = os.path.join(work, "baselines")
    os.makedirs(output.uri)
    naive_executor.Executor().Do({naive_executor.EXAMPLES_KEY: [examples]},
                                 {naive_executor.BASELINES_KEY: [output]}, {naive_executor.SEED_KEY: 0})
    assert os.listdir(output.uri) == ["baselines.json"]  # nothing else, no temporary file
    return naive_artifacts.read_baselines(output.uri)


TRAIN_ROWS = [("sea", 1, 2.0, 1, "rain", {"temp_max": 8.0}), ("sea", 1, 0.0, 0, "sun", {"temp_max": 12.0}),
              ("sea", 1, 1.0, 1, "rain", {}), ("sea", 2, 0.0, 0, None, {"temp_max": 15.0}),
              ("pdx", 1, 0.0, 1, "drizzle", {"temp_max": 9.0}), ("pdx", 1, 0.0, 0, "sun", {"temp_max": 14.0})]
EVAL_ROWS = [("sea", 1, 3.0, 1, "rain", {"temp_max": 7.0}), ("sea", 2, 0.0, 0, "sun", {"temp_max": 16.0}),
             ("sea", 3, 0.0, 1, "fog", {"temp_max": 10.0}), ("pdx", 1, 0.5, 0, "sun", {}),
             ("pdx", 1, 4.0, 1, "rain", {"temp_max": 6.0})]


@pytest.mark.parametrize("gzip", [True, False])
def test_the_executor_writes_the_contract_from_example_gen_splits(tmp_path, gzip):
    examples = write_examples(str(tmp_path / "examples"), {
        "train": [_record(*r[:5], r[5]) for r in TRAIN_ROWS],
        "eval": [_record(*r[:5], r[5]) for r in EVAL_ROWS]}, gzip=gzip)
    data = _run_executor(examples, str(tmp_path))
    assert set(data) == {"label", "train_examples", "eval_examples", "baselines"}
    assert (data["label"], data["train_examples"], data["eval_examples"]) == (LABEL, 6, 5)
    assert set(data["baselines"]) == {"persistence", "climatology", "linear"}
    for entry in data["baselines"].values():
        assert set(entry) == {"auc", "auc_note", "per_station"}
        assert {s: v["examples"] for s, v in entry["per_station"].items()} == {"sea": 3, "pdx": 2}
    # The same numbers as the math on the frames the reader gives.
    train = examples_io.read_split(examples.uri, "train")
    eval_frame = examples_io.read_split(examples.uri, "eval")
    assert train["temp_max"].isna().tolist() == [False, False, True, False, False, False]
    assert train["weather"].tolist() == ["rain", "sun", "rain", None, "drizzle", "sun"]
    assert data == json.loads(json.dumps(naive.compute_baselines(train, eval_frame, seed=0)))
    # Persistence by hand: scores 1,0,0,1,1 vs labels 1,0,1,0,1; positives (scores
    # 1, 0, 1) x negatives (scores 0, 1): 1 + .5 + .5 + 0 + 1 + .5 = 3.5 of 6 pairs.
    assert data["baselines"]["persistence"]["auc"] == pytest.approx(3.5 / 6)
    # pdx: both days rained (0.5 and 4 mm), one dry tomorrow: a tie, 0.5.
    assert data["baselines"]["persistence"]["per_station"]["pdx"]["auc"] == 0.5
    assert data["baselines"]["persistence"]["per_station"]["sea"]["auc"] == 0.75


def test_the_executor_names_a_missing_split_and_missing_labels(tmp_path):
    only_train = write_examples(str(tmp_path / "a"), {"train": [_record("s", 1, 0.0, 0)]})
    with pytest.raises(examples_io.ExamplesReadError,
                       match=r"have splits \['train'\], no 'eval': naive baselines need"):
        _run_executor(only_train, str(tmp_path / "a"))
    import tensorflow as tf

    unlabeled = tf.train.Example(features=tf.train.Features(feature={
        "station": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"s"]))})).SerializeToString()
    examples = write_examples(str(tmp_path / "b"), {"train": [_record("s", 1, 0.0, 0), unlabeled],
                                                    "eval": [_record("s", 1, 0.0, 0)]})
    with pytest.raises(examples_io.ExamplesReadError,
                       match=r"1 of the 2 examples in .*Split-train have no 'rain_tomorrow'"):
        _run_executor(examples, str(tmp_path / "b"))


# --- the gate --------------------------------------------------------------------------


def baselines_json(persistence_auc, note=None, station="alpha") -> dict:
    """A baselines.json whose persistence AUC the test chooses."""
    def entry(auc, auc_note=None):
        return {"auc": auc, "auc_note": auc_note,
                "per_station": {station: {"auc": auc, "examples": 300}}}
    return {"label": LABEL, "train_examples": 600, "eval_examples": 300,
            "baselines": {"persistence": entry(persistence_auc, note),
                          "climatology": entry(0.6123), "linear": entry(0.8456)}}


def test_judge_passes_refuses_or_says_why_it_does_not_apply():
    data = baselines_json(0.714)
    passed = naive_gate.judge(data, 0.80, 0.05)
    assert passed["status"] == "passed" and passed["required_auc"] == pytest.approx(0.764)
    assert passed["message"] == "candidate AUC 0.8000 >= persistence AUC 0.7140 + margin 0.05 = 0.7640"
    failed = naive_gate.judge(data, 0.745, 0.05)
    assert failed["status"] == "failed" and naive_gate.refuses(failed)
    assert failed["message"].startswith(
        "candidate AUC 0.7450 < persistence AUC 0.7140 + margin 0.05 = 0.7640 "
        "(--min-margin-over-persistence)")
    assert "short by 0.0190" in failed["message"]
    # A negative margin lets the candidate be that much below persistence.
    assert naive_gate.judge(data, 0.70, -0.02)["status"] == "passed"
    undefined = naive_gate.judge(baselines_json(None, "the 80 eval examples have no positive label "
                                                      "(no rain tomorrow): AUC undefined"), 0.9, 0.0)
    assert undefined["status"] == "not applied" and not naive_gate.refuses(undefined)
    assert undefined["message"].startswith("persistence AUC undefined (the 80 eval examples have no "
                                           "positive label")
    assert "is not checked: this rule does not refuse the blessing" in undefined["message"]
    off = naive_gate.judge(data, 0.5, None)
    assert off["status"] == "off" and not naive_gate.refuses(off)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path_factory.mktemp("oracle") / "model")
    _oracle_model(os.path.join(model.uri, "Format-Serving"))
    model.id = 1
    return model


ROWS = station_rows("alpha", 300, "good", 1)  # the candidate's AUC is ~0.96


def evaluate(work, model, persistence_auc, margin, note=None):
    """BaselineAwareEvaluator's executor with a naive baselines input; (blessing, evaluation)."""
    import tensorflow as tf

    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(work, "examples")
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    os.makedirs(os.path.join(examples.uri, "Split-eval"))
    with tf.io.TFRecordWriter(os.path.join(examples.uri, "Split-eval", "data.tfrecord")) as writer:
        for i, (station, label, score) in enumerate(ROWS):
            writer.write(_example(station, label, score, 1 + i % 12))
    naive_input = naive_artifacts.NaiveBaselineMetrics()
    naive_input.uri = os.path.join(work, "naive")
    os.makedirs(naive_input.uri)
    with open(naive_artifacts.baselines_path(naive_input.uri), "w") as f:
        json.dump(baselines_json(persistence_auc, note), f)
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(work, "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(work, "blessing")
    for uri in (evaluation.uri, blessing.uri):
        os.makedirs(uri)
    properties = {standard_component_specs.EVAL_CONFIG_KEY:
                      proto_utils.proto_to_json(create_eval_config(BlessingThresholds())),
                  standard_component_specs.EXAMPLE_SPLITS_KEY: json.dumps(["eval"])}
    if margin is not None:
        properties[baseline_executor.MIN_MARGIN_KEY] = margin
    baseline_executor.EvaluatorExecutor().Do(
        {standard_component_specs.EXAMPLES_KEY: [examples],
         standard_component_specs.MODEL_KEY: [model],
         baseline_executor.NAIVE_BASELINES_KEY: [naive_input]},
        {standard_component_specs.EVALUATION_KEY: [evaluation],
         standard_component_specs.BLESSING_KEY: [blessing]},
        properties)
    return blessing, evaluation, naive_input


def push(work, model, blessing, evaluation, naive_input):
    pushed = standard_artifacts.PushedModel()
    pushed.uri = os.path.join(work, "pushed")
    serving = os.path.join(work, "serving")
    pusher_executor.Executor().Do(
        {pusher_executor.MODEL_KEY: [model], pusher_executor.MODEL_BLESSING_KEY: [blessing],
         pusher_executor.EVALUATION_KEY: [evaluation],
         pusher_executor.NAIVE_BASELINES_KEY: [naive_input]},
        {pusher_executor.PUSHED_MODEL_KEY: [pushed]},
        {pusher_executor.SERVING_BASE_KEY: serving, pusher_executor.MODEL_NAME_KEY: "rain_tomorrow",
         pusher_executor.KEEP_VERSIONS_KEY: 0})
    model_dir = os.path.join(serving, "rain_tomorrow")
    versions = sorted(v for v in os.listdir(model_dir) if v.isdigit()) if os.path.isdir(model_dir) else []
    return bool(pushed.get_int_custom_property(pusher_executor.PUSHED)), model_dir, versions


@pytest.fixture(scope="module")
def refused(oracle, tmp_path_factory):
    """Persistence 0.99 beats the oracle (~0.96): margin 0 refuses."""
    work = str(tmp_path_factory.mktemp("refused"))
    blessing, evaluation, naive_input = evaluate(work, oracle, 0.99, 0.0)
    return work, blessing, evaluation, naive_input, evaluation_results.summarize(evaluation.uri)


def test_a_candidate_below_persistence_plus_margin_is_refused_and_not_pushed(oracle, refused):
    work, blessing, evaluation, naive_input, summary = refused
    auc = summary.metrics["candidate"]["auc"]
    assert 0.65 <= auc < 0.99  # TFMA's own thresholds pass...
    assert evaluation_results.tfma.load_validation_result(evaluation.uri).validation_ok
    # ...the margin over persistence refuses: blessing file, property and summary agree.
    assert blessing.get_int_custom_property("blessed") == 0
    assert sorted(os.listdir(blessing.uri)) == ["NOT_BLESSED"]
    assert not summary.blessed
    assert summary.failures == [
        f"blessing refused: candidate AUC {auc:.4f} < persistence AUC 0.9900 + margin 0 = 0.9900 "
        f"(--min-margin-over-persistence): the model does not beat \"rain tomorrow if it rained "
        f"today\" by the required margin (short by {0.99 - auc:.4f})"]
    record = summary.naive_baselines
    assert (record["status"], record["persistence_auc"], record["margin"]) == ("failed", 0.99, 0.0)
    assert record["candidate_auc"] == pytest.approx(auc)
    assert record["baselines"]["baselines"]["linear"]["auc"] == 0.8456
    pushed, _, versions = push(work, oracle, blessing, evaluation, naive_input)
    assert not pushed and versions == []


def test_the_summary_and_the_report_show_the_baselines_and_the_refusal(refused):
    _, _, evaluation, naive_input, summary = refused
    auc = summary.metrics["candidate"]["auc"]
    run = RunSummary("rain-tomorrow", "run-1", [ComponentRun("Evaluator", "COMPLETE", 1.0)],
                     evaluation=summary, evaluation_uri=evaluation.uri, pushed=False,
                     push_reason="model not blessed by the Evaluator",
                     naive_baselines=naive_artifacts.read_baselines(naive_input.uri))
    text = format_run_summary(run)
    assert (f"Naive baselines (300 eval examples): Candidate AUC {auc:.4f} | persistence 0.9900 | "
            "climatology 0.6123 | linear 0.8456") in text.splitlines()
    refusal = summary.failures[0]
    assert "Blessed: no" in text and f"  - {refusal}" in text
    assert "Margin over persistence: failed: candidate AUC" in text
    html = render_report(run, evaluation_results.sliced_metrics(evaluation.uri))
    verdict = html[html.index('class="verdict bad"'):html.index("<h2>Components")]
    assert escape(refusal) in verdict
    table = html[html.index("<h3>Naive baselines"):]
    overall = next(r for r in table.split("<tr>") if r.startswith("<td>Overall</td>"))
    assert overall == (f'<td>Overall</td><td class="num">300</td><td class="num">{auc:.4f}</td>'
                       '<td class="num">0.9900</td><td class="num">0.6123</td>'
                       '<td class="num">0.8456</td></tr>')
    assert '<span class="bad">failed</span>' in table


def test_a_candidate_above_persistence_is_blessed_and_push_metadata_has_the_baselines(oracle, tmp_path):
    blessing, evaluation, naive_input = evaluate(str(tmp_path), oracle, 0.70, 0.05)
    summary = evaluation_results.summarize(evaluation.uri)
    auc = summary.metrics["candidate"]["auc"]
    assert summary.blessed and summary.failures == []
    assert blessing.get_int_custom_property("blessed") == 1
    assert summary.naive_baselines["status"] == "passed"
    assert summary.naive_baselines["message"] == (
        f"candidate AUC {auc:.4f} >= persistence AUC 0.7000 + margin 0.05 = 0.7500")
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary))
    assert "Blessed: yes" in text and "Margin over persistence: passed: " in text
    assert f"Candidate AUC {auc:.4f} | persistence 0.7000 | climatology 0.6123 | linear 0.8456" in text
    pushed, model_dir, versions = push(str(tmp_path), oracle, blessing, evaluation, naive_input)
    assert pushed and len(versions) == 1
    with open(os.path.join(model_dir, versions[0], "push_metadata.json")) as f:
        metadata = json.load(f)
    recorded = metadata["naive_baselines"]
    assert recorded["candidate_auc"] == pytest.approx(auc)
    assert {n: recorded["baselines"][n]["auc"] for n in naive.BASELINE_NAMES} == {
        "persistence": 0.70, "climatology": 0.6123, "linear": 0.8456}
    assert recorded["baselines"]["persistence"]["per_station"] == {"alpha": {"auc": 0.70, "examples": 300}}
    assert (recorded["train_examples"], recorded["eval_examples"]) == (600, 300)
    assert recorded["margin_over_persistence"]["status"] == "passed"
    assert recorded["margin_over_persistence"]["margin"] == 0.05


def test_an_undefined_persistence_auc_does_not_block_silently(refused, tmp_path):
    """Judged again on a copy of the refused evaluation: TFMA's results are the same."""
    _, _, evaluation, _, _ = refused
    copy = str(tmp_path / "evaluation")
    shutil.copytree(evaluation.uri, copy)
    naive_dir = tmp_path / "naive"
    naive_dir.mkdir()
    note = "the eval split has no 'precipitation' values"
    (naive_dir / "baselines.json").write_text(json.dumps(baselines_json(None, note)))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    open(os.path.join(blessing.uri, "BLESSED"), "w").close()
    blessing.set_int_custom_property("blessed", 1)  # TFMA's verdict
    record = baseline_executor.record_naive_baseline_gate(str(naive_dir), copy, 0.0)
    summary = baseline_executor.apply_verdict(blessing, copy)
    assert record["status"] == "not applied"
    assert summary.blessed and blessing.get_int_custom_property("blessed") == 1
    text = format_run_summary(RunSummary("p", "r", [], evaluation=summary))
    assert f"Margin over persistence: not applied: persistence AUC undefined ({note})" in text
    assert "| persistence undefined |" in text
    assert f"persistence: {note}" in text
    # Off: reported, never gating.
    record = baseline_executor.record_naive_baseline_gate(str(naive_dir), copy, None)
    assert record["status"] == "off"
    # No baselines file in a wired input: a clear error, not a silent pass.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"naive baselines input at .*empty holds no baselines.json"):
        baseline_executor.record_naive_baseline_gate(str(empty), copy, 0.0)


def test_several_stations_get_a_table_beside_the_candidates_station_aucs():
    from components.naive_baselines import reporting

    def entry(a, b):
        return {"auc": 0.7, "auc_note": None, "per_station": {
            "alpha": {"auc": a, "examples": 300}, "dry": {"auc": b, "examples": 80}}}

    data = {"label": LABEL, "train_examples": 760, "eval_examples": 380, "baselines": {
        "persistence": entry(0.71, None), "climatology": entry(0.62, None), "linear": entry(0.78, None)}}
    gates = evaluation_results.SliceGates("block", 0.65, 50, [
        evaluation_results.SliceGateResult("station", "alpha", 300, 0.8123, "passed", ""),
        evaluation_results.SliceGateResult("station", "dry", 80, None, "undefined", "")])
    evaluation = evaluation_results.EvaluationSummary(
        metrics={"candidate": {"auc": 0.8}}, thresholds={}, blessed=True, failures=[],
        has_baseline=False, slice_gates=gates)
    lines = reporting.summary_lines(evaluation, data)
    assert lines[0] == ("Naive baselines (380 eval examples): Candidate AUC 0.8000 | persistence 0.7000 | "
                        "climatology 0.7000 | linear 0.7000")
    assert lines[1].split() == ["station", "examples", "candidate", "persistence", "climatology", "linear"]
    assert lines[2].split() == ["alpha", "300", "0.8123", "0.7100", "0.6200", "0.7800"]
    assert lines[3].split() == ["dry", "80", "undefined", "undefined", "undefined", "undefined"]
    # Without station slices (slice gates off, no sliced metrics) the candidate's is n/a.
    evaluation.slice_gates = evaluation_results.SliceGates("off")
    assert reporting.summary_lines(evaluation, data)[2].split()[2] == "n/a"
    html = reporting.report_html(evaluation, data, sliced=[
        {"slice": "station=alpha", "auc": 0.8123}, {"slice": "station=alpha, month=1", "auc": 0.5}])
    row = next(r for r in html.split("<tr>") if r.startswith("<td>station alpha</td>"))
    assert row == ('<td>station alpha</td><td class="num">300</td><td class="num">0.8123</td>'
                   '<td class="num">0.7100</td><td class="num">0.6200</td><td class="num">0.7800</td></tr>')
    assert '<td>station dry</td><td class="num">80</td><td class="num">n/a</td>' in html


# --- flags and wiring -----------------------------------------------------------------


@pytest.mark.parametrize("value,message", [
    ("2", "2: an AUC difference lies in [-1, 1] (or give 'off')"),
    ("abc", "'abc' is not a number"),
])
def test_a_bad_margin_is_a_usage_error_before_any_work(value, message, tmp_path, capsys):
    import local_runner

    runs = tmp_path / "runs"
    assert local_runner.main(["--runs-dir", str(runs), "--min-margin-over-persistence", value]) == 2
    assert f"argument --min-margin-over-persistence: {message}" in capsys.readouterr().err
    assert not runs.exists()


def test_the_margin_reaches_both_runners_and_the_compiled_evaluator(tmp_path):
    import yaml

    import kubeflow_runner
    import local_runner
    from pipeline.runner_settings import pipeline_config_from_flags

    def local(*argv):
        flags = local_runner.parse_flags(["--runs-dir", str(tmp_path), *argv])
        return pipeline_config_from_flags(flags, pipeline_root="p", curated_root="c",
                                          schema_path="s", serving_base="b").thresholds

    assert local().min_margin_over_persistence == 0.0
    assert local("--min-margin-over-persistence", "0.05").min_margin_over_persistence == 0.05
    assert local("--min-margin-over-persistence", "-0.02").min_margin_over_persistence == -0.02
    assert local("--min-margin-over-persistence", "off").min_margin_over_persistence is None
    output = tmp_path / "pipeline.yaml"
    assert kubeflow_runner.main(["--image", "example.com/rain:1", "--output", str(output),
                                 "--pipeline-root", "minio://mlpipeline/v2/artifacts",
                                 "--min-margin-over-persistence", "0.05"]) == 0
    spec = next(yaml.safe_load_all(output.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    evaluator = tasks["Evaluator"]["inputs"]
    assert evaluator["parameters"]["min_margin_over_persistence"] == {"runtimeValue": {"constant": 0.05}}
    edge = evaluator["artifacts"]["naive_baselines"]["taskOutputArtifact"]
    assert edge == {"producerTask": "NaiveBaselines", "outputArtifactKey": "baselines"}
    assert tasks["Pusher"]["inputs"]["artifacts"]["naive_baselines"]["taskOutputArtifact"] == edge
    examples = tasks["NaiveBaselines"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"]
    assert examples["producerTask"] == "FileBasedExampleGen"
    # The task image imports the custom type from its schema title.
    from tfx.utils import import_utils

    assert import_utils.import_class_by_path(
        naive_artifacts.NaiveBaselineMetrics.TYPE_NAME) is naive_artifacts.NaiveBaselineMetrics


def test_the_pipeline_feeds_the_evaluators_examples_to_naive_baselines():
    from pipeline.config import PipelineConfig
    from pipeline.pipeline import create_pipeline

    config = PipelineConfig(pipeline_root="/p", curated_root="/c", schema_path="/s",
                            serving_base="/b", thresholds=BlessingThresholds(min_margin_over_persistence=None))
    nodes = {c.id: c for c in create_pipeline(config).components}
    naive_node, evaluator = nodes["NaiveBaselines"], nodes["Evaluator"]
    assert naive_node.inputs["examples"] is evaluator.inputs["examples"]
    assert evaluator.inputs["naive_baselines"] is naive_node.outputs["baselines"]
    assert nodes["Pusher"].inputs["naive_baselines"] is naive_node.outputs["baselines"]
    assert "min_margin_over_persistence" not in {
        k for k, v in evaluator.exec_properties.items() if v is not None}  # off: not gated
    assert "AnomalyGate" in {n.id for n in naive_node.upstream_nodes}  # anomalies stop it too


def test_the_compiled_naive_baselines_task_runs_through_the_kubeflow_entrypoint(tmp_path, monkeypatch):
    """The NaiveBaselines task of a compiled YAML, as KFP's driver and launcher give it
    (tests/test_kubeflow_runner.py's in-process model): TFX's Kubeflow v2 entrypoint builds
    the custom NaiveBaselineMetrics output from its schema title and writes baselines.json."""
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

    import kubeflow_runner
    from pipeline.kubeflow import entrypoint as kfp_entrypoint
    from tests.kfp_launcher import PodmanBackend, TaskResult
    from tests.test_kubeflow_runner import IMAGE, _run_task_in_process, flags

    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path)) == 0
    with open(path) as f:
        spec_dict, platform = yaml.safe_load_all(f)
    spec = json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())
    backend = PodmanBackend(spec, platform, IMAGE, str(tmp_path / "store"), {}, str(tmp_path), podman=None)
    local_root = tmp_path / "pod"
    monkeypatch.setenv(kfp_entrypoint.LOCAL_ROOT_ENV, str(local_root))
    # ExampleGen's recorded output, its files where the launcher downloads them.
    uri = backend.uri("run-1", "FileBasedExampleGen", "examples")
    local = local_root / backend.pod_path(uri).lstrip("/")
    examples = write_examples(str(local), {"train": [_record(*r[:5], r[5]) for r in TRAIN_ROWS],
                                           "eval": [_record(*r[:5], r[5]) for r in EVAL_ROWS]})
    examples.uri = uri
    runtime = json_format.MessageToDict(kubeflow_v2_entrypoint_utils.to_runtime_artifact(examples, {}))
    component = spec.components[spec.root.dag.tasks["FileBasedExampleGen"].component_ref.name]
    results = {"FileBasedExampleGen": TaskResult("COMPLETE", {"examples": {
        "name": "artifacts/run-1-examples", "uri": uri, "metadata": runtime.get("metadata", {}),
        "type": json_format.MessageToDict(component.output_definitions.artifacts["examples"].artifact_type)}})}
    status, output = _run_task_in_process(backend, "NaiveBaselines", results, tmp_path)
    assert status == "COMPLETE", output
    (baselines,) = output["artifacts"]["baselines"]["artifacts"]
    assert baselines["uri"] == backend.uri("run-1", "NaiveBaselines", "baselines")
    written = local_root / backend.pod_path(baselines["uri"]).lstrip("/") / "baselines.json"
    data = json.loads(written.read_text())
    assert (data["train_examples"], data["eval_examples"]) == (6, 5)
    assert data["baselines"]["persistence"]["auc"] == pytest.approx(3.5 / 6)
