"""Command-line settings both runners share, turned into a PipelineConfig.

Each runner adds its own flags (paths, image, endpoint) and calls
`add_shared_flags` + `pipeline_config_from_flags`, so the training,
threshold and Beam settings are defined once.
"""
import argparse
import math
import os
import tempfile
from typing import Optional, Tuple

from pipeline.config import (
    DEFAULT_MODEL_NAME,
    DEFAULT_PIPELINE_NAME,
    SLICE_GATE_MODES,
    BlessingThresholds,
    PipelineConfig,
    TrainingConfig,
    beam_args,
)

_TRAINING_DEFAULTS = TrainingConfig()
_PIPELINE_DEFAULTS = PipelineConfig(pipeline_root="", curated_root="", schema_path="", serving_base="")
_THRESHOLD_DEFAULTS = BlessingThresholds()


def add_shared_flags(parser: argparse.ArgumentParser, default_beam_workers: int) -> None:
    """Adds pipeline, training, threshold and Beam flags to `parser`."""
    group = parser.add_argument_group("pipeline")
    group.add_argument("--pipeline-name", default=DEFAULT_PIPELINE_NAME)
    group.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    group.add_argument("--span-window", type=positive_int, default=1,
                       help="number of latest curated spans to read (1 = latest only)")
    group.add_argument("--no-cache", action="store_true", help="disable TFX caching")
    group.add_argument("--split", choices=("time", "hash"), default=_PIPELINE_DEFAULTS.split,
                       help="train/eval split of each span: 'time' (default) = per station, the "
                            "earliest 2/3 of its dates train and the latest 1/3 evaluate; 'hash' "
                            "= TFX's 2:1 hash of the date (neighbouring days in both splits)")
    group.add_argument("--keep-versions", type=_keep_versions, default=_PIPELINE_DEFAULTS.keep_versions,
                       help="newest model versions kept in the serving directory after a push "
                            "(at least 2, so the version being served is never removed before "
                            "the server has loaded its successor; 0 = keep all)")
    group = parser.add_argument_group("training")
    group.add_argument("--train-steps", type=positive_int, default=_TRAINING_DEFAULTS.train_steps)
    group.add_argument("--eval-steps", type=positive_int, default=_TRAINING_DEFAULTS.eval_steps)
    group.add_argument("--batch-size", type=positive_int, default=_TRAINING_DEFAULTS.batch_size)
    group.add_argument("--learning-rate", type=positive_float, default=_TRAINING_DEFAULTS.learning_rate)
    group.add_argument("--hidden-units", type=hidden_units,
                       default=_TRAINING_DEFAULTS.hidden_units,
                       help="comma-separated positive layer sizes, e.g. 32,16")
    group.add_argument("--seed", type=non_negative_int, default=_TRAINING_DEFAULTS.seed,
                       help="seeds weight initialisation and the input shuffle (TF ops deterministic): "
                            "the same seed and data train the same model")
    group.add_argument("--train-workers", type=positive_int, default=_TRAINING_DEFAULTS.train_workers,
                       help="training processes: 1 = the Trainer's own process; N > 1 = "
                            "MultiWorkerMirroredStrategy across N worker processes (locally on "
                            "127.0.0.1; on Kubeflow a TFJob of 1 Chief + N-1 Workers, which needs the "
                            "Kubeflow Training Operator; docs/distributed_training.md)")
    group.add_argument("--train-strategy", choices=("single", "mirrored"), default="single",
                       help="with one training process: 'single' (TensorFlow's default strategy) "
                            "or 'mirrored' (MirroredStrategy over this machine's devices, e.g. "
                            "several GPUs); --train-workers N > 1 implies MultiWorkerMirroredStrategy")
    group.add_argument("--train-timeout", type=positive_int,
                       default=_TRAINING_DEFAULTS.train_timeout_seconds,
                       help="seconds a multi-worker training may take before its workers are stopped")
    group.add_argument("--tune", action="store_true",
                       help="run TFX's Tuner (KerasTuner random search over hidden units, learning "
                            "rate and train steps, models/tuner.py) before the Trainer, which then "
                            "trains with the best values found instead of --hidden-units, "
                            "--learning-rate and --train-steps")
    group.add_argument("--tune-trials", type=positive_int, default=None,
                       help=f"trials of the --tune search (default {_PIPELINE_DEFAULTS.tune_trials})")
    group = parser.add_argument_group("blessing thresholds")
    group.add_argument("--min-auc", type=auc_floor, default=_THRESHOLD_DEFAULTS.min_auc,
                       help="absolute AUC floor, 0 < value <= 1")
    group.add_argument("--max-auc-decrease", type=non_negative_float,
                       default=_THRESHOLD_DEFAULTS.max_auc_decrease,
                       help="how far below the latest blessed model's AUC a candidate may be")
    group.add_argument("--min-eval-examples", type=positive_int,
                       default=_THRESHOLD_DEFAULTS.min_eval_examples,
                       help="fewest eval examples a blessing may rest on")
    group.add_argument("--slice-gates", choices=SLICE_GATE_MODES,
                       default=_THRESHOLD_DEFAULTS.slice_gates,
                       help="per-station gates: 'block' (default) refuses the blessing when a "
                            "station slice's AUC is below --min-slice-auc or undefined (one "
                            "class); 'warn' only reports it; 'off' checks no station")
    group.add_argument("--min-slice-auc", type=auc_floor, default=None,
                       help="AUC floor of each station slice, 0 < value <= 1 "
                            "(default: the overall --min-auc)")
    group.add_argument("--min-slice-size", type=positive_int,
                       default=_THRESHOLD_DEFAULTS.min_slice_size,
                       help="fewest eval examples a station slice needs to be gated; smaller "
                            "slices are reported as too small to gate")
    group.add_argument("--min-margin-over-persistence", type=persistence_margin,
                       default=_THRESHOLD_DEFAULTS.min_margin_over_persistence,
                       help="the candidate's overall eval AUC must be >= the persistence "
                            "baseline's ('rain tomorrow if it rained today') + this margin to be "
                            "blessed; negative: may be that much below; 'off': the naive "
                            "baselines are reported only (default 0.0: at least as good as "
                            "persistence; docs/slice_gates.md)")
    group = parser.add_argument_group("experiment tracking")
    group.add_argument("--mlflow-tracking-uri", default=None, metavar="URI",
                       help="MLflow tracking URI the pusher logs every run to and registers "
                            "every pushed version in: sqlite:///path/mlflow.db, or a tracking "
                            "server's http(s):// URL; 'none' turns tracking off (default: "
                            "the runner's, see README 'Experiment tracking (MLflow)')")
    group = parser.add_argument_group("beam")
    group.add_argument("--beam-workers", type=beam_workers, default=default_beam_workers,
                       help="0 = in-memory DirectRunner; N = N worker processes; 'auto' = "
                            f"{AUTO_BEAM_WORKERS} worker processes when the latest curated "
                            f"span has >= {AUTO_MIN_ROWS:,} rows and the machine >= "
                            f"{AUTO_BEAM_WORKERS} cores, else in-memory (default: "
                            f"{default_beam_workers})")
    group.add_argument("--beam-arg", action="append", default=[],
                       help="extra Beam pipeline option, repeatable")


def _number(text: str, kind):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value}: must be > 0")
    return value


AUTO = "auto"
# Measured at 1M rows on 2 cores (benchmarks/results/results.md): in-memory
# ExampleGen->Transform 114 s, two worker processes 72.5 s (peak RSS 2.9 GB);
# on the bundled 1,461 rows the workers' start-up costs more than they gain.
AUTO_BEAM_WORKERS = 2
AUTO_MIN_ROWS = 250_000


def beam_workers(text: str):
    """--beam-workers: a count >= 0, or 'auto' (see `resolve_beam_workers`)."""
    return AUTO if text == AUTO else non_negative_int(text)


def latest_span_rows(curated_root: str) -> int:
    """Rows of the highest `span-<N>` under a local `curated_root` (Parquet footers
    only); 0 when there is none or the root is not a local directory."""
    import glob
    import re

    spans = [(int(m.group(1)), path) for path in glob.glob(os.path.join(curated_root, "span-*"))
             if (m := re.fullmatch(r"span-(\d+)", os.path.basename(path)))]
    if not spans:
        return 0
    import pyarrow.parquet as pq

    _, latest = max(spans)
    return sum(pq.read_metadata(path).num_rows
               for path in glob.glob(os.path.join(latest, "*.parquet")))


def resolve_beam_workers(value, curated_root: str) -> int:
    """The worker count for `--beam-workers value`: 'auto' picks by the data size."""
    if value != AUTO:
        return value
    if (os.cpu_count() or 1) < AUTO_BEAM_WORKERS:
        return 0
    return AUTO_BEAM_WORKERS if latest_span_rows(curated_root) >= AUTO_MIN_ROWS else 0


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 0")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g}: must be > 0")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g}: must be >= 0")
    return value


def auc_floor(text: str) -> float:
    """An AUC floor: AUC lies in [0, 1], so a floor above 1 can never bless."""
    value = _number(text, float)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{value:g}: an AUC lies in [0, 1], so the floor must be > 0 and <= 1")
    return value


def persistence_margin(text: str) -> Optional[float]:
    """A margin over the persistence baseline's AUC in [-1, 1], or 'off' (None)."""
    if str(text).strip().lower() == "off":
        return None
    value = _number(text, float)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{value:g}: an AUC difference lies in [-1, 1] (or give 'off')")
    return value


def hidden_units(text: str) -> Tuple[int, ...]:
    """'32,16' -> (32, 16); every size a positive integer, at least one."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give comma-separated positive layer sizes, e.g. 32,16")
    sizes = []
    for part in parts:
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} in {text!r} is not an integer layer size") from None
        if size <= 0:
            raise argparse.ArgumentTypeError(f"{size} in {text!r}: layer sizes must be > 0")
        sizes.append(size)
    return tuple(sizes)


def unwritable_reason(path: str) -> Optional[str]:
    """Why files cannot be created under directory `path` (None: they can).

    The path itself or, if it does not exist yet, its nearest existing
    ancestor is probed by creating (and removing) a temporary file, which
    also catches read-only file systems and a file where a directory is
    needed. Nothing is left behind.
    """
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".write-probe-"):
            pass
    except OSError as error:
        return f"cannot create files in {probe} ({error.strerror or error})"
    return None


def _keep_versions(text: str) -> int:
    value = _number(text, int)
    if value != 0 and value < 2:
        raise argparse.ArgumentTypeError(
            f"{value}: keep at least 2 versions (the served one and its successor), or 0 for all")
    return value


def mlflow_uri_flag(value: Optional[str]) -> str:
    """--mlflow-tracking-uri as the pipeline takes it: "" for none/off/unset."""
    value = (value or "").strip()
    return "" if value.lower() in ("", "none", "off") else value


def check_shared_flags(parser: argparse.ArgumentParser, flags: argparse.Namespace) -> None:
    """Rules across shared flags (argparse types check one flag at a time)."""
    if flags.train_strategy != "single" and flags.train_workers > 1:
        parser.error(f"--train-strategy {flags.train_strategy} trains in one process; "
                     f"--train-workers {flags.train_workers} trains across processes with "
                     "MultiWorkerMirroredStrategy: give one or the other")
    if getattr(flags, "tune_trials", None) is not None and not getattr(flags, "tune", False):
        parser.error(f"--tune-trials {flags.tune_trials} sets the size of the --tune search: "
                     "add --tune, or drop --tune-trials")


def pipeline_config_from_flags(
    flags: argparse.Namespace,
    *,
    pipeline_root: str,
    curated_root: str,
    schema_path: str,
    serving_base: str,
    server_model_base_path: str = None,
    drift_history_root: str = None,
    tfjob: Optional[dict] = None,
) -> PipelineConfig:
    """The PipelineConfig for parsed shared flags plus runner-resolved paths."""
    return PipelineConfig(
        pipeline_root=pipeline_root,
        curated_root=curated_root,
        schema_path=schema_path,
        serving_base=serving_base,
        server_model_base_path=server_model_base_path,
        pipeline_name=flags.pipeline_name,
        model_name=flags.model_name,
        span_window=flags.span_window,
        training=TrainingConfig(
            train_steps=flags.train_steps,
            eval_steps=flags.eval_steps,
            batch_size=flags.batch_size,
            learning_rate=flags.learning_rate,
            hidden_units=(hidden_units(flags.hidden_units) if isinstance(flags.hidden_units, str)
                          else tuple(flags.hidden_units)),
            seed=flags.seed,
            train_workers=getattr(flags, "train_workers", _TRAINING_DEFAULTS.train_workers),
            train_strategy=getattr(flags, "train_strategy", _TRAINING_DEFAULTS.train_strategy),
            train_timeout_seconds=getattr(flags, "train_timeout",
                                          _TRAINING_DEFAULTS.train_timeout_seconds),
            tfjob=tfjob,
        ),
        thresholds=BlessingThresholds(
            min_auc=flags.min_auc, max_auc_decrease=flags.max_auc_decrease,
            min_eval_examples=getattr(flags, "min_eval_examples",
                                      _THRESHOLD_DEFAULTS.min_eval_examples),
            min_slice_auc=getattr(flags, "min_slice_auc", _THRESHOLD_DEFAULTS.min_slice_auc),
            min_slice_size=getattr(flags, "min_slice_size", _THRESHOLD_DEFAULTS.min_slice_size),
            slice_gates=getattr(flags, "slice_gates", _THRESHOLD_DEFAULTS.slice_gates),
            min_margin_over_persistence=getattr(
                flags, "min_margin_over_persistence",
                _THRESHOLD_DEFAULTS.min_margin_over_persistence),
        ),
        beam_pipeline_args=tuple(beam_args(resolve_beam_workers(flags.beam_workers, curated_root),
                                           tuple(flags.beam_arg))),
        enable_cache=not flags.no_cache,
        keep_versions=flags.keep_versions,
        split=getattr(flags, "split", _PIPELINE_DEFAULTS.split),
        drift_history_root=drift_history_root,
        tune=getattr(flags, "tune", False),
        tune_trials=getattr(flags, "tune_trials", None) or _PIPELINE_DEFAULTS.tune_trials,
        mlflow_tracking_uri=mlflow_uri_flag(getattr(flags, "mlflow_tracking_uri", None)),
    )
