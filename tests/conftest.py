"""Shared fixtures, and the time each test layer took (printed at the end of a run).

The pipeline runs are slow: only tests marked slow use them.
"""
import collections

import pytest

# Most specific first: a test carrying several markers counts in the first.
LAYERS = ("image", "spark_cluster", "slow")
_layer_of = {}
_seconds = collections.Counter()


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory):
    from tests.pipeline_runs import run_all

    return run_all(str(tmp_path_factory.mktemp("runs")))


def pytest_collection_modifyitems(items):
    for item in items:
        _layer_of[item.nodeid] = next((m for m in LAYERS if item.get_closest_marker(m)), "fast")


def pytest_runtest_logreport(report):
    # Setup includes module and session fixtures (the image build, the pipeline runs).
    _seconds[_layer_of.get(report.nodeid, "fast")] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _seconds:
        layers = ", ".join(f"{layer} {_seconds[layer]:.0f} s"
                           for layer in ("fast", *reversed(LAYERS)) if layer in _seconds)
        terminalreporter.write_line(f"Time per test layer: {layers}")
