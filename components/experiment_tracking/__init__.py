"""Experiment tracking and the model registry (MLflow): tracking.py is the library,
pusher.py what the VersionedPusher records, runner.py what the local runner adds."""
