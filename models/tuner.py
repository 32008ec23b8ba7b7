"""The Tuner's `tuner_fn`: a small random search over the model's hyper-parameters.

Referenced by the pipeline as "models.tuner.tuner_fn" (TFX's Tuner component,
`local_runner.py --tune` / `kubeflow_runner.py --tune`). TFX's Tuner executor
calls `tuner_fn(fn_args)`, runs `tuner.search(**fit_kwargs)` and writes the
best trial's `keras_tuner.HyperParameters` config (`best_hyperparameters.txt`)
and every completed trial's score (`tuner_results.json`); the Trainer receives
the best config as `fn_args.hyperparameters` (see `apply_best_hyperparameters`,
used by `models.trainer.run_fn`).

Search space (`search_space`), 6 trials by default (`--tune-trials`):

  * `hidden_units`: one of "16,8", "32,16", "64,32" (sizes of the hidden
    layers, input side first; a string because KerasTuner's Choice takes
    scalars only);
  * `learning_rate`: Adam's rate, log-uniform in [0.001, 0.01] (around the
    default 0.003);
  * `train_steps`: training batches, one of 200, 400, 600, 800.

Everything else (batch size, embedding width, seed) comes from the Tuner's
custom_config, i.e. the runner's flags, as for the Trainer.

Each trial is a fresh `models.model.build_model` (tf_keras, the same builder,
input function and seeding as the Trainer), trained for the trial's
`train_steps` on the train split and scored by its AUC on `eval_steps`
batches of the eval split (Keras' `val_auc`); the search maximises it. The
oracle is KerasTuner's random search seeded with the `seed` setting (plus 1:
KerasTuner reads a seed of 0 as "random"), so the same data and seed try the
same trials in the same order and, with TensorFlow's op determinism, score
them the same.

KerasTuner 1.4 is written for Keras 3 while the model is a `tf_keras` model:
`RainTuner` therefore subclasses KerasTuner's `BaseTuner` (oracle, trial
book-keeping, no Keras) and trains the model itself in `run_trial`; nothing
of ours goes through Keras 3.
"""
import logging
import time
from typing import Any, Dict, Mapping, Optional, Tuple

import keras_tuner
from tfx import v1 as tfx

from components import distributed_training
from models import model as model_lib
from models import trainer as trainer_lib

# The objective: the validation AUC Keras reports after a trial's epoch.
OBJECTIVE = "val_auc"
DEFAULT_TRIALS = 6
PROJECT_NAME = "rain_tomorrow_tuning"
# Keys of the Tuner's custom_config beyond the model's hyper-parameters.
CONFIG_TRIALS = "tune_trials"

HIDDEN_UNITS = "hidden_units"
LEARNING_RATE = "learning_rate"
TRAIN_STEPS = "train_steps"
HIDDEN_UNITS_CHOICES = ("16,8", "32,16", "64,32")
LEARNING_RATE_RANGE = (1e-3, 1e-2)
TRAIN_STEPS_RANGE = (200, 800, 200)  # min, max, step


def search_space() -> keras_tuner.HyperParameters:
    """The hyper-parameters the search draws from (see the module docstring)."""
    hp = keras_tuner.HyperParameters()
    hp.Choice(HIDDEN_UNITS, list(HIDDEN_UNITS_CHOICES))
    hp.Float(LEARNING_RATE, *LEARNING_RATE_RANGE, sampling="log")
    low, high, step = TRAIN_STEPS_RANGE
    hp.Int(TRAIN_STEPS, low, high, step=step)
    return hp


def hidden_units_of(text: str) -> Tuple[int, ...]:
    """'32,16' -> (32, 16)."""
    try:
        units = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise ValueError(f"hidden_units {text!r}: expected comma-separated layer sizes") from None
    return units


def trial_settings(values: Mapping[str, Any], base_config: Optional[Mapping[str, Any]],
                   train_steps: Optional[int]) -> Tuple[Dict[str, Any], Optional[int]]:
    """(custom_config, train_steps) with tuned `values` over the given ones.

    Args:
      values: a HyperParameters' values, e.g. {"hidden_units": "64,32",
        "learning_rate": 0.004, "train_steps": 600}; absent keys keep the
        base values.
      base_config: the component's custom_config (flags).
      train_steps: the component's train_args.num_steps.
    """
    config = dict(base_config or {})
    if values.get(HIDDEN_UNITS) is not None:
        config[HIDDEN_UNITS] = list(hidden_units_of(values[HIDDEN_UNITS]))
    if values.get(LEARNING_RATE) is not None:
        config[LEARNING_RATE] = float(values[LEARNING_RATE])
    if values.get(TRAIN_STEPS) is not None:
        train_steps = int(values[TRAIN_STEPS])
    return config, train_steps


def apply_best_hyperparameters(fn_args: Any) -> Tuple[Dict[str, Any], Optional[int]]:
    """What the Trainer trains with: the Tuner's best values over the flags.

    `fn_args.hyperparameters` is the `HyperParameters.get_config()` dict TFX's
    Trainer reads from the Tuner's `best_hyperparameters` ({"space": [...],
    "values": {...}}); None (no Tuner) leaves custom_config and train_steps
    as they are. The tuned `train_steps` replaces the Trainer's
    train_args.num_steps (`--train-steps`).

    Raises:
      ValueError: the config has no "values" dict (not a HyperParameters config).
    """
    config = fn_args.hyperparameters
    if not config:
        return dict(fn_args.custom_config or {}), fn_args.train_steps
    values = config.get("values") if isinstance(config, Mapping) else None
    if not isinstance(values, Mapping):
        raise ValueError(
            "The Trainer's hyperparameters input is not a KerasTuner HyperParameters config "
            f"(no 'values' mapping): {config!r}")
    return trial_settings(values, fn_args.custom_config, fn_args.train_steps)


class RainTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """A KerasTuner tuner whose trials train the tf_keras model of models/model.py.

    `search(train_files, eval_files, data_accessor, transform_graph_path,
    eval_steps)` runs the oracle's trials; each returns {"val_auc", "val_loss",
    "auc", "seconds"} (the objective is "val_auc").
    """

    def __init__(self, base_config: Optional[Mapping[str, Any]], max_trials: int, seed: int,
                 directory: str, verbose: int = 0):
        # KerasTuner's oracle takes a seed of 0 for "no seed" (`seed or
        # random.randint(...)`): seed + 1 keeps --seed 0 repeatable.
        oracle = keras_tuner.oracles.RandomSearchOracle(
            objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
            max_trials=max_trials, seed=seed + 1, hyperparameters=search_space(),
            allow_new_entries=False, tune_new_entries=False)
        super().__init__(oracle, hypermodel=None, directory=directory,
                         project_name=PROJECT_NAME, overwrite=True)
        self.base_config = dict(base_config or {})
        self.verbose = verbose

    def run_trial(self, trial, train_files, eval_files, data_accessor, transform_graph_path,
                  eval_steps, **unused):
        import tensorflow_transform as tft

        config, train_steps = trial_settings(trial.hyperparameters.values, self.base_config, None)
        hparams = model_lib.HParams.from_config(config)
        started = time.monotonic()
        tft_output = tft.TFTransformOutput(transform_graph_path)
        trainer_lib.make_deterministic(hparams.seed)
        train = trainer_lib.input_fn(train_files, data_accessor, tft_output, hparams.batch_size,
                                     hparams.seed)
        evaluation = trainer_lib.input_fn(eval_files, data_accessor, tft_output,
                                          hparams.batch_size, hparams.seed)
        model = model_lib.build_model(tft_output, hparams)
        history = model_lib.train_model(model, train, evaluation, train_steps=train_steps,
                                        eval_steps=eval_steps, verbose=self.verbose)
        metrics = {name: float(values[-1]) for name, values in history.history.items()
                   if name in (OBJECTIVE, "val_loss", "auc")}
        metrics["seconds"] = time.monotonic() - started
        logging.info("Tuning trial %s: hidden_units %s, learning_rate %.5f, train_steps %d -> "
                     "val AUC %.4f (%.1f s)", trial.trial_id, list(hparams.hidden_units),
                     hparams.learning_rate, train_steps, metrics[OBJECTIVE], metrics["seconds"])
        return metrics

    def on_search_end(self):
        """A search whose every trial failed is an error, with the first failure's traceback."""
        trials = list(self.oracle.trials.values())
        if not any(t.status == keras_tuner.engine.trial.TrialStatus.COMPLETED for t in trials):
            message = next((t.message for t in trials if t.message), "no trial ran")
            raise RuntimeError(f"Tuning: none of {len(trials)} trials completed; "
                               f"the first failure:\n{message}")


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """Builds the tuner and its search arguments, as TFX's Tuner executor asks.

    Args:
      fn_args: the Tuner's arguments: train_files, eval_files, eval_steps,
        transform_graph_path, data_accessor, working_dir (the oracle's files),
        custom_config (the Trainer's hyper-parameters from the flags plus
        `tune_trials`, default 6; distribution keys are ignored: trials train
        in the Tuner's process). train_steps is not used: it is tuned.

    Raises:
      ValueError: no eval_steps, no transform graph, or tune_trials < 1.
    """
    if not fn_args.eval_steps:
        raise ValueError("The Tuner needs eval_args.num_steps > 0: trials are scored on that "
                         "many eval batches (the dataset repeats forever).")
    if not fn_args.transform_graph_path:
        raise ValueError("The Tuner needs the Transform graph (transform_graph input): trials "
                         "transform the raw examples with it.")
    config = distributed_training.hparams_of(fn_args.custom_config)
    trials = int(config.pop(CONFIG_TRIALS, DEFAULT_TRIALS))
    if trials < 1:
        raise ValueError(f"tune_trials must be >= 1, got {trials}.")
    seed = int(config.get("seed") or 0)
    tuner = RainTuner(config, max_trials=trials, seed=seed, directory=fn_args.working_dir)
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "train_files": fn_args.train_files,
            "eval_files": fn_args.eval_files,
            "data_accessor": fn_args.data_accessor,
            "transform_graph_path": fn_args.transform_graph_path,
            "eval_steps": fn_args.eval_steps,
        },
    )
