"""Naive baselines of the rain-tomorrow task, on plain columns (no TFX).

Three ways to say "rain tomorrow" without the network, each scored on the
eval split with the AUC the Evaluator reports for the candidate:

- persistence: 1 if it rained today (`precipitation` > 0), else 0;
- climatology: the train split's share of rainy tomorrows for the row's
  (station, month); an empty cell falls back to the station's share, then to
  the whole train split's;
- linear: scikit-learn's LogisticRegression on the model's raw numeric
  features plus the one-hot `weather`, median-imputed and standardized, fit
  on train, seeded.

An AUC that is undefined (the scored rows hold one class, or none) is None
with a note, never 0. Everything is vectorised (numpy/pandas): 100k rows
take well under a second beyond reading them.

The result is the `baselines.json` contract (see `compute_baselines`).
"""
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pandas as pd

from models import features

PERSISTENCE, CLIMATOLOGY, LINEAR = "persistence", "climatology", "linear"
BASELINE_NAMES = (PERSISTENCE, CLIMATOLOGY, LINEAR)
# The observation persistence looks at: today's precipitation.
TODAY_PRECIPITATION = "precipitation"
# One-hot encoded for the linear model (the other categorical, station, is not
# a feature of the linear baseline: the 0.782 is measured without it).
ONE_HOT = "weather"
DEFAULT_SEED = 0


def numeric_features() -> List[str]:
    """The model's raw numeric features, in models/features.py order."""
    return [name for name, kind in features.MODEL_FEATURES.items() if kind == features.NUMERIC]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> Tuple[Optional[float], Optional[str]]:
    """(AUC, None), or (None, why) when the AUC is undefined.

    Ties count half (scikit-learn's roc_auc_score), so a 0/1 score such as
    persistence gets the AUC of its single operating point.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return None, "no eval examples"
    positives = int((labels == 1).sum())
    if positives == 0:
        return None, f"the {labels.size} eval examples have no positive label (no rain tomorrow): AUC undefined"
    if positives == labels.size:
        return None, f"the {labels.size} eval examples are all positive (rain tomorrow): AUC undefined"
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64))), None


def _scored(name: str, eval_frame: pd.DataFrame, scores: Optional[np.ndarray],
            note: Optional[str] = None) -> dict:
    """One baseline's entry: overall AUC (or None + note) and per station."""
    labels = eval_frame[features.LABEL_KEY].to_numpy()
    per_station = {}
    stations = eval_frame[features.STATION_KEY].to_numpy()
    for station in sorted(pd.unique(stations)):
        mask = stations == station
        auc = None if scores is None else roc_auc(labels[mask], scores[mask])[0]
        per_station[str(station)] = {"auc": auc, "examples": int(mask.sum())}
    if scores is None:
        return {"auc": None, "auc_note": note or f"{name}: no scores", "per_station": per_station}
    auc, why = roc_auc(labels, scores)
    return {"auc": auc, "auc_note": why, "per_station": per_station}


def persistence_scores(eval_frame: pd.DataFrame) -> np.ndarray:
    """1.0 where today's precipitation is > 0, else 0.0 (missing counts as dry)."""
    precipitation = eval_frame[TODAY_PRECIPITATION].to_numpy(dtype=np.float64)
    return (np.nan_to_num(precipitation, nan=0.0) > 0).astype(np.float64)


def climatology_scores(train: pd.DataFrame, eval_frame: pd.DataFrame) -> np.ndarray:
    """P(rain tomorrow) of each eval row's (station, month) cell in train.

    A cell without train rows falls back to the station's share, a station
    without train rows to the whole train split's share.

    Raises:
      ValueError: the train split has no rows (there is no climatology).
    """
    if train.empty:
        raise ValueError("the train split has no examples")
    label = features.LABEL_KEY
    station, month = features.STATION_KEY, features.MONTH_KEY
    overall = float(train[label].mean())
    # Months as floats on both sides (a missing month is NaN: station fallback).
    train = pd.DataFrame({station: train[station].astype(str), label: train[label],
                          month: pd.to_numeric(train[month], errors="coerce").astype(np.float64)})
    eval_months = pd.to_numeric(eval_frame[month], errors="coerce").astype(np.float64).to_numpy()
    eval_stations = eval_frame[station].astype(str).to_numpy()
    by_station = train.groupby(station)[label].mean()
    by_cell = train.dropna(subset=[month]).groupby([station, month])[label].mean()
    keys = pd.MultiIndex.from_arrays([eval_stations, eval_months], names=[station, month])
    scores = by_cell.reindex(keys).to_numpy(dtype=np.float64)
    missing = np.isnan(scores)
    if missing.any():
        fallback = by_station.reindex(eval_stations).to_numpy(dtype=np.float64)
        scores[missing] = fallback[missing]
        scores[np.isnan(scores)] = overall
    return scores


def linear_design(train: pd.DataFrame, eval_frame: pd.DataFrame) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """(train matrix, eval matrix, column names): numeric features + one-hot weather.

    Numeric columns without a single value in train are left out (nothing to
    impute them from). Weather categories are train's; a category train never
    saw, or a missing weather, is all zeros.
    """
    numeric = [name for name in numeric_features()
               if name in train.columns and train[name].notna().any()]
    columns = list(numeric)
    train_parts = [train[numeric].to_numpy(dtype=np.float64)]
    eval_parts = [eval_frame[numeric].to_numpy(dtype=np.float64)]
    if ONE_HOT in train.columns:
        categories = sorted(c for c in pd.unique(train[ONE_HOT].dropna()) if c != "")
        for frame, parts in ((train, train_parts), (eval_frame, eval_parts)):
            values = frame[ONE_HOT].to_numpy() if ONE_HOT in frame.columns else np.array([None] * len(frame))
            parts.append(np.stack([(values == c) for c in categories], axis=1).astype(np.float64)
                         if categories else np.zeros((len(frame), 0)))
        columns += [f"{ONE_HOT}={c}" for c in categories]
    return np.concatenate(train_parts, axis=1), np.concatenate(eval_parts, axis=1), columns


def linear_scores(train: pd.DataFrame, eval_frame: pd.DataFrame, seed: int = DEFAULT_SEED) -> np.ndarray:
    """P(rain tomorrow) of a logistic regression fit on train.

    Raises:
      ValueError: train has no rows, one class only, or no usable feature.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train.empty:
        raise ValueError("the train split has no examples")
    labels = train[features.LABEL_KEY].to_numpy()
    if len(np.unique(labels)) < 2:
        raise ValueError(f"the train split's {len(labels)} examples are of one class "
                         f"(label {int(labels[0])}): no model can be fit")
    x_train, x_eval, columns = linear_design(train, eval_frame)
    if not columns:
        raise ValueError("the train split has none of the model's numeric features or weather")
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                          LogisticRegression(max_iter=1000, random_state=seed))
    model.fit(x_train, labels)
    if len(eval_frame) == 0:
        return np.zeros(0)
    return model.predict_proba(x_eval)[:, 1]


def compute_baselines(train: pd.DataFrame, eval_frame: pd.DataFrame, seed: int = DEFAULT_SEED) -> dict:
    """The `baselines.json` contract for a train and an eval frame.

    Both frames hold the label (0/1), `station`, `month` and the model's raw
    features as columns (missing values NaN, or None for strings):

        {"label": "rain_tomorrow", "train_examples": int, "eval_examples": int,
         "baselines": {"persistence" | "climatology" | "linear":
             {"auc": float | None, "auc_note": str | None,
              "per_station": {station: {"auc": float | None, "examples": int}}}}}

    `auc_note` says why `auc` is None (else None). A per-station AUC is None
    when that station's eval rows hold one class.
    """
    result = {"label": features.LABEL_KEY, "train_examples": int(len(train)),
              "eval_examples": int(len(eval_frame)), "baselines": {}}
    baselines = result["baselines"]
    if TODAY_PRECIPITATION in eval_frame.columns and eval_frame[TODAY_PRECIPITATION].notna().any():
        baselines[PERSISTENCE] = _scored(PERSISTENCE, eval_frame, persistence_scores(eval_frame))
    else:
        baselines[PERSISTENCE] = _scored(PERSISTENCE, eval_frame, None,
                                         f"the eval split has no '{TODAY_PRECIPITATION}' values")
    for name, score in ((CLIMATOLOGY, lambda: climatology_scores(train, eval_frame)),
                        (LINEAR, lambda: linear_scores(train, eval_frame, seed))):
        try:
            scores = score()
        except ValueError as error:
            baselines[name] = _scored(name, eval_frame, None, f"not computed: {error}")
        else:
            baselines[name] = _scored(name, eval_frame, scores)
    return result


def empty_frame(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in columns})


def format_auc(value: Optional[float]) -> str:
    """'0.7140', or 'undefined'."""
    return "undefined" if value is None else f"{value:.4f}"


def overall_aucs(baselines: dict) -> Dict[str, Optional[float]]:
    """{baseline name: overall AUC or None} of a baselines.json dict."""
    return {name: (baselines.get("baselines", {}).get(name) or {}).get("auc")
            for name in BASELINE_NAMES}
