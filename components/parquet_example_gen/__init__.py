"""Lossless, columnar Parquet -> tf.Example ExampleGen."""
