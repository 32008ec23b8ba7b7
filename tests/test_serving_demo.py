"""The Streamlit demo, started on 127.0.0.1 and looked at by headless Chromium.

A small real model is pushed (`serving.tiny_model`, the real pusher's
`publish_version`) and a curated span is written in the Spark job's layout
from rows that `serving.features` computes (the parity test proves them
equal to the job's). Headless Chromium: the demo opens on the newest date of the only station;
the page must show that row's probability - the SavedModel's own output,
computed here - the version and the AUC recorded at push. Streamlit renders
with JavaScript over a websocket, so the DOM is polled until the answer is
there, then the screenshot is taken. Streamlit's AppTest (no browser)
picks another date and types a week.
"""
import datetime
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pandas as pd
import pytest

from components.spark_curation.contract import curated_columns
from serving import features as serving_features
from serving import observations as obs
from serving import tiny_model
from tests.test_serving_api import MODEL, saved_model_probabilities

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium(url, *flags, timeout=120):
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
             *flags, url],
            capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A serving base with version 100 and a curated span; (root, rows, model)."""
    root = tmp_path_factory.mktemp("demo")
    models = tiny_model.build_once()
    tiny_model.publish(models[0], str(root / "serving" / MODEL), version=100)
    rows = serving_features.curated_rows("seattle", tiny_model.seattle_observations(500))
    span = root / "data" / "curated" / "span-1"
    span.mkdir(parents=True)
    names = [name for name, _ in curated_columns()]
    pd.DataFrame(rows)[names].to_parquet(span / "part-00000.parquet", index=False)
    return root, rows, models[0]


@pytest.fixture(scope="module")
def demo(pushed):
    root, rows, model = pushed
    port = free_port()
    log = open(root / "streamlit.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", os.path.join(REPO_ROOT, "serving", "demo_app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--",
         "--serving-base", str(root / "serving"), "--data-dir", str(root / "data")],
        cwd=str(root), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (root / "streamlit.log").read_text()
            time.sleep(0.5)
        yield {"url": url, "root": root, "last_row": rows[-1], "model": model}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.mark.slow
@needs_chromium
def test_the_demo_shows_a_real_prediction(demo):
    (expected,) = saved_model_probabilities(
        demo["model"].export_dir, [serving_features.model_input(demo["last_row"])])
    wanted = f"Rain probability: {expected:.4f}"

    dom, deadline = "", time.monotonic() + 180
    while time.monotonic() < deadline:
        dom = chromium(demo["url"], "--dump-dom").stdout
        if "Rain probability:" in dom:
            break
        time.sleep(1)
    text = re.sub(r"<[^>]+>", " ", dom)
    assert wanted in text, re.findall(r"Rain probability: \S+", text) or text[-2000:]
    assert "Model version 100" in text
    assert f"{round(demo['model'].auc, 4)}" in text  # the AUC from push_metadata.json
    assert demo["last_row"]["date"].isoformat() in text

    # Each Chromium run is a fresh page: Streamlit draws after its websocket
    # session starts, which on a busy machine can outlast the virtual-time
    # budget, so the screenshot is taken again until the page was drawn.
    from PIL import Image

    screenshot, darks = demo["root"] / "demo.png", []
    for _ in range(5):
        result = chromium(demo["url"], f"--screenshot={screenshot}", "--window-size=1000,1300")
        assert screenshot.exists(), result.stderr[-2000:]
        image = Image.open(screenshot).convert("L")
        darks.append(sum(1 for value in image.getdata() if value < 128))
        if darks[-1] > 5000:
            break
        time.sleep(2)
    assert darks[-1] > 5000, f"the screenshot is (almost) blank: dark pixels per try {darks}"
    kept = os.environ.get("DEMO_SCREENSHOT")  # for a person to look at it
    if kept:
        shutil.copy(screenshot, kept)


def app_test(root, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", ["demo_app.py", "--serving-base", str(root / "serving"),
                                      "--data-dir", str(root / "data")])
    return AppTest.from_file(os.path.join(REPO_ROOT, "serving", "demo_app.py"),
                             default_timeout=120)


def shown_probability(app):
    (heading,) = [h.value for h in app.subheader if h.value.startswith("Rain probability")]
    return float(heading.split(":")[1])


def test_picking_another_date_and_typing_a_week_give_the_models_answers(pushed, monkeypatch):
    root, rows, model = pushed
    app = app_test(root, monkeypatch).run()
    assert not app.exception, app.exception
    picked = rows[100]
    app.date_input[0].set_value(picked["date"]).run()
    (expected,) = saved_model_probabilities(model.export_dir,
                                            [serving_features.model_input(picked)])
    assert shown_probability(app) == pytest.approx(expected, abs=5e-5)

    app.radio[0].set_value("Type a week of observations").run()
    assert not app.exception, app.exception
    from serving.demo_app import default_week

    week = default_week(datetime.date.today())  # what the editor starts with
    days = [obs.Observation(r["date"], r["precipitation"], r["temp_max"], r["temp_min"],
                            r["wind"], r["weather"]) for r in week.to_dict("records")]
    row = serving_features.feature_rows("seattle", days)[-1]
    (expected,) = saved_model_probabilities(model.export_dir, [serving_features.model_input(row)])
    assert shown_probability(app) == pytest.approx(expected, abs=5e-5)
