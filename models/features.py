"""The single source of feature names, the label and transformed names.

The Spark curation job writes these columns, the curated schema describes
them, `preprocessing_fn` transforms them, the Keras model consumes them and
the eval config slices on them. Nothing else spells a feature name.
"""

LABEL_KEY = "rain_tomorrow"

# Identity and calendar columns carried through for slicing and lineage.
STATION_KEY = "station"
DATE_KEY = "date"
MONTH_KEY = "month"

# Raw daily observations of the input contract (units in the README).
OBSERVATIONS = ("precipitation", "temp_max", "temp_min", "wind")
LAG_DAYS = (1, 2)
ROLLING_WINDOW_DAYS = (3, 7)

NUMERIC = "numeric"
CATEGORICAL = "categorical"


def lag_name(observation: str, days: int) -> str:
    """Name of `observation` measured `days` days before the row's date."""
    return f"{observation}_lag{days}"


def rolling_mean_name(observation: str, days: int) -> str:
    """Name of the mean of `observation` over the row's day and the days-1 before."""
    return f"{observation}_mean_{days}d"


def _model_features() -> dict:
    features = {name: NUMERIC for name in OBSERVATIONS}
    features["temp_range"] = NUMERIC
    for observation in OBSERVATIONS:
        for days in LAG_DAYS:
            features[lag_name(observation, days)] = NUMERIC
        for days in ROLLING_WINDOW_DAYS:
            features[rolling_mean_name(observation, days)] = NUMERIC
    features["day_of_year_sin"] = NUMERIC
    features["day_of_year_cos"] = NUMERIC
    features["weather"] = CATEGORICAL
    features[STATION_KEY] = CATEGORICAL
    return features


# Every feature the model reads, mapped to its kind. Serving requests carry
# exactly these raw features (no label, no date, no month).
MODEL_FEATURES = _model_features()

# Vocabulary sizes reserved for out-of-vocabulary values per categorical.
OOV_BUCKETS = {"weather": 1, STATION_KEY: 1}

# Features that can legitimately be absent in a curated row (a lag whose day is
# missing, a station that does not report the weather type).
OPTIONAL_FEATURES = frozenset(
    [lag_name(o, d) for o in OBSERVATIONS for d in LAG_DAYS] + ["weather"]
)

SLICE_KEYS = (STATION_KEY, MONTH_KEY)

TRANSFORMED_SUFFIX = "_xf"


def transformed_name(key: str) -> str:
    """Name of the transformed version of raw feature `key`."""
    return f"{key}{TRANSFORMED_SUFFIX}"
