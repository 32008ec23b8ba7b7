"""Typed pipeline settings shared by the local and the Kubeflow runner.

Runners build one `PipelineConfig` (from flags) and hand it to
`pipeline.pipeline.create_pipeline`; nothing here reads the environment.
"""
import dataclasses
import sys
from typing import Any, Dict, List, Optional, Tuple

DEFAULT_PIPELINE_NAME = "rain-tomorrow"
DEFAULT_MODEL_NAME = "rain_tomorrow"


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Trainer settings: steps and the model's hyper-parameters."""

    train_steps: int = 500
    eval_steps: int = 100
    batch_size: int = 64
    learning_rate: float = 0.003
    hidden_units: Tuple[int, ...] = (32, 16)
    seed: int = 0
    # Data-parallel training (components/distributed_training, docs/distributed_training.md):
    # N > 1 trains with MultiWorkerMirroredStrategy across N processes, locally
    # on 127.0.0.1 or, with `tfjob`, as a TFJob of 1 Chief + N-1 Workers.
    train_workers: int = 1
    # With one process: "single" (TensorFlow's default strategy) or "mirrored".
    train_strategy: str = "single"
    train_timeout_seconds: int = 3600
    # Kubeflow only: {"namespace", "image", "data_root", "data_claim",
    # "resources": [cpu_request, memory_request_gb, cpu_limit, memory_limit_gb]}.
    tfjob: Optional[Dict[str, Any]] = None

    def custom_config(self) -> dict:
        """Hyper-parameters as the Trainer's `custom_config` (JSON-friendly)."""
        config = {
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "hidden_units": list(self.hidden_units),
            "seed": self.seed,
        }
        # Only when asked for: plain single-process runs keep their cache keys.
        if self.train_strategy != "single":
            config["train_strategy"] = self.train_strategy
        if self.train_workers > 1:
            config["train_workers"] = self.train_workers
            config["train_timeout_seconds"] = self.train_timeout_seconds
            if self.tfjob:
                config["tfjob"] = dict(self.tfjob)
        return config


@dataclasses.dataclass(frozen=True)
class BlessingThresholds:
    """When the Evaluator blesses a candidate model.

    Attributes:
      min_auc: absolute floor on the candidate's eval AUC.
      max_auc_decrease: how much lower than the latest blessed model's AUC the
        candidate may score and still be blessed (0 = must not be worse).
      min_eval_examples: fewest eval examples a blessing may rest on; fewer
        and the candidate is not blessed (its metrics mean little).
      min_slice_auc: AUC floor for each station slice (None: `min_auc`).
      min_slice_size: fewest eval examples a station slice needs to be
        gated; smaller slices are reported as too small to gate.
      slice_gates: what a station slice below its floor (or of one class,
        AUC undefined) does: "block" refuses the blessing, "warn" only
        reports it, "off" checks no station slice.
      min_margin_over_persistence: how far above the persistence baseline's
        eval AUC ("rain tomorrow if it rained today",
        components/naive_baselines) the candidate's overall AUC must be to
        be blessed; negative lets it be that much below; None ("off"): the
        naive baselines are reported only.
    """

    min_auc: float = 0.65
    max_auc_decrease: float = 0.01
    min_eval_examples: int = 100
    min_slice_auc: Optional[float] = None
    min_slice_size: int = 50
    slice_gates: str = "block"
    min_margin_over_persistence: Optional[float] = 0.0

    def __post_init__(self):
        if self.slice_gates not in SLICE_GATE_MODES:
            raise ValueError(f"slice_gates {self.slice_gates!r}: one of {', '.join(SLICE_GATE_MODES)}")

    @property
    def slice_auc_floor(self) -> float:
        """The station slices' AUC floor: `min_slice_auc`, else the overall `min_auc`."""
        return self.min_auc if self.min_slice_auc is None else self.min_slice_auc


SLICE_GATE_MODES = ("block", "warn", "off")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything `create_pipeline` needs; paths may be local or remote URIs.

    Attributes:
      pipeline_root: where TFX writes artifacts.
      curated_root: the Spark job's `curated/` directory (holds span-<N>/).
      schema_path: the curated schema file imported by ImportSchemaGen.
      serving_base: TF Serving base directory; models land in
        `<serving_base>/<model_name>/<version>/`.
      server_model_base_path: the model directory as TF Serving sees it (for
        `models.config`); defaults to `<serving_base>/<model_name>`.
      span_window: how many of the latest spans ExampleGen reads (1 = latest).
      beam_pipeline_args: Beam options for every Beam-based component.
      keep_versions: how many of the newest versions the pusher keeps in the
        serving directory; older ones are removed after a push (0 = keep all).
      drift_history_root: the statistics history's directory (both runners:
        `<data dir>/drift_history`, on Kubeflow on the data volume); when
        set, a DriftValidator compares each new span's statistics with the
        previous recorded span's (schema drift comparators) before the
        AnomalyGate and records the span if it did not drift. None: no
        drift node.
      tune: run TFX's Tuner (models/tuner.py) before the Trainer, which then
        trains with the best hyper-parameters it found.
      tune_trials: how many trials the Tuner's random search runs.
      mlflow_tracking_uri: where the pusher logs each run and registers each
        pushed version (components/experiment_tracking): a `sqlite:///` file,
        a tracking server's `http://` URL, or "" for no tracking.
    """

    pipeline_root: str
    curated_root: str
    schema_path: str
    serving_base: str
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    model_name: str = DEFAULT_MODEL_NAME
    server_model_base_path: Optional[str] = None
    span_window: int = 1
    training: TrainingConfig = TrainingConfig()
    thresholds: BlessingThresholds = BlessingThresholds()
    beam_pipeline_args: Tuple[str, ...] = ()
    enable_cache: bool = True
    keep_versions: int = 5
    # How ExampleGen splits train/eval (components/parquet_example_gen):
    # "time" = per station, the earliest 2/3 of its dates train and the rest
    # evaluate; "hash" = TFX's hash of the date (neighbouring days in both).
    split: str = "time"
    drift_history_root: Optional[str] = None
    tune: bool = False
    tune_trials: int = 6
    mlflow_tracking_uri: str = ""


def beam_args(num_workers: int = 0, extra: Tuple[str, ...] = ()) -> List[str]:
    """Beam DirectRunner options.

    In-memory is the default because worker processes cost more than they
    gain on small data; multi-processing pays off from about a million rows.

    Args:
      num_workers: 0 for in-memory, N >= 1 for N worker processes.
      extra: further Beam options appended as given.
    """
    if num_workers <= 0:
        args = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    else:
        args = [
            "--direct_running_mode=multi_processing",
            f"--direct_num_workers={num_workers}",
        ]
    return args + list(extra) + _direct_runner_dependency_flag(extra)


# Beam options with which TFX's executors take the workers' dependencies as
# given (tfx/utils/dependency_utils.make_beam_dependency_flags); without one,
# every Beam component builds an sdist of the installed TFX at start-up (about
# 1-2 s per component on a quiet machine, a minute under load), which only
# remote runners use.
_DEPENDENCY_FLAGS = ("--extra_package", "--extra_packages", "--setup_file",
                     "--requirements_file", "--worker_harness_container_image",
                     "--sdk_container_image")


def _direct_runner_dependency_flag(extra: Tuple[str, ...]) -> List[str]:
    """`--sdk_container_image` when the runner stays the DirectRunner.

    DirectRunner workers (threads, or subprocesses of this interpreter) use
    this environment and never read the option; it only tells TFX not to
    package itself. Any other `--runner` or a dependency flag of the caller's
    leaves the decision to TFX and the caller.
    """
    runners = [arg.split("=", 1)[1] for arg in extra if arg.startswith("--runner=")]
    if any(runner not in ("DirectRunner", "direct") for runner in runners):
        return []
    if any(arg.split("=", 1)[0] in _DEPENDENCY_FLAGS for arg in extra):
        return []
    from apache_beam.version import __version__ as beam_version

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return [f"--sdk_container_image=apache/beam_python{python}_sdk:{beam_version}"]
