"""Lossless, columnar Parquet -> tf.Example ExampleGen.

  conversion  Beam-free: `record_batch_to_examples`, `parquet_to_serialized_examples`
  wire        protocol-buffer wire encoding of whole columns
  direct      Beam-free writer of ExampleGen's split, gzipped TFRecord shards
  time_split  the default split: per station, earlier dates train, later evaluate
  executor    `Executor`, the ExampleGen executor (direct path on the
              DirectRunner, TFX's Beam path on other runners)
  component   `parquet_example_gen(input_base, ...)`, the FileBasedExampleGen factory
"""
