"""Executor of NaiveBaselines: reads train and eval, writes baselines.json."""
import json
import os
import time
import uuid
from typing import Any, Dict, List

import pandas as pd
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.naive_baselines import artifacts, baselines, examples_io

EXAMPLES_KEY = "examples"
BASELINES_KEY = "baselines"
SEED_KEY = "seed"
TRAIN_SPLIT, EVAL_SPLIT = "train", "eval"


def read_examples(examples: List[types.Artifact], split: str) -> pd.DataFrame:
    """One split of every Examples artifact (several with a span window), as one frame.

    Raises:
      examples_io.ExamplesReadError: an artifact without that split.
    """
    frames = []
    for artifact in examples:
        names = artifact_utils.decode_split_names(artifact.split_names)
        if split not in names:
            raise examples_io.ExamplesReadError(
                f"the Examples at {artifact.uri} have splits {names}, no '{split}': naive "
                f"baselines need a '{TRAIN_SPLIT}' and an '{EVAL_SPLIT}' split")
        frames.append(examples_io.read_split(artifact.uri, split))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def write_baselines(uri: str, result: dict) -> str:
    """Writes baselines.json into `uri` via a temporary file: never half-written."""
    text = json.dumps(result, indent=2, sort_keys=True, allow_nan=False)
    path = artifacts.baselines_path(uri)
    staging = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    io_utils.write_string_file(staging, text)
    fileio.rename(staging, path, overwrite=True)
    return path


class Executor(base_executor.BaseExecutor):
    """Scores persistence, climatology and a linear model on the eval split."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        started = time.monotonic()
        examples = input_dict[EXAMPLES_KEY]
        output = artifact_utils.get_single_instance(output_dict[BASELINES_KEY])
        train = read_examples(examples, TRAIN_SPLIT)
        eval_frame = read_examples(examples, EVAL_SPLIT)
        seed = exec_properties.get(SEED_KEY)
        result = baselines.compute_baselines(
            train, eval_frame, baselines.DEFAULT_SEED if seed is None else int(seed))
        path = write_baselines(output.uri, result)
        for name, auc in baselines.overall_aucs(result).items():
            note = result["baselines"][name].get("auc_note")
            logging.info("Naive baseline %s: eval AUC %s%s", name, baselines.format_auc(auc),
                         f" ({note})" if note else "")
        logging.info("Naive baselines of %d train / %d eval examples written to %s in %.1f s",
                     result["train_examples"], result["eval_examples"], path,
                     time.monotonic() - started)
