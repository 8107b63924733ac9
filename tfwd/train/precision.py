"""The numeric precision of a run: a Keras dtype policy, set while the run builds and trains.

* ``float32``: Keras's default.
* ``float64``: ``keras.config.set_floatx("float64")`` and the ``float64`` policy: variables,
  computations and optimizer state in float64 (data are fed as float32 and cast by the model).
* ``mixed_float16`` / ``mixed_bfloat16``: float32 variables, float16/bfloat16 computations.
  Under ``mixed_float16`` ``Model.compile`` wraps the optimizer in Keras's
  ``LossScaleOptimizer`` (dynamic loss scaling); the training step differentiates
  ``optimizer.scale_loss(loss)`` and the wrapper unscales the gradients before the update.

Keras reads the policy when a layer is created, so the policy must be in force while the model
is built; ``dtype_policy`` sets it for a block and restores the previous one afterwards, so one
run cannot change the precision of the next.
"""
from __future__ import annotations

import contextlib

import keras

from tfwd.choices.runtime import DTYPE_POLICIES, DtypePolicy


@contextlib.contextmanager
def dtype_policy(name: str):
    """Within the block, layers are created under policy ``name`` (one of ``DTYPE_POLICIES``)
    and ``keras.config.floatx()`` is float64 for ``"float64"``, else float32."""
    if name not in DTYPE_POLICIES:
        raise ValueError(f"dtype_policy={name!r} is not one of {DTYPE_POLICIES}.")
    previous_policy, previous_floatx = keras.mixed_precision.global_policy(), keras.config.floatx()
    keras.config.set_floatx("float64" if name == DtypePolicy.FLOAT64 else "float32")
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.config.set_floatx(previous_floatx)
        keras.mixed_precision.set_global_policy(previous_policy)
