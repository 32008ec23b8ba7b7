"""What every training process needs, as one JSON file (no TensorFlow import).

The launcher (local) or the TFJob generator (Kubeflow) writes a
`TrainingSpec`; each worker process reads it with `--spec PATH`. Paths are
as the workers see them: local paths locally, volume paths in a TFJob.
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

STRATEGIES = ("single", "mirrored", "multi_worker")
DEFAULT_STRATEGY = "single"
# CommunicationOptions(timeout_seconds) of every collective: 0 = off, the
# default. TensorFlow implements it with one new thread per collective op
# that sleeps for the whole timeout; measured here (2 workers, 781 steps,
# timeout 300 s) each worker grew from ~110 to 14,000 threads in 20 s of
# training and died with SIGABRT ("Resource temporarily unavailable").
# A dead or frozen peer is caught without it: TF's coordination service
# (heartbeats, on by default with MultiWorkerMirroredStrategy) aborts the
# collectives of the survivors (measured: 13 s after SIGSTOP), and the
# launcher stops everything on the first failed worker and after its
# overall timeout. Set it (short runs, debugging) via the spec.
DEFAULT_COLLECTIVE_TIMEOUT_SECONDS = 0.0
# Evidence lists every example fingerprint only up to this many per worker.
MAX_LISTED_FINGERPRINTS = 200_000
WORKERS_DIR = "workers"


@dataclasses.dataclass
class TrainingSpec:
    """The Trainer's inputs and outputs plus the training settings.

    Attributes:
      train_files, eval_files: file patterns of the transformed examples
        (gzipped TFRecords), as TFX's FnArgs gives them.
      transform_graph_path: the Transform output directory.
      serving_model_dir: where the chief exports the one SavedModel.
      model_run_dir: TensorBoard logs (chief) and `workers/`: each worker's log
        and evidence JSON.
      train_steps, eval_steps: global steps (each step: one batch per worker).
      hparams: `models.model.HParams` fields; batch_size is PER REPLICA, so
        the global batch is batch_size x the number of replicas (workers).
      collective_timeout_seconds: CommunicationOptions timeout of every
        collective (0 = none, the default; see DEFAULT_COLLECTIVE_TIMEOUT_SECONDS).
      record_examples: each worker records fingerprints of its shard and of
        the examples it batched for training (evidence).
    """

    train_files: List[str]
    eval_files: List[str]
    transform_graph_path: str
    serving_model_dir: str
    model_run_dir: str
    train_steps: int
    eval_steps: int
    hparams: Dict[str, Any] = dataclasses.field(default_factory=dict)
    collective_timeout_seconds: float = DEFAULT_COLLECTIVE_TIMEOUT_SECONDS
    record_examples: bool = True
    tensorboard: bool = True

    def __post_init__(self):
        if self.train_steps <= 0 or self.eval_steps <= 0:
            raise ValueError(f"train_steps and eval_steps must be > 0, got "
                             f"{self.train_steps} and {self.eval_steps}.")

    @classmethod
    def from_fn_args(cls, fn_args: Any, hparams: Dict[str, Any], **settings) -> "TrainingSpec":
        """From TFX's FnArgs (or anything with its attribute names)."""
        return cls(
            train_files=list(fn_args.train_files), eval_files=list(fn_args.eval_files),
            transform_graph_path=fn_args.transform_graph_path,
            serving_model_dir=fn_args.serving_model_dir, model_run_dir=fn_args.model_run_dir,
            train_steps=int(fn_args.train_steps), eval_steps=int(fn_args.eval_steps),
            hparams=dict(hparams), **settings)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    def write(self, path: str) -> str:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as spec_file:
            spec_file.write(self.to_json())
        return path

    @classmethod
    def read(cls, path: str) -> "TrainingSpec":
        with open(path) as spec_file:
            return cls(**json.load(spec_file))

    def workers_dir(self) -> str:
        return os.path.join(self.model_run_dir, WORKERS_DIR)

    def log_path(self, label: str) -> str:
        return os.path.join(self.workers_dir(), f"{label}.log")

    def evidence_path(self, label: str) -> str:
        return os.path.join(self.workers_dir(), f"{label}.evidence.json")


def read_evidence(spec: TrainingSpec, label: str) -> Optional[Dict[str, Any]]:
    path = spec.evidence_path(label)
    if not os.path.exists(path):
        return None
    with open(path) as evidence_file:
        return json.load(evidence_file)
