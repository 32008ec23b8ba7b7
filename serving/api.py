"""The FastAPI application: routes, request checks and the feature computation.

`create_app(backend, config)` wires a started or startable backend
(`serving.inprocess` or `serving.tfserving`) to the routes; the backend is
started when the app starts and stopped when it stops.
"""
import contextlib
import dataclasses
import datetime
from typing import Any, Dict, List, Optional, Tuple

from fastapi import FastAPI, Path

from models import features
from serving import errors, observations, skew
from serving import features as serving_features
from serving.backend import Backend, NoModelLoaded
from serving.errors import ApiError, field_error
from serving.schemas import (
    FeaturePrediction, FeatureRequest, FeatureSkewOut, Health, ModelRef, ModelsOut,
    RowPrediction, SkewOut, StationPrediction, StationRequest, VersionOut)

# The longest window a feature looks back (7-day means): the days a request must cover.
WINDOW_DAYS = max(features.ROLLING_WINDOW_DAYS + features.LAG_DAYS)


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    """Limits and names of the service.

    Attributes:
      model_name: the model's name in the serving directory / TF Serving.
      max_days: most days one station request may carry.
      max_rows: most feature rows one /v1/predict request may carry.
      max_body_bytes: largest request body.
      skew_window: feature rows sent to the model kept for GET /v1/skew (0: off).
      skew_min_rows: fewer rows in the window than this: no skew measurement.
    """

    model_name: str = "rain_tomorrow"
    max_days: int = 366
    max_rows: int = 1000
    max_body_bytes: int = 1_000_000
    skew_window: int = 1000
    skew_min_rows: int = 300


def create_app(backend: Backend, config: ApiConfig = ApiConfig()) -> FastAPI:
    """The service answering from `backend`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        backend.start()
        try:
            yield
        finally:
            backend.stop()

    app = FastAPI(
        title="Rain tomorrow",
        version="1",
        description="P(rain tomorrow) from the model the pipeline blessed and pushed. "
                    "Errors: {\"error\": {status, code, message, fields: [{field, message}]}}.",
        lifespan=lifespan,
        default_response_class=errors.AsciiJSONResponse,
    )
    errors.install(app, config.max_body_bytes)
    skew_monitor = skew.SkewMonitor(skew.SkewWindow(config.skew_window), config.skew_min_rows)
    app.state.skew_monitor = skew_monitor

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    def healthz():
        """Ready when a model version is loaded (the Kubernetes readiness probe)."""
        version = backend.live_version()
        body = Health(status="ok" if version is not None else "no model loaded",
                      model_loaded=version is not None, live_version=version)
        return errors.AsciiJSONResponse(body.model_dump(),
                                        status_code=200 if version is not None else 503)

    @app.get("/livez")
    def livez() -> Dict[str, str]:
        """The process answers (liveness: does not depend on a model being pushed)."""
        return {"status": "ok"}

    @app.get("/v1/models", response_model=ModelsOut)
    def models() -> ModelsOut:
        """Every version in the serving directory / TF Serving and which one is live."""
        versions = []
        for info in backend.versions():
            metadata = info.metadata or {}
            versions.append(VersionOut(
                version=info.version, state=info.state, reason=info.reason,
                pushed_at=metadata.get("pushed_at"), metrics=metadata.get("metrics")))
        return ModelsOut(model_name=config.model_name, backend=backend.name,
                         live_version=backend.live_version(), versions=versions)

    @app.post("/v1/stations/{station}/predict", response_model=StationPrediction)
    def predict_station(request: StationRequest,
                        station: str = Path(description="station id, e.g. seattle")):
        """Features from the station's recent raw days (Spark job's definitions), then P(rain)."""
        station = station.strip(" ")
        if not station:
            raise ApiError(422, "invalid_request", "empty station id",
                           [field_error("station", "missing value in station")])
        if len(request.days) > config.max_days:
            raise ApiError(413, "request_too_large", f"at most {config.max_days} days",
                           [field_error("days", f"{len(request.days)} days; at most "
                                                f"{config.max_days}")])
        days = _checked_days(request)
        row = serving_features.feature_rows(station, days)[-1]
        model_row = serving_features.model_input(row)
        prediction = backend.predict([model_row])
        skew_monitor.window.add([model_row], prediction.version)
        known, warnings = _vocabulary_check(backend, station)
        return StationPrediction(
            station=station, date=row[features.DATE_KEY].isoformat(),
            rain_probability=prediction.probabilities[0],
            model=ModelRef(name=config.model_name, version=prediction.version,
                           backend=backend.name),
            station_in_vocabulary=known, warnings=warnings,
            features=dict(model_row, **{features.DATE_KEY: row[features.DATE_KEY].isoformat()}))

    @app.post("/v1/predict", response_model=FeaturePrediction)
    def predict_rows(request: FeatureRequest):
        """P(rain) for rows of already-computed features (e.g. curated rows)."""
        if not request.rows:
            raise ApiError(422, "invalid_request", "no rows",
                           [field_error("rows", "at least one row")])
        if len(request.rows) > config.max_rows:
            raise ApiError(413, "request_too_large", f"at most {config.max_rows} rows",
                           [field_error("rows", f"{len(request.rows)} rows; at most "
                                                f"{config.max_rows}")])
        rows = [row.model_dump() for row in request.rows]
        prediction = backend.predict(rows)
        skew_monitor.window.add(rows, prediction.version)
        answers = []
        for row, probability in zip(rows, prediction.probabilities):
            known, warnings = _vocabulary_check(backend, row[features.STATION_KEY])
            answers.append(RowPrediction(rain_probability=probability,
                                         station_in_vocabulary=known, warnings=warnings))
        return FeaturePrediction(
            model=ModelRef(name=config.model_name, version=prediction.version,
                           backend=backend.name),
            predictions=answers)

    @app.get("/v1/skew", response_model=SkewOut)
    def skew_report() -> SkewOut:
        """Training/serving skew: the last feature rows sent to the model (both routes)
        against the live version's training statistics, with the schema's skew
        comparators (the drift gate's thresholds). Computed on request."""
        version = backend.live_version()
        if version is None:
            raise NoModelLoaded("no model version loaded: nothing to compare with")
        report = skew_monitor.report(version, backend.version_dir(version))
        metadata = backend.metadata(version) or {}
        return SkewOut(
            status=report.status, message=report.message,
            model=ModelRef(name=config.model_name, version=version, backend=backend.name),
            rows_in_window=report.rows_in_window, window_size=config.skew_window,
            min_rows=config.skew_min_rows,
            rows_by_version={str(v): n for v, n in sorted(report.rows_by_version.items())},
            skewed_features=report.skewed_features,
            features=[FeatureSkewOut(**dataclasses.asdict(f)) for f in report.features],
            training_statistics=metadata.get("training_statistics"))

    return app


def _checked_days(request: StationRequest) -> List[observations.Observation]:
    """Parsed, contract-checked days; refuses gaps in the last WINDOW_DAYS and disorder."""
    days = []
    for index, day in enumerate(request.days):
        try:
            date = observations.parse_date(day.date, "date")
            days.append(observations.check(observations.Observation(
                date, day.precipitation, day.temp_max, day.temp_min, day.wind, day.weather)))
        except observations.InvalidObservation as error:
            raise ApiError(422, "invalid_request", f"days[{index}].{error.field}: {error.reason}",
                           [field_error(f"days[{index}].{error.field}", error.reason,
                                        getattr(day, error.field, None))]) from None
        if index and days[-1].date <= days[-2].date:
            raise ApiError(422, "invalid_request", "days must be in date order, today last",
                           [field_error(f"days[{index}].date",
                                        f"{date.isoformat()} is not after "
                                        f"{days[-2].date.isoformat()} (one row per day, "
                                        "oldest first, today last)", day.date)])
    if not days:
        raise ApiError(422, "missing_day", f"need the last {WINDOW_DAYS} days, got none",
                       [field_error("days", f"at least {WINDOW_DAYS} days")])
    missing = _missing_days(days)
    if missing:
        listed = ", ".join(d.isoformat() for d in missing)
        raise ApiError(422, "missing_day",
                       f"missing day(s) {listed}: the {WINDOW_DAYS} calendar days ending "
                       f"{days[-1].date.isoformat()} must all be present",
                       [field_error("days", f"missing {d.isoformat()}") for d in missing])
    return days


def _missing_days(days: List[observations.Observation]) -> List[datetime.date]:
    present = {d.date for d in days}
    today = days[-1].date
    window = [today - datetime.timedelta(days=n) for n in range(WINDOW_DAYS - 1, -1, -1)]
    return [d for d in window if d not in present]


def _vocabulary_check(backend: Backend, station: str) -> Tuple[Optional[bool], List[str]]:
    vocabulary = backend.vocabulary(features.STATION_KEY)
    if vocabulary is None:
        return None, ["the backend cannot read the model's station vocabulary; "
                      "whether this station was seen in training is unknown"]
    if station in vocabulary:
        return True, []
    return False, [f"station {station!r} is not in the model's vocabulary (out of "
                   "vocabulary): the model saw no data from it and treats it like any "
                   "other unknown station, so the answer rests on the weather alone"]
