"""The Kubeflow curation task takes local_runner.py's station and quarantine settings.

`--station-from-filename` and `--max-quarantine-share` reach the compiled
SparkCuration task as constant parameters, reach the job through `curate`,
and a clash is a usage error before anything is compiled.
"""
from unittest import mock

import pytest

import kubeflow_runner
from components.spark_curation import component as curation_component
from components.spark_curation.inputs import RawInput
from pipeline import node_ids
from tests.test_kubeflow_runner import IMAGE, PIPELINE_ROOT, flags, read_spec


def _curation_constants(path):
    task = read_spec(path).root.dag.tasks[node_ids.SPARK_CURATION]
    return {name: value.runtime_value.constant
            for name, value in task.inputs.parameters.items()
            if value.HasField("runtime_value")}


def test_defaults_reach_the_compiled_curation_task(tmp_path):
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path)) == 0
    constants = _curation_constants(path)
    assert constants["max_quarantine_share"].number_value == pytest.approx(0.05)
    assert constants["station_from_filename"].number_value == 0


def test_flags_reach_the_compiled_curation_task(tmp_path):
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path, "--station-from-filename",
                                      "--max-quarantine-share", "0.2")) == 0
    constants = _curation_constants(path)
    assert constants["max_quarantine_share"].number_value == pytest.approx(0.2)
    assert constants["station_from_filename"].number_value == 1


@pytest.mark.parametrize("argv, message", [
    (["--station", "KSEA", "--station-from-filename"], "exclude each other"),
    (["--raw-data", "a.csv,b.csv", "--station", "a,b,c"], "3 --station values for 2 --raw-data"),
    (["--max-quarantine-share", "1.5"], "must be within [0, 1]"),
])
def test_clashing_curation_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.parse_flags(["--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_curate_passes_the_mapping_and_ceiling_to_the_job(tmp_path):
    real = curation_component.run_curation
    with mock.patch.object(curation_component, "run_curation", autospec=real) as job:
        curation_component.curate("raw/*.csv", str(tmp_path), "", "local[1]",
                                  max_quarantine_share=0.3, station_from_filename=True)
        curation_component.curate("a.csv,b.csv", str(tmp_path), "A,B", "local[1]")
        curation_component.curate("a.csv", str(tmp_path), "KSEA", "local[1]")
    (first, second, third) = job.call_args_list
    assert first.args[0] == [RawInput("raw/*.csv", from_filename=True)]
    assert first.kwargs["max_quarantine_share"] == 0.3
    assert second.args[0] == [RawInput("a.csv", "A", paired=True), RawInput("b.csv", "B", paired=True)]
    assert second.kwargs["max_quarantine_share"] == 0.05
    assert third.args[0] == ["a.csv"] and third.kwargs["station"] == "KSEA"
