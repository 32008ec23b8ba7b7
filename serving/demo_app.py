"""Streamlit demo: will it rain tomorrow? From the model the pipeline pushed.

  streamlit run serving/demo_app.py --server.address 127.0.0.1 -- \
      --serving-base runs/serving --data-dir runs/data [--model-name rain_tomorrow]

Pick a station and a date from the latest curated span (the Spark job's
rows, features included) or type a week of raw observations (features
computed by `serving.features`, the Spark job's definitions). The answer
shows the probability, the model version that gave it and how that version
scored when it was pushed (its push_metadata.json). The model is loaded in
this process with the in-process backend (newest complete version, polled).
"""
import argparse
import dataclasses
import datetime
import glob
import os
import re
import sys
from typing import List, Optional

import pandas as pd
import streamlit as st

from models import features
from serving import features as serving_features
from serving import observations
from serving.inprocess import InProcessBackend

_SPAN = re.compile(r"span-(\d+)$")
WEEK = 7


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    serving_base: str
    model_name: str
    data_dir: Optional[str]


def parse_args(argv: List[str]) -> DemoConfig:
    parser = argparse.ArgumentParser(prog="demo_app.py")
    parser.add_argument("--serving-base", default=os.path.join("runs", "serving"))
    parser.add_argument("--model-name", default="rain_tomorrow")
    parser.add_argument("--data-dir", default=os.path.join("runs", "data"),
                        help="the curation output root (holds curated/span-N/)")
    flags = parser.parse_args(argv)
    return DemoConfig(flags.serving_base, flags.model_name, flags.data_dir)


@st.cache_resource
def backend(model_dir: str) -> InProcessBackend:
    """One started backend per model directory for the app's lifetime (polls for versions)."""
    started = InProcessBackend(model_dir, poll_seconds=5.0)
    started.start()
    return started


@st.cache_data(ttl=60)
def latest_curated(data_dir: str) -> Optional[pd.DataFrame]:
    """All rows of the newest curated span, or None if there is none."""
    spans = [p for p in glob.glob(os.path.join(data_dir, "curated", "span-*"))
             if _SPAN.search(p)]
    if not spans:
        return None
    newest = max(spans, key=lambda p: int(_SPAN.search(p).group(1)))
    files = sorted(glob.glob(os.path.join(newest, "*.parquet")))
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    frame[features.DATE_KEY] = pd.to_datetime(frame[features.DATE_KEY]).dt.date
    return frame.sort_values([features.STATION_KEY, features.DATE_KEY])


def _clean(row: dict) -> dict:
    """NaN (pandas' null) -> None, numpy scalars -> Python."""
    out = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and value != value):
            out[key] = None
        else:
            out[key] = value.item() if hasattr(value, "item") else value
    return out


def show_answer(model: InProcessBackend, row: dict, actual: Optional[int] = None) -> None:
    prediction = model.predict([serving_features.model_input(row)])
    probability = prediction.probabilities[0]
    st.subheader(f"Rain probability: {probability:.4f}")
    st.write(f"Chance of rain at **{row[features.STATION_KEY]}** on the day after "
             f"{row[features.DATE_KEY]}: **{probability:.1%}**")
    vocabulary = model.vocabulary(features.STATION_KEY)
    if vocabulary is not None and row[features.STATION_KEY] not in vocabulary:
        st.warning("This station is out of the model's vocabulary: it never saw data from it.")
    if actual is not None:
        st.write(f"What happened: {'rain' if actual else 'no rain'} the next day.")
    metadata = model.metadata(prediction.version) or {}
    st.markdown(f"**Model version {prediction.version}**, pushed "
                f"{metadata.get('pushed_at', 'at an unknown time')}")
    metrics = (metadata.get("metrics") or {}).get("candidate") or {}
    if metrics:
        st.table(pd.DataFrame({"metric": list(metrics),
                               "value at push": [round(v, 4) for v in metrics.values()]}))
    thresholds = metadata.get("thresholds")
    if thresholds:
        st.caption(f"Thresholds it passed: {thresholds}")
    with st.expander("Feature row sent to the model"):
        st.json({k: (v.isoformat() if hasattr(v, "isoformat") else v)
                 for k, v in serving_features.model_input(row).items()})


def from_curated(model: InProcessBackend, curated: pd.DataFrame) -> None:
    stations = sorted(curated[features.STATION_KEY].unique())
    station = st.selectbox("Station", stations)
    rows = curated[curated[features.STATION_KEY] == station]
    dates = rows[features.DATE_KEY]
    date = st.date_input("Date (today)", value=dates.max(), min_value=dates.min(),
                         max_value=dates.max())
    match = rows[rows[features.DATE_KEY] == date]
    if match.empty:
        st.info(f"No curated row for {station} on {date} (a gap in the data).")
        return
    row = _clean(match.iloc[0].to_dict())
    show_answer(model, row, actual=row.get(features.LABEL_KEY))


def default_week(today: datetime.date) -> pd.DataFrame:
    """The editable week the demo starts from: dry, mild days ending `today`."""
    start = today - datetime.timedelta(days=WEEK - 1)
    return pd.DataFrame({
        "date": [start + datetime.timedelta(days=n) for n in range(WEEK)],
        "precipitation": [0.0] * (WEEK - 1) + [4.0], "temp_max": [12.0] * WEEK,
        "temp_min": [5.0] * WEEK, "wind": [3.0] * WEEK, "weather": ["sun"] * (WEEK - 1) + ["rain"],
    })


def typed_week(model: InProcessBackend) -> None:
    station = st.text_input("Station", "seattle")
    today = st.date_input("Today", datetime.date.today())
    edited = st.data_editor(default_week(today), disabled=["date"], hide_index=True)
    try:
        days = [observations.check(observations.Observation(
            r["date"], float(r["precipitation"]), float(r["temp_max"]), float(r["temp_min"]),
            float(r["wind"]), r["weather"])) for r in edited.to_dict("records")]
    except (observations.InvalidObservation, TypeError, ValueError) as error:
        st.error(f"Not a valid week: {error}")
        return
    show_answer(model, serving_features.feature_rows(station.strip(), days)[-1])


def main(config: DemoConfig) -> None:
    st.set_page_config(page_title="Rain tomorrow", layout="centered")
    st.title("Will it rain tomorrow?")
    model = backend(os.path.join(config.serving_base, config.model_name))
    if model.live_version() is None:
        st.error(f"No model version is loaded from {config.serving_base}/{config.model_name} "
                 "yet: run the pipeline (./scripts/run.sh) so the pusher writes one.")
        return
    curated = latest_curated(config.data_dir) if config.data_dir else None
    modes = (["Station and date from the curated data"] if curated is not None else []) + [
        "Type a week of observations"]
    mode = st.radio("Input", modes, horizontal=True)
    if mode.startswith("Station"):
        from_curated(model, curated)
    else:
        typed_week(model)


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
