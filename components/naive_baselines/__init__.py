"""Naive baselines (persistence, climatology, linear) reported beside every candidate.

  baselines    the math, on pandas frames (no TFX)
  examples_io  one split of an Examples artifact as a frame (vectorised)
  artifacts    the NaiveBaselineMetrics type and its baselines.json
  component    the NaiveBaselines TFX component; executor its executor
  gate         the Evaluator's "beat persistence by a margin" rule and its record
"""
