"""Everything that makes the pipeline run on Kubeflow Pipelines (and Vertex AI).

  settings       typed settings of a compile and a submission (flags -> settings)
  compile        KubeflowV2DagRunner + what TFX's compiler leaves out
  platform_spec  the Kubernetes platform spec (PVC mounts)
  submit         kfp.Client: one run or a recurring run, with authentication
  entrypoint     the task entrypoint on KFP's open-source backend (launcher I/O)

`kubeflow_runner.py` at the repository root is the command-line front.
"""
