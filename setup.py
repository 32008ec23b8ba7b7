"""Installable package for the rain-tomorrow TFX pipeline.

Installing the repository as a package is what lets Beam's worker processes
and the Kubeflow container import every module (`pipeline.*`, `components.*`,
`models.*`) by its package path. Exact versions live in
`requirements/constraints.txt`; install with `-c requirements/constraints.txt`.
"""
from setuptools import find_packages, setup

setup(
    name="rain-tomorrow-tfx",
    version="0.1.0",
    description="TFX pipeline on Kubeflow: Spark-curated weather Parquet to a "
    "TF Serving model that predicts rain tomorrow.",
    python_requires=">=3.9,<3.11",
    packages=find_packages(include=["pipeline*", "components*", "models*", "serving*"]),
    py_modules=["local_runner", "kubeflow_runner"],
    include_package_data=True,
    install_requires=[
        "tfx[kfp]==1.16.0",
        # Kubernetes platform spec protos (PVC mounts) for the compiled pipeline.
        "kfp-kubernetes",
        "pyspark>=3.5,<4",
        "vega_datasets>=0.9",
        "psutil",
    ],
    extras_require={
        "dev": ["pytest", "nbclient", "nbconvert", "nbformat", "ipykernel", "kubernetes-validate"],
    },
)
