"""Benchmarks of curation, Parquet ingestion, ExampleGen->Transform and the whole pipeline.

  run_benchmarks  the entry point: `python -m benchmarks.run_benchmarks --help`
  measure         runs one workload in a fresh process, sampling the tree's RSS
  workloads       the measured workloads, as run inside that process
  etl_pipeline    the ExampleGen -> StatisticsGen -> Transform pipeline
  report          machine description, results.json and results.md
"""
