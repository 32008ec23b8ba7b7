"""Issue #11: local_runner curates in a child process while it imports
TensorFlow/TFX (components/spark_curation/child.py). Results, data rejections
and failures come back to the caller as they would in one process.
"""
import multiprocessing
import os

import pytest

from components.spark_curation import child
from components.spark_curation.contract import CurationError


def test_a_rejection_comes_back_as_curation_error_with_the_jobs_message(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text("date,precipitation,temp_max,temp_min\n2021-01-01,0,10,5\n")
    calls = []
    with pytest.raises(CurationError) as error:
        child.run_curation_meanwhile((str(path), str(tmp_path / "out")), {"station": "s"},
                                     meanwhile=lambda: calls.append(os.getpid()))
    assert str(path) in str(error.value) and "missing required column(s): wind." in str(error.value)
    assert calls == [os.getpid()]  # ran here, in the caller's process
    assert not os.path.exists(tmp_path / "out")


def test_other_failures_name_the_error_and_keep_the_childs_traceback(tmp_path):
    with pytest.raises(child.CurationProcessError) as error:
        child.run_curation_meanwhile(("x.csv", str(tmp_path)), {"max_quarantine_share": 2.0})
    assert str(error.value) == (
        "ValueError: max_quarantine_share must be within [0, 1]; got 2.0.")
    assert "run_curation" in error.value.child_traceback


def test_an_error_meanwhile_stops_the_child_and_propagates(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text("date,precipitation,temp_max,temp_min,wind\n2021-01-01,0,10,5,3\n")

    def boom():
        raise KeyError("import failed")

    with pytest.raises(KeyError, match="import failed"):
        child.run_curation_meanwhile((str(path), str(tmp_path / "out")), {"station": "s"},
                                     meanwhile=boom)
    assert multiprocessing.active_children() == []  # stopped and reaped, not left running
    assert not os.path.exists(tmp_path / "out" / "curated" / "span-1")


@pytest.mark.slow
def test_bundled_curation_in_a_child_leaves_no_jvm_here(tmp_path):
    from pyspark import SparkContext
    from vega_datasets import local_data

    gateway_before = SparkContext._gateway
    result = child.run_curation_meanwhile(
        (local_data.seattle_weather.filepath, str(tmp_path / "out")), {"station": "seattle"})
    assert (result.rows_in, result.rows_written, result.span) == (1461, 1460, 1)
    assert os.path.isdir(result.span_dir) and os.listdir(result.span_dir)
    assert SparkContext._gateway is gateway_before  # the JVM ran (and ended) in the child
    again = child.run_curation_meanwhile(
        (local_data.seattle_weather.filepath, str(tmp_path / "out")), {"station": "seattle"})
    assert again.skipped and again.span == 1
