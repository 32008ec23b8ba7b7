"""Starts the prediction service.

  python -m serving --serving-base runs/serving [--model-name rain_tomorrow] [--port 8000]
  python -m serving --backend tfserving --tf-serving-url http://rain-tomorrow-serving:8501 \
      [--serving-base /models]

Binds 127.0.0.1 unless --host says otherwise (the container sets 0.0.0.0).
"""
import argparse
import dataclasses
import logging
import os
import sys
from typing import List, Optional

from serving.api import ApiConfig, create_app
from serving.backend import Backend

INPROCESS, TFSERVING = "inprocess", "tfserving"


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Everything the command line decides, built once at the entry point."""

    serving_base: Optional[str]
    model_name: str
    host: str
    port: int
    backend: str
    tf_serving_url: Optional[str]
    poll_seconds: float
    api: ApiConfig

    @property
    def model_dir(self) -> Optional[str]:
        return os.path.join(self.serving_base, self.model_name) if self.serving_base else None


def parse_flags(argv: Optional[List[str]]) -> ServiceConfig:
    """Flags -> ServiceConfig; exits with a usage message when they do not fit."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("--serving-base", help="the pusher's serving directory (required for "
                        "inprocess; optional for tfserving: metadata and vocabularies)")
    parser.add_argument("--model-name", default="rain_tomorrow")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=[INPROCESS, TFSERVING], default=INPROCESS)
    parser.add_argument("--tf-serving-url", help="e.g. http://rain-tomorrow-serving:8501")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="how often to look for a new model version")
    parser.add_argument("--max-days", type=int, default=ApiConfig.max_days)
    parser.add_argument("--max-rows", type=int, default=ApiConfig.max_rows)
    parser.add_argument("--max-body-bytes", type=int, default=ApiConfig.max_body_bytes)
    parser.add_argument("--skew-window", type=int, default=ApiConfig.skew_window,
                        help="feature rows sent to the model kept for GET /v1/skew (0: off)")
    parser.add_argument("--skew-min-rows", type=int, default=ApiConfig.skew_min_rows,
                        help="fewer rows in the window: /v1/skew reports too_few_rows")
    flags = parser.parse_args(argv)
    if flags.skew_window < 0:
        parser.error(f"--skew-window must be >= 0 (0: off), got {flags.skew_window}")
    if flags.skew_min_rows < 1:
        parser.error(f"--skew-min-rows must be >= 1, got {flags.skew_min_rows}")
    if flags.skew_window and flags.skew_min_rows > flags.skew_window:
        parser.error(f"--skew-min-rows {flags.skew_min_rows} is larger than --skew-window "
                     f"{flags.skew_window}: the window could never hold enough rows")
    if flags.backend == INPROCESS and not flags.serving_base:
        parser.error("--backend inprocess needs --serving-base")
    if flags.backend == TFSERVING and not flags.tf_serving_url:
        parser.error("--backend tfserving needs --tf-serving-url")
    return ServiceConfig(
        serving_base=flags.serving_base, model_name=flags.model_name, host=flags.host,
        port=flags.port, backend=flags.backend, tf_serving_url=flags.tf_serving_url,
        poll_seconds=flags.poll_seconds,
        api=ApiConfig(model_name=flags.model_name, max_days=flags.max_days,
                      max_rows=flags.max_rows, max_body_bytes=flags.max_body_bytes,
                      skew_window=flags.skew_window, skew_min_rows=flags.skew_min_rows))


def make_backend(config: ServiceConfig) -> Backend:
    """The backend the config names (imports TensorFlow lazily, on first load)."""
    if config.backend == TFSERVING:
        from serving.tfserving import TFServingBackend

        return TFServingBackend(config.tf_serving_url, config.model_name,
                                model_dir=config.model_dir, poll_seconds=config.poll_seconds)
    from serving.inprocess import InProcessBackend

    return InProcessBackend(config.model_dir, poll_seconds=config.poll_seconds)


def main(argv: Optional[List[str]] = None) -> int:
    import uvicorn

    config = parse_flags(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(make_backend(config), config.api)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
