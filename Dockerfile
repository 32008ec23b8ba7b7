# The image every task of the compiled Kubeflow pipeline runs in.
#
#   podman build -t REGISTRY/rain-tomorrow:TAG .     (or docker build)
#
# Base: python:3.10.13-slim-bookworm, not tensorflow/tfx:1.16.0. The TFX
# image brings its own interpreter and pins (another Beam/pyarrow/kfp set:
# under other Beam versions `import tfx_bsl` fails) and its own entrypoint.
# Starting from the same Python as .python-version and installing with
# requirements/constraints.txt gives the container exactly the dependency set
# the tests and local runs use, on the platform those wheels were proven on
# (Debian bookworm, glibc 2.36). Machines without registry access build a
# stand-in for this base with scripts/build_base_standin.sh.
FROM python:3.10.13-slim-bookworm

# Java 17 for pyspark (the Spark curation task runs Spark in the pod); procps
# because Spark's launch scripts call `ps`.
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
# uv installs the lock (the same tool and file as scripts/bootstrap.sh);
# pyfarmhash (a TFDV dependency) is published as source only and needs a C++
# compiler, removed again in the same layer. The `serve` extra is the
# prediction service (deploy/prediction-service runs this image too).
COPY setup.py /app/
COPY requirements/constraints.txt /app/requirements/
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && pip install "uv==0.13.9" \
    && uv pip install --system -c requirements/constraints.txt \
         --build-constraint requirements/constraints.txt "/app[serve]" \
    && apt-get purge -y --auto-remove g++ \
    && rm -rf /var/lib/apt/lists/* /app/build /app/*.egg-info /root/.cache

# The repository (see .dockerignore), installed as a regular, non-editable
# package: Beam's worker processes and the task entrypoint import
# pipeline.*, components.*, models.* and serving.* from site-packages. The
# curated schema stays at /app/schema/schema.pbtxt, the default of
# kubeflow_runner.py's --schema-path.
COPY . /app
RUN uv pip install --system --no-deps --reinstall -c requirements/constraints.txt \
         --build-constraint requirements/constraints.txt /app \
    && uv pip check --system \
    && rm -rf /app/build /app/*.egg-info /root/.cache

# Tasks run as uid 1000, the uid deploy/'s TF Serving pods use for the shared
# serving volume, in a writable home (Spark and TF keep caches there). Working
# outside /app means tasks import the installed package, not the sources.
# KFP's launcher keeps artifacts at /minio, /s3 and /gcs in the pod; from KFP
# 2.3 on they are emptyDir volumes, before that they must exist and be
# writable in the image (a non-root launcher cannot create them in /).
RUN useradd --create-home --uid 1000 --user-group app \
    && install -d -o 1000 -g 1000 /minio /s3 /gcs
USER 1000
ENV HOME=/home/app
WORKDIR /home/app

# No ENTRYPOINT: the compiled pipeline sets every task's command,
# `python -m pipeline.kubeflow.entrypoint` (TFX's executor entrypoint on the
# local artifact copies KFP's launcher manages) or, for Vertex AI, TFX's own
# `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`.
CMD ["python"]
