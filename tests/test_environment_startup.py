"""Issue #11: the environment the set-up scripts build starts fast.

uv (scripts/bootstrap.sh's installer) writes no bytecode unless told to; where
PYTHONDONTWRITEBYTECODE is set, every run then compiled TensorFlow, TFX and
MLflow from source: the pipeline's imports took 20 s instead of 7 s.
"""
import importlib.util
import os
import sys

import pytest


@pytest.mark.parametrize("module", ["tensorflow", "tfx.v1", "tensorflow_model_analysis", "mlflow"])
def test_installed_packages_have_bytecode(module):
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a virtualenv the set-up scripts built")
    origin = importlib.util.find_spec(module).origin
    cached = importlib.util.cache_from_source(origin)
    assert os.path.isfile(cached), f"{origin} has no compiled {cached}"
