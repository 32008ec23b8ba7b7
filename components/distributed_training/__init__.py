"""Data-parallel training of the rain-tomorrow model with tf.distribute (issue #15).

`train(fn_args, hparams, workers, strategy)` is the one entry point the
Trainer's run_fn calls:

* "single" (default): one process, TensorFlow's default strategy, in this
  process;
* "mirrored": `tf.distribute.MirroredStrategy` over this machine's devices,
  in this process;
* "multi_worker": `tf.distribute.MultiWorkerMirroredStrategy` across
  `workers` fresh local processes (`launcher`), one SavedModel exported by
  the chief.

On Kubeflow the same worker module runs as the pods of a Training Operator
TFJob (`tfjob`, `tfjob_client`). docs/distributed_training.md has the details.
"""
import os
from typing import Any, Dict, Optional

from components.distributed_training import spec as spec_lib

CONFIG_WORKERS = "train_workers"
CONFIG_STRATEGY = "train_strategy"
CONFIG_TIMEOUT = "train_timeout_seconds"


def strategy_from_config(custom_config: Optional[Dict[str, Any]]) -> "tuple[int, str]":
    """(workers, strategy) from the Trainer's custom_config.

    `train_workers` > 1 implies "multi_worker"; otherwise `train_strategy`
    (default "single").
    """
    config = dict(custom_config or {})
    workers = 1 if config.get(CONFIG_WORKERS) is None else int(config[CONFIG_WORKERS])
    strategy = config.get(CONFIG_STRATEGY) or ("multi_worker" if workers > 1 else spec_lib.DEFAULT_STRATEGY)
    validate(workers, strategy)
    return workers, strategy


def validate(workers: int, strategy: str) -> None:
    if strategy not in spec_lib.STRATEGIES:
        raise ValueError(f"Unknown strategy '{strategy}'; choose one of {spec_lib.STRATEGIES}.")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    if workers > 1 and strategy != "multi_worker":
        raise ValueError(f"{workers} workers need strategy 'multi_worker', not '{strategy}'.")


def train(fn_args: Any, hparams: Dict[str, Any], workers: int = 1,
          strategy: str = spec_lib.DEFAULT_STRATEGY,
          timeout_seconds: Optional[float] = None, **spec_settings):
    """Trains and exports one model; returns the evidence of every process.

    Args:
      fn_args: TFX FnArgs or any object with train_files, eval_files,
        transform_graph_path, serving_model_dir, model_run_dir, train_steps
        and eval_steps.
      hparams: `models.model.HParams` fields (batch_size is per replica).
      workers: processes for "multi_worker" (1 runs one worker process).
      strategy: one of spec.STRATEGIES.
      timeout_seconds: bound on the whole multi-worker run.
      spec_settings: further TrainingSpec fields (collective_timeout_seconds,
        record_examples, tensorboard).

    Raises:
      launcher.WorkerFailedError / TrainingTimeoutError for "multi_worker".
    """
    validate(workers, strategy)
    spec = spec_lib.TrainingSpec.from_fn_args(fn_args, hparams, **spec_settings)
    if strategy == "multi_worker":
        from components.distributed_training import launcher

        result = launcher.launch(spec, workers,
                                 timeout_seconds=timeout_seconds or launcher.DEFAULT_TIMEOUT_SECONDS)
        return result.evidence
    from components.distributed_training import worker

    return [worker.train_with_strategy(worker.create_strategy(strategy, spec.collective_timeout_seconds),
                                       spec, {}, strategy)]


CONFIG_TFJOB = "tfjob"
CONFIG_KEYS = (CONFIG_WORKERS, CONFIG_STRATEGY, CONFIG_TIMEOUT, CONFIG_TFJOB)


def wants_distributed(custom_config: Optional[Dict[str, Any]]) -> bool:
    """True when the Trainer's custom_config asks for anything but one plain process."""
    config = dict(custom_config or {})
    workers, strategy = strategy_from_config(config)
    return workers > 1 or strategy != spec_lib.DEFAULT_STRATEGY or bool(config.get(CONFIG_TFJOB))


def hparams_of(custom_config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """custom_config without the distribution keys: the model's hyper-parameters."""
    return {k: v for k, v in dict(custom_config or {}).items() if k not in CONFIG_KEYS}


def tfjob_name(fn_args: Any, prefix: str = "rain-train") -> str:
    """A DNS-1035 TFJob name unique to this Trainer execution (its model_run_dir)."""
    import hashlib

    return f"{prefix}-{hashlib.sha256(str(fn_args.model_run_dir).encode()).hexdigest()[:12]}"


def run_from_config(fn_args: Any):
    """What models.trainer.run_fn calls when `wants_distributed(custom_config)`.

    `custom_config["tfjob"]` (Kubeflow): the TFJob path (`tfjob_trainer`);
    otherwise `train(...)` with the configured workers and strategy.
    """
    config = dict(fn_args.custom_config or {})
    workers, strategy = strategy_from_config(config)
    hparams = hparams_of(config)
    timeout = config.get(CONFIG_TIMEOUT)
    if config.get(CONFIG_TFJOB):
        from components.distributed_training import tfjob_trainer

        tfjob_config = dict(config[CONFIG_TFJOB])
        if timeout:
            tfjob_config.setdefault("timeout_seconds", int(timeout))
        settings = tfjob_trainer.settings_from_config(tfjob_config, tfjob_name(fn_args), workers)
        return tfjob_trainer.train_on_tfjob(fn_args, hparams, settings, tfjob_config["data_root"])
    return train(fn_args, hparams, workers, strategy, timeout_seconds=timeout)
