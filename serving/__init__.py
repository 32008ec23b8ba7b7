"""Everything about the served model directory and answering from it.

`serving.model_dir` is the one home of the TF Serving layout
(`<base>/<model>/<integer version>/`): the pusher writes it, the baseline
task and the prediction service read it. The service (`python -m serving`,
`serving.api`) computes the Spark job's features from raw days
(`serving.features`) and answers from a backend: TensorFlow in process
(`serving.inprocess`) or TF Serving's REST API (`serving.tfserving`).
`serving/demo_app.py` is the Streamlit demo; `serving/README.md` has the
commands.
"""
