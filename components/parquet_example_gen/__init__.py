"""Lossless, columnar Parquet -> tf.Example ExampleGen.

  conversion  Beam-free: `record_batch_to_examples`, `parquet_to_serialized_examples`
  wire        protocol-buffer wire encoding of whole columns
  executor    `Executor`, the ExampleGen executor (Beam)
  component   `parquet_example_gen(input_base, ...)`, the FileBasedExampleGen factory
"""
