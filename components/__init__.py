"""The pipeline's custom components.

Custom artifact types are reachable here by name, lazily: the Kubeflow task
image imports a custom type from its `<namespace>.<Name>` title
(`components.NaiveBaselineMetrics`), see components/naive_baselines/artifacts.py.
"""


def __getattr__(name):
    if name == "NaiveBaselineMetrics":
        from components.naive_baselines.artifacts import NaiveBaselineMetrics

        return NaiveBaselineMetrics
    raise AttributeError(f"module 'components' has no attribute {name!r}")
