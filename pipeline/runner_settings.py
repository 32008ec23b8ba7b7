"""Command-line settings both runners share, turned into a PipelineConfig.

Each runner adds its own flags (paths, image, endpoint) and calls
`add_shared_flags` + `pipeline_config_from_flags`, so the training,
threshold and Beam settings are defined once.
"""
import argparse

from pipeline.config import (
    DEFAULT_MODEL_NAME,
    DEFAULT_PIPELINE_NAME,
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
    group.add_argument("--span-window", type=int, default=1,
                       help="number of latest curated spans to read (1 = latest only)")
    group.add_argument("--no-cache", action="store_true", help="disable TFX caching")
    group.add_argument("--keep-versions", type=_keep_versions, default=_PIPELINE_DEFAULTS.keep_versions,
                       help="newest model versions kept in the serving directory after a push "
                            "(at least 2, so the version being served is never removed before "
                            "the server has loaded its successor; 0 = keep all)")
    group = parser.add_argument_group("training")
    group.add_argument("--train-steps", type=int, default=_TRAINING_DEFAULTS.train_steps)
    group.add_argument("--eval-steps", type=int, default=_TRAINING_DEFAULTS.eval_steps)
    group.add_argument("--batch-size", type=int, default=_TRAINING_DEFAULTS.batch_size)
    group.add_argument("--learning-rate", type=float, default=_TRAINING_DEFAULTS.learning_rate)
    group.add_argument("--hidden-units", default=",".join(map(str, _TRAINING_DEFAULTS.hidden_units)),
                       help="comma-separated layer sizes, e.g. 32,16")
    group.add_argument("--seed", type=int, default=_TRAINING_DEFAULTS.seed,
                       help="seeds weight initialisation, so a run is repeatable")
    group = parser.add_argument_group("blessing thresholds")
    group.add_argument("--min-auc", type=float, default=_THRESHOLD_DEFAULTS.min_auc)
    group.add_argument("--max-auc-decrease", type=float, default=_THRESHOLD_DEFAULTS.max_auc_decrease,
                       help="how far below the latest blessed model's AUC a candidate may be")
    group = parser.add_argument_group("beam")
    group.add_argument("--beam-workers", type=int, default=default_beam_workers,
                       help="0 = in-memory DirectRunner; N = N worker processes")
    group.add_argument("--beam-arg", action="append", default=[],
                       help="extra Beam pipeline option, repeatable")


def _keep_versions(text: str) -> int:
    value = int(text)
    if value != 0 and value < 2:
        raise argparse.ArgumentTypeError(
            f"{value}: keep at least 2 versions (the served one and its successor), or 0 for all")
    return value


def pipeline_config_from_flags(
    flags: argparse.Namespace,
    *,
    pipeline_root: str,
    curated_root: str,
    schema_path: str,
    serving_base: str,
    server_model_base_path: str = None,
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
            hidden_units=tuple(int(u) for u in flags.hidden_units.split(",") if u),
            seed=flags.seed,
        ),
        thresholds=BlessingThresholds(
            min_auc=flags.min_auc, max_auc_decrease=flags.max_auc_decrease
        ),
        beam_pipeline_args=tuple(beam_args(flags.beam_workers, tuple(flags.beam_arg))),
        enable_cache=not flags.no_cache,
        keep_versions=flags.keep_versions,
    )
