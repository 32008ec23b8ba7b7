"""Everything about the served model directory and answering from it.

`serving.model_dir` is the one home of the TF Serving layout
(`<base>/<model>/<integer version>/`): the pusher writes it, the baseline
task and the prediction service read it.
"""
