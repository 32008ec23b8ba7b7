"""The Evaluator's baseline from the serving directory, and the Evaluator that may lack one."""
import json
import os

import pytest
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import standard_artifacts, standard_component_specs

from components.serving_baseline import executor as baseline
from components.serving_baseline import properties


def _version(model_dir, version, model_uri=None, saved_model=True):
    path = os.path.join(model_dir, str(version))
    os.makedirs(os.path.join(path, "variables"))
    if saved_model:
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write(f"model {version}")
    if model_uri:
        with open(os.path.join(path, "push_metadata.json"), "w") as f:
            json.dump({"model_uri": model_uri, "version": version}, f)
    return path


def _run(serving_base, model_name, candidate_uri, output_uri):
    candidate = standard_artifacts.Model()
    candidate.uri = candidate_uri
    output = standard_artifacts.Model()
    output.uri = output_uri
    baseline.Executor().Do(
        {baseline.CANDIDATE_KEY: [candidate]}, {baseline.BASELINE_KEY: [output]},
        {baseline.SERVING_BASE_KEY: serving_base, baseline.MODEL_NAME_KEY: model_name})
    return output


def test_newest_version_with_a_saved_model_that_is_not_the_candidate(tmp_path):
    model_dir = str(tmp_path / "rain")
    assert baseline.newest_served_version(model_dir) is None  # no directory yet
    _version(model_dir, 100, model_uri="/runs/Trainer/model/1")
    _version(model_dir, 200, model_uri="/runs/Trainer/model/2")
    _version(model_dir, 300, saved_model=False)  # incomplete: skipped
    os.makedirs(os.path.join(model_dir, ".tmp-400-abc"))  # staging: not a version
    assert baseline.newest_served_version(model_dir) == 200
    assert baseline.newest_served_version(model_dir, exclude_model_uri="/runs/Trainer/model/2") == 100


def test_baseline_is_a_copy_of_the_served_version(tmp_path):
    serving_base = str(tmp_path / "serving")
    source = _version(os.path.join(serving_base, "rain"), 1700000000, model_uri="/runs/m/1")
    output = _run(serving_base, "rain", "/runs/m/2", str(tmp_path / "baseline"))

    copied = os.path.join(str(tmp_path / "baseline"), "Format-Serving")
    assert open(os.path.join(copied, "saved_model.pb")).read() == "model 1700000000"
    assert os.path.isdir(os.path.join(copied, "variables"))
    assert output.get_int_custom_property(properties.BASELINE_FOUND) == 1
    assert output.get_int_custom_property(properties.BASELINE_VERSION) == 1700000000
    assert output.get_string_custom_property(properties.BASELINE_MODEL_URI) == "/runs/m/1"
    assert output.get_string_custom_property(properties.BASELINE_SOURCE) == os.path.dirname(source)
    assert baseline.has_saved_model(output)
    assert os.listdir(os.path.dirname(source)) == ["1700000000"]  # the served version untouched


def test_no_served_version_gives_an_explained_empty_baseline(tmp_path):
    output = _run(str(tmp_path / "serving"), "rain", "/runs/m/1", str(tmp_path / "baseline"))
    assert output.get_int_custom_property(properties.BASELINE_FOUND) == 0
    assert not baseline.has_saved_model(output)
    marker = open(os.path.join(str(tmp_path / "baseline"), baseline.NO_BASELINE_FILE)).read()
    assert "No served model version under" in marker and str(tmp_path / "serving") in marker
    assert not os.path.exists(tmp_path / "serving")  # reading never creates the directory


@pytest.fixture
def captured_evaluator_inputs(monkeypatch):
    """What TFX's Evaluator executor would receive (its Beam work is not run here)."""
    calls = []
    monkeypatch.setattr(tfx_evaluator_executor.Executor, "Do",
                        lambda self, inputs, outputs, props: calls.append(inputs))
    return calls


def _evaluate(baseline_uri, calls):
    model, baseline_model = standard_artifacts.Model(), standard_artifacts.Model()
    model.uri, baseline_model.uri = "/runs/candidate", baseline_uri
    inputs = {standard_component_specs.MODEL_KEY: [model],
              standard_component_specs.BASELINE_MODEL_KEY: [baseline_model]}
    baseline.EvaluatorExecutor().Do(inputs, {}, {})
    return calls[-1]


def test_evaluator_drops_an_empty_baseline(tmp_path, captured_evaluator_inputs):
    empty = _run(str(tmp_path / "serving"), "rain", "/runs/m/1", str(tmp_path / "empty"))
    inputs = _evaluate(empty.uri, captured_evaluator_inputs)
    assert standard_component_specs.BASELINE_MODEL_KEY not in inputs
    assert inputs[standard_component_specs.MODEL_KEY][0].uri == "/runs/candidate"


def test_evaluator_keeps_a_real_baseline(tmp_path, captured_evaluator_inputs):
    serving_base = str(tmp_path / "serving")
    _version(os.path.join(serving_base, "rain"), 5, model_uri="/runs/m/1")
    found = _run(serving_base, "rain", "/runs/m/2", str(tmp_path / "found"))
    inputs = _evaluate(found.uri, captured_evaluator_inputs)
    assert inputs[standard_component_specs.BASELINE_MODEL_KEY][0].uri == found.uri
