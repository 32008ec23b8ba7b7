"""Custom properties of the baseline Model artifact (read by the run summary)."""
BASELINE_FOUND = "baseline_found"  # 1 if a served version was found, else 0
BASELINE_VERSION = "baseline_version"  # that version's number
BASELINE_SOURCE = "baseline_source"  # the model directory searched
BASELINE_MODEL_URI = "baseline_model_uri"  # the Trainer output it was pushed from
