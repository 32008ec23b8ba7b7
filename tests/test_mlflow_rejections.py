"""On Kubeflow a run that the curation task or the AnomalyGate rejects is an MLflow run too.

Real MLflow (a SQLite store), the gate's and the curation task's real
functions; the compiled pipeline binds both to the `mlflow_tracking_uri`
run parameter.
"""
import mlflow
import pytest
from tfx.types import artifact_utils, standard_artifacts

import kubeflow_runner
from components.experiment_tracking import tracking
from components.experiment_tracking.rejections import log_rejection
from pipeline import node_ids
from tests.test_data_validation import _wind_out_of_range, _write_anomalies
from tests.test_kubeflow_runner import flags, read_spec


def _runs(uri, experiment):
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def test_the_gate_logs_a_failed_run_and_still_fails_with_its_table(tmp_path):
    from components.data_validation.component import AnomalyGate, DataAnomaliesError

    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    _write_anomalies(tmp_path / "anomalies", "train", _wind_out_of_range())
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path / "anomalies")
    artifact.split_names = artifact_utils.encode_split_names(["train"])
    gate = AnomalyGate.EXECUTOR_SPEC.executor_class._FUNCTION
    with pytest.raises(DataAnomaliesError, match="wind"):
        gate(anomalies=artifact, mlflow_tracking_uri=uri, pipeline_name="rain-tomorrow")
    (run,) = _runs(uri, "rain-tomorrow")
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.TAG_OUTCOME] == "data_rejected"
    assert run.data.tags[tracking.TAG_SOURCE] == "AnomalyGate"
    assert run.data.tags[tracking.TAG_REASON] == "1 data anomalies"
    assert run.data.metrics["anomalies"] == 1


def test_the_curation_task_logs_a_failed_run_naming_the_problem(tmp_path):
    from components.spark_curation.component import SparkCuration
    from components.spark_curation.job import CurationError

    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    curation = SparkCuration.EXECUTOR_SPEC.executor_class._FUNCTION
    with pytest.raises(CurationError, match="matches no file"):
        curation(raw_data=str(tmp_path / "raw" / "*.csv"), output_dir=str(tmp_path / "data"),
                 spark_master="local[1]", mlflow_tracking_uri=uri, pipeline_name="p")
    (run,) = _runs(uri, "p")
    assert run.info.status == "FAILED" and run.data.tags[tracking.TAG_SOURCE] == "SparkCuration"
    assert "matches no file" in run.data.tags[tracking.TAG_REASON]


def test_tracking_off_or_unreachable_never_hides_the_rejection(tmp_path):
    assert log_rejection("", "p", "AnomalyGate", "x") is None
    assert log_rejection("none", "p", "AnomalyGate", "x") is None
    # A store that cannot be opened: logged as an error, None returned, nothing raised.
    (tmp_path / "file").write_text("not a directory")
    assert log_rejection(f"sqlite:///{tmp_path}/file/mlflow.db", "p", "AnomalyGate", "x") is None


def test_the_compiled_pipeline_binds_both_tasks_to_the_run_parameter(tmp_path):
    path = str(tmp_path / "p.yaml")
    assert kubeflow_runner.main(flags(path)) == 0
    tasks = read_spec(path).root.dag.tasks
    for task in (node_ids.SPARK_CURATION, node_ids.ANOMALY_GATE):
        parameters = tasks[task].inputs.parameters
        assert parameters["mlflow_tracking_uri"].component_input_parameter == "mlflow_tracking_uri", task
        assert parameters["pipeline_name"].runtime_value.constant.string_value == "rain-tomorrow"


def test_local_pipelines_leave_rejections_to_the_runner():
    from pipeline.config import PipelineConfig
    from pipeline.pipeline import create_pipeline

    config = PipelineConfig(pipeline_root="/r", curated_root="/c", schema_path="/s.pbtxt",
                            serving_base="/m", mlflow_tracking_uri="sqlite:////x.db")
    gate = {c.id: c for c in create_pipeline(config).components}[node_ids.ANOMALY_GATE]
    assert gate.exec_properties.get("mlflow_tracking_uri", "") == ""
