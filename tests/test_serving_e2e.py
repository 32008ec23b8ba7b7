"""The documented commands on a real pipeline run: start the service, send the README's curl.

Uses the session's pipeline runs (tests/pipeline_runs.py: the bundled data
through `local_runner`, a version pushed by the real pusher). The request
body is taken from the curl in serving/README.md, so the documented command
is the one tested; the answer must be the pushed SavedModel's own output for
the feature row the service reports, from the version the pipeline pushed.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest
import tensorflow as tf

from tests.test_serving_api import example

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO_ROOT, "serving", "README.md")


def readme_curl():
    """(path, body) of the curl command in serving/README.md."""
    text = open(README).read()
    match = re.search(r"curl -s localhost:8000(\S+) .*?-d '(.*?)'\n", text, re.S)
    assert match, "serving/README.md lost its curl example"
    return match.group(1), json.loads(match.group(2))


def check_service_on(serving_base: str, log_path: str) -> dict:
    """Starts `python -m serving --serving-base ...` and sends the README's request."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--serving-base", serving_base,
             "--port", str(port)], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, open(log_path).read()[-3000:]
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        path, body = readme_curl()
        response = httpx.post(url + path, json=body, timeout=30)
        models = httpx.get(url + "/v1/models", timeout=30).json()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert response.status_code == 200, response.text
    return {"answer": response.json(), "models": models}


def assert_answer_from(model_dir: str, version: int, result: dict) -> None:
    answer = result["answer"]
    assert answer["model"]["version"] == version
    assert answer["station"] == "seattle" and answer["station_in_vocabulary"] is True
    serve = tf.saved_model.load(os.path.join(model_dir, str(version))).signatures[
        "serving_default"]
    expected = serve(examples=tf.constant([example(answer["features"])]))["rain_probability"]
    assert 0.0 <= answer["rain_probability"] <= 1.0
    assert answer["rain_probability"] == pytest.approx(float(expected[0, 0]), abs=1e-6)
    assert result["models"]["live_version"] == version
    (live,) = [v for v in result["models"]["versions"] if v["version"] == version]
    assert "auc" in live["metrics"]["candidate"]  # from the Evaluator, via push metadata


@pytest.mark.slow
def test_readme_start_command_and_curl_on_the_pipelines_pushed_model(pipeline_runs, tmp_path):
    newest = int(pipeline_runs.versions()[-1])
    result = check_service_on(os.path.join(pipeline_runs.runs_dir, "serving"),
                              str(tmp_path / "service.log"))
    assert_answer_from(pipeline_runs.model_dir, newest, result)


def test_the_example_request_file_is_the_readme_curls_body():
    path, body = readme_curl()
    with open(os.path.join(REPO_ROOT, "serving", "example_request.json")) as f:
        assert json.load(f) == body
    assert path == "/v1/stations/seattle/predict"
    assert "-d @serving/example_request.json" in open(README).read().replace("\n", " ")
