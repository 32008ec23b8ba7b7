"""Runs models.trainer.run_fn inside TFX's own Trainer executor, without a pipeline.

For tests that train on raw examples (ExampleGen's layout, Split-<name>/*.gz)
and an existing transform graph, and want the product's single-process path
exactly as the Trainer component runs it.
"""
import os
import pathlib
from typing import Any, Dict, Tuple, Union


def run_trainer_executor(examples_dir: str, transform_dir: str, root: Union[str, pathlib.Path],
                         train_steps: int, eval_steps: int,
                         custom_config: Dict[str, Any]) -> Tuple[str, str]:
    """Trains into `<root>/model` and `<root>/model_run`.

    Returns:
      (the serving model directory `<root>/model/Format-Serving`, the model_run uri).
    """
    from tfx.components.trainer import executor as trainer_executor
    from tfx.proto import trainer_pb2
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import json_utils, proto_utils

    examples = standard_artifacts.Examples()
    examples.uri = examples_dir
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    transform_graph = standard_artifacts.TransformGraph()
    transform_graph.uri = transform_dir
    model = standard_artifacts.Model()
    model.uri = os.path.join(str(root), "model")
    model_run = standard_artifacts.ModelRun()
    model_run.uri = os.path.join(str(root), "model_run")
    trainer_executor.GenericExecutor().Do(
        {"examples": [examples], "transform_graph": [transform_graph]},
        {"model": [model], "model_run": [model_run]},
        {"train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=train_steps)),
         "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(num_steps=eval_steps)),
         "custom_config": json_utils.dumps(custom_config),
         "run_fn": "models.trainer.run_fn"})
    return os.path.join(model.uri, "Format-Serving"), model_run.uri
