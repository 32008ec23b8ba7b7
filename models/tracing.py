"""Keeps AutoGraph from re-writing library code that does not need it.

AutoGraph converts the Python source of every function a `tf.function`
calls, recursively, unless the function's module is on its do-not-convert
list. TensorFlow's list names `keras` but not `tf_keras` (Keras 2 as its own
package, which this project uses), nor `tensorflow_transform`, so tracing
Keras' train/eval step or a `preprocessing_fn` parsed and re-generated the
source of hundreds of Keras and tf.Transform functions: profiled, this AST
work was the largest single cost of the Trainer and a large one of Transform
on the bundled data. Both libraries are written to run in graph mode without
AutoGraph (Keras 2 was on the list as `keras`; tf.Transform also runs under
TF1 graphs), so skipping their conversion changes no op: the same graphs are
built, only faster. The functions this project writes (the
`preprocessing_fn`, the serving signatures) are still converted.

`skip_library_conversion()` is idempotent and affects the process it runs in
(the Trainer and Transform executors, in-process or in Beam workers).
"""
from tensorflow.python.autograph.core import config as _autograph_config

LIBRARIES = ("tf_keras", "tensorflow_transform")


def skip_library_conversion() -> None:
    """Puts `LIBRARIES` first on AutoGraph's do-not-convert list (once)."""
    rules = _autograph_config.CONVERSION_RULES
    present = {getattr(rule, "_prefix", None) for rule in rules}
    added = tuple(_autograph_config.DoNotConvert(name) for name in LIBRARIES
                  if name not in present)
    if added:
        _autograph_config.CONVERSION_RULES = added + tuple(rules)
