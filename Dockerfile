# The image every task of the compiled Kubeflow pipeline runs in.
#
# Base: python:3.10-slim, not tensorflow/tfx:1.16.0. The TFX image brings its
# own interpreter and pins (a different Beam/pyarrow/kfp set than ours, which
# ENVIRONMENT.md shows matter: with other Beam versions tfx_bsl fails to
# import), and its own entrypoint. Starting from the same Python (3.10.13, as
# in .python-version) and installing with requirements/constraints.txt gives
# the container exactly the dependency set the tests and local runs use.
# Debian bookworm (glibc 2.36) is the platform those wheels were proven on.
FROM python:3.10.13-slim-bookworm

# Java 17 for pyspark (the Spark curation task runs Spark in local mode);
# procps because Spark's launch scripts call `ps`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from setup.py and the constraints alone, so a code
# change does not reinstall ~3 GB of wheels: with no sources present the
# package builds empty and only its pinned requirements land in this layer.
COPY setup.py /app/
COPY requirements/constraints.txt /app/requirements/
RUN pip install "pip==24.2" "setuptools==75.1.0" "wheel==0.45.1" \
    && pip install -c requirements/constraints.txt /app

# The repository (see .dockerignore), installed as a regular, non-editable
# package: Beam's worker processes and the TFX entrypoint import
# pipeline.*, components.* and models.* from site-packages. The curated schema
# stays at /app/schema/schema.pbtxt, the default of kubeflow_runner.py's
# --schema-path.
COPY . /app
RUN pip install --no-deps --force-reinstall -c requirements/constraints.txt /app \
    && pip check \
    && rm -rf /app/build /app/*.egg-info

# Tasks run as uid 1000, the uid deploy/'s TF Serving pods use for the shared
# serving volume, in a writable home (Spark and TF keep caches there). Working
# outside /app means tasks import the installed package, not the sources.
RUN useradd --create-home --uid 1000 --user-group app
USER 1000
ENV HOME=/home/app
WORKDIR /home/app

# No ENTRYPOINT: the compiled pipeline sets every task's command,
# `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`
# (ExampleGen's pre-cache-check hook runs
# `python -m tfx.orchestration.kubeflow.v2.file_based_example_gen.driver`).
CMD ["python"]
