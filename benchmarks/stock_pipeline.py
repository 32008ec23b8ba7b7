"""The whole pipeline in a stock TFX configuration, for the ours-vs-stock benchmark.

TFX's own components with their defaults over the same curated rows:
CsvExampleGen (the curated span written as CSV, dates as strings; TFX's
default 2:1 train/eval hash split) -> StatisticsGen -> SchemaGen (inferred
schema) -> ExampleValidator -> Transform -> Trainer -> Evaluator -> Pusher
(file system). Transform runs the project's `preprocessing_fn` with TFX's
defaults (statistics on, transformed examples written) and the Trainer the
project's model code with the same hyper-parameters and steps, reading the
transformed examples as TFX's templates do (`stock_run_fn`), so the model
work is the same; what differs is everything around it (ingestion, inferred vs
curated schema, Transform's default statistics, no drift/gate/baseline
components, stock Evaluator/Pusher).

Why CSV and not TFX's stock Parquet executor: that executor writes no value
for any falsy cell (0, 0.0, ''), so every `rain_tomorrow = 0` label and
every dry day's precipitation disappear; Transform then fails on the
missing required label (what `etl_stock` recorded at every size), and a
model could not be trained on such data at all. CsvExampleGen keeps zeros.
"""
import os
from typing import Sequence

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from models import features
from models.model import SERVING_OUTPUT_KEY
from pipeline.config import BlessingThresholds, TrainingConfig
from pipeline.pipeline import PREPROCESSING_FN

STOCK_RUN_FN = "benchmarks.stock_pipeline.stock_run_fn"

COMPONENTS = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
              "Trainer", "Evaluator", "Pusher")


def write_curated_as_csv(span_dir: str, csv_path: str) -> int:
    """The curated span's rows as one CSV (DATE as ISO string, nulls as empty cells)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(span_dir)
    index = table.schema.get_field_index("date")
    table = table.set_column(index, "date", pc.cast(table.column(index), "string"))
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
    # pandas: an unquoted header (pyarrow quotes it, and CsvExampleGen keeps the quotes).
    table.to_pandas().to_csv(csv_path, index=False)
    return table.num_rows


def transformed_input_fn(file_patterns, data_accessor, tf_transform_output, batch_size,
                         seed=None):
    """TFX's template input_fn: batches of the transformed examples Transform wrote."""
    from tfx_bsl.public import tfxio

    from models.model import TRANSFORMED_LABEL_KEY

    return data_accessor.tf_dataset_factory(
        file_patterns,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=TRANSFORMED_LABEL_KEY,
                                       shuffle_seed=seed, sloppy_ordering=False),
        tf_transform_output.transformed_metadata.schema,
    ).repeat()


def stock_run_fn(fn_args: tfx.components.FnArgs) -> None:
    """The project's model, trained on the materialized transformed examples."""
    from models import trainer

    trainer.train_and_export(fn_args, read=transformed_input_fn)


def stock_eval_config(thresholds: BlessingThresholds = BlessingThresholds()) -> tfma.EvalConfig:
    """The stock tutorial shape: serving signature, AUC floor, overall + station + month slices."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default",
                                    label_key=features.LABEL_KEY,
                                    prediction_key=SERVING_OUTPUT_KEY)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["station"]),
                       tfma.SlicingSpec(feature_keys=["month"])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="AUC", threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(
                    lower_bound={"value": thresholds.min_auc}))),
        ])],
    )


def create_stock_pipeline(pipeline_name: str, pipeline_root: str, metadata_path: str,
                          csv_dir: str, serving_dir: str,
                          beam_pipeline_args: Sequence[str],
                          training: TrainingConfig = TrainingConfig()) -> tfx.dsl.Pipeline:
    """CsvExampleGen -> ... -> Pusher with TFX's defaults; caching off."""
    example_gen = tfx.components.CsvExampleGen(input_base=csv_dir)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN)
    trainer = tfx.components.Trainer(
        run_fn=STOCK_RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=training.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=training.eval_steps),
        custom_config=training.custom_config())
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        eval_config=stock_eval_config())
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)))
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform,
                    trainer, evaluator, pusher],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path),
        beam_pipeline_args=list(beam_pipeline_args),
    )
