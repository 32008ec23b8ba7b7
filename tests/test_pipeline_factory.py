"""create_pipeline wires the graph both runners share."""
from tfx import v1 as tfx

from pipeline.config import PipelineConfig, TrainingConfig
from pipeline.pipeline import component_ids, create_pipeline


def _config(**overrides):
    values = dict(pipeline_root="/root", curated_root="/data/curated",
                  schema_path="/schema/schema.pbtxt", serving_base="/serving")
    values.update(overrides)
    return PipelineConfig(**values)


def _by_id(pipeline):
    return {c.id: c for c in pipeline.components}


def test_default_graph_reads_latest_span_and_gates_transform_on_anomalies():
    pipeline = create_pipeline(_config())
    assert sorted(component_ids(pipeline)) == sorted([
        "FileBasedExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
        "AnomalyGate", "Transform", "Trainer", "BaselineModel",
        "Evaluator", "Pusher", "NaiveBaselines",
    ])
    nodes = _by_id(pipeline)
    assert "AnomalyGate" in {n.id for n in nodes["Transform"].upstream_nodes}
    assert nodes["Transform"].inputs["examples"].producer_component_id == "FileBasedExampleGen"
    assert nodes["Trainer"].exec_properties["run_fn"] == "models.trainer.run_fn"
    assert nodes["Transform"].exec_properties["preprocessing_fn"] == "models.preprocessing.preprocessing_fn"
    assert nodes["Pusher"].exec_properties["serving_base"] == "/serving"


def test_span_window_trains_on_resolved_spans():
    pipeline = create_pipeline(_config(span_window=3))
    nodes = _by_id(pipeline)
    resolver = nodes["SpanWindowResolver"]
    assert "FileBasedExampleGen" in {n.id for n in resolver.upstream_nodes}
    for consumer in ("Transform", "Trainer", "Evaluator", "Pusher"):
        assert nodes[consumer].inputs["examples"].producer_component_id == "SpanWindowResolver"
    # The naive baselines read the Evaluator's examples (components/naive_baselines).
    assert nodes["NaiveBaselines"].inputs["examples"].producer_component_id == "SpanWindowResolver"
    # New data is still validated span by span.
    assert nodes["StatisticsGen"].inputs["examples"].producer_component_id == "FileBasedExampleGen"


def test_transform_materializes_only_for_distributed_training():
    # One process: Transform only analyzes; the Trainer reads the raw examples
    # and applies the transform graph per batch (models/trainer.input_fn).
    nodes = _by_id(create_pipeline(_config()))
    assert "transformed_examples" not in nodes["Transform"].outputs
    assert nodes["Trainer"].inputs["examples"].producer_component_id == "FileBasedExampleGen"
    assert nodes["Trainer"].inputs["transform_graph"].producer_component_id == "Transform"
    # Distributed workers shard and read the transformed examples.
    distributed = _by_id(create_pipeline(_config(training=TrainingConfig(train_workers=2))))
    assert "transformed_examples" in distributed["Transform"].outputs
    assert distributed["Trainer"].inputs["examples"].producer_component_id == "Transform"
    assert distributed["Trainer"].inputs["examples"].output_key == "transformed_examples"


@tfx.dsl.components.component
def PrepareData(marker: tfx.dsl.components.Parameter[str]) -> None:
    """Stand-in for the Spark curation component."""


def test_data_preparation_runs_before_example_gen():
    stand_in = PrepareData(marker="x")
    pipeline = create_pipeline(_config(), data_preparation=stand_in)
    example_gen = _by_id(pipeline)["FileBasedExampleGen"]
    assert stand_in in example_gen.upstream_nodes
    assert stand_in.id in component_ids(pipeline)
