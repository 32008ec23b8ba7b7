"""The baseline model for the Evaluator: the newest version TF Serving serves."""
