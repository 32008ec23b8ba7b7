"""A small MLflow layer: one run per pipeline run, its numbers, and the registry.

Plain functions over `mlflow.MlflowClient` (no global `mlflow.start_run`
state, so several runs in one process, the pusher's and the runner's, never
mix). The tracking URI is always given explicitly:

  * `sqlite:///<runs dir>/mlflow/mlflow.db`: the local default, no server;
    artifacts go beside it, to `<runs dir>/mlflow/artifacts/` (see
    `artifact_root_for`).
  * `http://host:5000`: a tracking server (deploy/mlflow), which stores the
    artifacts itself (`--serve-artifacts`).
  * "" or "none": tracking off (`enabled`).

What lands where (names used by the pusher, the runner and the tests):
  params   flattened with dots: `training.learning_rate`, `thresholds.auc.lower_bound`
  metrics  `eval.auc`, `baseline.auc`, `slice.station_seattle.auc`, `naive.persistence.auc`
  tags     `tfx.pipeline_run_id` (the ML Metadata run id), `tf_serving_version`, ...
"""
import contextlib
import json
import os
import re
import urllib.parse
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional

OFF_VALUES = ("", "none", "off")

# Tags (MLflow side) that lead back to TFX / TF Serving.
TAG_PIPELINE_RUN_ID = "tfx.pipeline_run_id"
TAG_PIPELINE_NAME = "tfx.pipeline_name"
TAG_MODEL_NAME = "model_name"
TAG_OUTCOME = "outcome"  # pushed | rejected | already_pushed | data_rejected | failed | cached
TAG_REASON = "reason"
TAG_BLESSED = "blessed"
TAG_PUSHED = "pushed"
TAG_TF_SERVING_VERSION = "tf_serving_version"
TAG_TF_SERVING_PATH = "tf_serving_path"
TAG_SOURCE = "run_source"  # "pusher" or "runner"
TAG_AUC = "AUC"
SERVING_ALIAS = "serving"

_MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH (2.22)
_MAX_TAG_LENGTH = 8000
_BATCH = 100  # params/tags per log_batch call
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class TrackingError(RuntimeError):
    """An MLflow call failed; the message names the tracking URI and the step."""


def enabled(tracking_uri: Optional[str]) -> bool:
    return (tracking_uri or "").strip().lower() not in OFF_VALUES


def default_local_uri(runs_dir: str) -> str:
    """`sqlite:///<runs_dir>/mlflow/mlflow.db` (absolute path: four slashes)."""
    return "sqlite:///" + os.path.join(os.path.abspath(runs_dir), "mlflow", "mlflow.db")


def sqlite_path(tracking_uri: str) -> Optional[str]:
    """The database file of a `sqlite:///` URI, else None.

    `sqlite:////abs/mlflow.db` is absolute, `sqlite:///runs/mlflow.db` relative
    to the working directory (SQLAlchemy's reading).
    """
    if tracking_uri.startswith("sqlite:///"):
        return urllib.parse.unquote(tracking_uri[len("sqlite:///"):].split("?", 1)[0]) or None
    return None


def artifact_root_for(tracking_uri: str) -> Optional[str]:
    """Where a new experiment keeps its artifacts: beside a SQLite store, else the server's choice.

    Without this MLflow would use `./mlruns` of whatever directory the process
    happens to run in.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return None
    return os.path.join(os.path.dirname(os.path.abspath(path)), "artifacts")


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """Keeps the process's logging set-up as it was across MLflow's own.

    Importing mlflow runs `logging.config.dictConfig`, and a new SQLite store
    runs Alembic's migrations, whose env.py calls `logging.config.fileConfig`.
    Both first *close every handler in the process* (`logging.shutdown`);
    absl's handler then closes its stream when that stream is not the current
    sys.stderr (under the runner's quiet console, or a test's capture, it is
    not), and fileConfig also replaces the root logger's handlers (TFX's log
    lines would go elsewhere). So: no handler is closed meanwhile, and the
    root and absl loggers get their handlers and levels back afterwards.
    MLflow's own `mlflow` logger keeps what MLflow configured.
    """
    import logging

    kept = {name: (list(logger.handlers), logger.level)
            for name, logger in (("", logging.getLogger()), ("absl", logging.getLogger("absl")))}
    real_shutdown = logging.shutdown
    logging.shutdown = lambda *args, **kwargs: None
    try:
        yield
    finally:
        logging.shutdown = real_shutdown
        for name, (handlers, level) in kept.items():
            logger = logging.getLogger(name or None)
            logger.handlers[:] = handlers
            logger.setLevel(level)


def import_mlflow() -> None:
    """Imports MLflow (seconds) without letting it change the logging set-up."""
    with _logging_kept():
        import mlflow  # noqa: F401


def client(tracking_uri: str):
    """An MlflowClient for both tracking and registry at `tracking_uri`."""
    with _logging_kept():
        import mlflow

    path = sqlite_path(tracking_uri)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with _logging_kept():
            _build_sqlite_store(tracking_uri)
    elif tracking_uri.startswith(("http://", "https://")):
        # MLflow's defaults retry an unreachable server for minutes (7 retries,
        # exponential backoff, 120 s timeouts); a pusher should give up sooner
        # and push without it. Set these variables to override.
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _build_sqlite_store(tracking_uri: str) -> None:
    """Builds (and caches, as MLflow does) the SQLite store with our artifact root.

    MLflow 2.22 builds a SQLite store with the default artifact root
    `./mlruns` and creates that directory in whatever the working directory
    is (the repository, for `./scripts/run.sh`). MLflow caches the store per
    URI, so building it once here, with the root beside the database, means
    it never does. (That root is only the default experiment's; experiments
    made here get their own, `experiment_id`.)
    """
    from mlflow.tracking._tracking_service import utils as service_utils

    root = _path_uri(artifact_root_for(tracking_uri))
    saved = service_utils.DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    service_utils.DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH = root
    try:
        service_utils._get_store(tracking_uri)
    finally:
        service_utils.DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH = saved


def experiment_id(mlflow_client, tracking_uri: str, name: str) -> str:
    """The id of experiment `name`, created (with its artifact root) if new."""
    from mlflow.exceptions import MlflowException

    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    root = artifact_root_for(tracking_uri)
    location = None
    if root:
        os.makedirs(root, exist_ok=True)
        location = _path_uri(os.path.join(root, _safe_name(name)))
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class Run:
    """One MLflow run, written through an MlflowClient."""

    def __init__(self, tracking_uri: str, mlflow_client, run_id: str, experiment_id_: str):
        self.tracking_uri = tracking_uri
        self.client = mlflow_client
        self.run_id = run_id
        self.experiment_id = experiment_id_

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        items = [Param(_key(k), _text(v, _MAX_PARAM_LENGTH)) for k, v in sorted(flat.items())]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + _BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Numbers only: None, NaN and non-numbers are skipped (they are not metrics)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for key, value in sorted(flatten(metrics).items()):
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, (int, float)) or value != value:
                continue
            items.append(Metric(_key(key), float(value), now, step))
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start:start + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(_key(k), _text(v, _MAX_TAG_LENGTH)) for k, v in sorted(tags.items())
                 if v is not None]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[start:start + _BATCH])

    def log_file(self, path: str, artifact_path: Optional[str] = None) -> None:
        """Logs a local file, or every file of a local directory; remote URIs are copied first."""
        local = _local_copy(path)
        if os.path.isdir(local):
            self.client.log_artifacts(self.run_id, local, artifact_path)
        else:
            self.client.log_artifact(self.run_id, local, artifact_path)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        self.client.log_text(self.run_id, json.dumps(data, indent=2, sort_keys=True, default=str),
                             artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    @property
    def artifact_uri(self) -> str:
        return self.client.get_run(self.run_id).info.artifact_uri


def start_run(tracking_uri: str, experiment: str, run_name: str,
              tags: Optional[Mapping[str, Any]] = None) -> Run:
    """Creates a RUNNING run in experiment `experiment` (created if needed).

    Raises:
      TrackingError: MLflow could not be reached or refused; names the URI.
    """
    try:
        mlflow_client = client(tracking_uri)
        exp_id = experiment_id(mlflow_client, tracking_uri, experiment)
        created = mlflow_client.create_run(
            exp_id, run_name=run_name,
            tags={_key(k): _text(v, _MAX_TAG_LENGTH) for k, v in (tags or {}).items()
                  if v is not None})
    except Exception as error:  # MlflowException, connection errors, SQLite errors
        raise TrackingError(f"MLflow at {redact(tracking_uri)}: could not start a run in "
                            f"experiment {experiment!r}: {type(error).__name__}: {error}") from error
    return Run(tracking_uri, mlflow_client, created.info.run_id, exp_id)


def register_version(run: Run, model_name: str, source: str,
                     tags: Mapping[str, Any], alias: Optional[str] = SERVING_ALIAS) -> str:
    """Registers `source` as a new version of `model_name`, tags it, moves `alias` to it.

    Returns the MLflow model version (a string, as MLflow keeps it).
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = run.client
    try:
        mlflow_client.create_registered_model(model_name)
    except MlflowException as error:
        if getattr(error, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    version = mlflow_client.create_model_version(
        model_name, source, run_id=run.run_id,
        tags={_key(k): _text(v, _MAX_TAG_LENGTH) for k, v in tags.items() if v is not None})
    if alias:
        mlflow_client.set_registered_model_alias(model_name, alias, version.version)
    return str(version.version)


def flatten(data: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": "[1, 2]"}; lists stay one value."""
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value), default=str)
        else:
            flat[name] = value
    return flat


def metric_name(*parts: str) -> str:
    """A valid MLflow key from parts: 'slice', 'station=seattle', 'auc' -> 'slice.station_seattle.auc'."""
    return ".".join(_key(p) for p in parts if p)


def redact(tracking_uri: str) -> str:
    """The URI without a password (http://user:secret@host -> http://user:***@host)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", tracking_uri or "")


def runs_of_pipeline_run(tracking_uri: str, experiment: str, pipeline_run_id: str) -> Iterable:
    """MLflow runs tagged with the TFX pipeline run id (newest first)."""
    mlflow_client = client(tracking_uri)
    exp = mlflow_client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    escaped = pipeline_run_id.replace("'", "\\'")
    return mlflow_client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{TAG_PIPELINE_RUN_ID}` = '{escaped}'",
        order_by=["attributes.start_time DESC"])


def _key(text: Any) -> str:
    key = re.sub(r"[^/\w.\- :]", "_", str(text))
    return key[:250] or "_"


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", name) or "default"


def _path_uri(path: str) -> str:
    from pathlib import Path

    return Path(os.path.abspath(path)).as_uri()


def _local_copy(path: str) -> str:
    """`path` itself when local; a remote file (gs://, s3://) is copied to a temp dir first."""
    if "://" not in path:
        return path
    import tempfile

    from tfx.dsl.io import fileio
    from tfx.utils import io_utils

    target = os.path.join(tempfile.mkdtemp(prefix="mlflow-artifact-"), os.path.basename(path))
    if fileio.isdir(path):
        io_utils.copy_dir(path, target)
    else:
        fileio.copy(path, target)
    return target
