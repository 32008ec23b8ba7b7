"""Request and response bodies of the prediction service (they make the OpenAPI docs)."""
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError
from typing_extensions import Annotated

from models import features

def _not_a_bool(value: Any) -> Any:
    # pydantic's lax float takes true/false as 1.0/0.0; for a measurement that is a bug.
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


# A measurement: numbers or numeric strings, finite (NaN/Infinity, which
# Python's JSON parser accepts, are values the curation job quarantines).
Measurement = Annotated[float, BeforeValidator(_not_a_bool), Field(allow_inf_nan=False)]


class DayIn(BaseModel):
    """One day of raw observations, in the input contract's units."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "date": "2015-12-31", "precipitation": 0.0, "temp_max": 5.6, "temp_min": -2.1,
        "wind": 3.5, "weather": "sun"}})

    date: str = Field(description="yyyy-MM-dd or yyyy/MM/dd")
    precipitation: Measurement = Field(description="mm per day, >= 0")
    temp_max: Measurement = Field(description="deg C, within [-90, 60]")
    temp_min: Measurement = Field(description="deg C, <= temp_max")
    wind: Measurement = Field(description="m/s, >= 0")
    weather: Optional[str] = Field(None, description="drizzle, fog, rain, snow or sun")


class StationRequest(BaseModel):
    """The recent days of one station: at least the last 7 calendar days, today last."""

    model_config = ConfigDict(extra="forbid")
    days: List[DayIn]


def _feature_row_model():
    fields: Dict[str, Any] = {}
    for key, kind in features.MODEL_FEATURES.items():
        optional = key in features.OPTIONAL_FEATURES
        kind_type = Measurement if kind == features.NUMERIC else str
        if optional:
            fields[key] = (Optional[kind_type], Field(None))
        else:
            fields[key] = (kind_type, Field(...))
    return create_model("FeatureRow", __config__=ConfigDict(extra="forbid"), **fields)


# Every key of models.features.MODEL_FEATURES; lags and weather may be null.
FeatureRow = _feature_row_model()


class FeatureRequest(BaseModel):
    """Rows of already-computed model features (as the curated data holds them)."""

    model_config = ConfigDict(extra="forbid")
    rows: List[FeatureRow]  # type: ignore[valid-type]


class ModelRef(BaseModel):
    name: str
    version: int
    backend: str


class StationPrediction(BaseModel):
    station: str
    date: str = Field(description="today: the last day sent; the prediction is for the day after")
    rain_probability: float
    model: ModelRef
    station_in_vocabulary: Optional[bool] = Field(
        description="False: the model never saw this station (out of vocabulary); "
                    "null: the backend cannot tell")
    warnings: List[str]
    features: Dict[str, Any] = Field(description="the feature row sent to the model")


class RowPrediction(BaseModel):
    rain_probability: float
    station_in_vocabulary: Optional[bool]
    warnings: List[str]


class FeaturePrediction(BaseModel):
    model: ModelRef
    predictions: List[RowPrediction]


class VersionOut(BaseModel):
    version: int
    state: str
    reason: Optional[str] = None
    pushed_at: Optional[str] = None
    metrics: Optional[Dict[str, Any]] = None


class ModelsOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_name: str
    backend: str
    live_version: Optional[int]
    versions: List[VersionOut]


class FeatureSkewOut(BaseModel):
    feature: str
    comparator: str = Field(description="jensen_shannon_divergence (numeric) or "
                                        "infinity_norm (categorical), from the schema")
    distance: Optional[float] = Field(description="TFDV's measured distance; null if "
                                                  "nothing was measured")
    threshold: float
    skewed: bool
    description: Optional[str] = None


class SkewOut(BaseModel):
    status: str = Field(description="no_skew | skew | too_few_rows | "
                                    "no_training_statistics | disabled")
    message: str
    model: ModelRef = Field(description="the live version, whose training statistics "
                                        "the window is compared with")
    rows_in_window: int
    window_size: int
    min_rows: int
    rows_by_version: Dict[str, int] = Field(
        description="rows of the window per version that answered them")
    skewed_features: List[str]
    features: List[FeatureSkewOut]
    training_statistics: Optional[Dict[str, Any]] = Field(
        None, description="where the version's training statistics came from (push metadata)")


class Health(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    status: str
    model_loaded: bool
    live_version: Optional[int]
