"""Node ids of the pipeline, one place for every module that names a node.

They are the task names of the compiled Kubeflow pipeline too. KFP's
open-source backend turns each task into Argo DAG tasks `<id>` and
`<id>-driver`, and Argo accepts only `^[a-zA-Z0-9][-a-zA-Z0-9]*$`: letters,
digits and hyphens, no underscores (`pipeline.kubeflow.compile` checks).
"""

SPARK_CURATION = "SparkCuration"
EXAMPLE_GEN = "FileBasedExampleGen"
SPAN_WINDOW = "SpanWindowResolver"  # local runs only, with --span-window > 1
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "ImportSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
DRIFT_VALIDATOR = "DriftValidator"  # both runners; its statistics history is beside the curated data
ANOMALY_GATE = "AnomalyGate"
TRANSFORM = "Transform"
TUNER = "Tuner"  # with --tune only
TRAINER = "Trainer"
BASELINE_MODEL = "BaselineModel"
NAIVE_BASELINES = "NaiveBaselines"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"
