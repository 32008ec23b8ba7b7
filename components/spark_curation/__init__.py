"""Spark job that turns raw daily weather CSVs into curated Parquet spans."""
