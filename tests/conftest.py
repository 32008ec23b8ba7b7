"""Shared fixtures. The pipeline runs are slow: only tests marked slow use them."""
import pytest


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory):
    from tests.pipeline_runs import run_all

    return run_all(str(tmp_path_factory.mktemp("runs")))
