"""Stop on a non-finite curvature tensor, naming it, at a fraction of ``check_numerics``' cost.

``tf.debugging.check_numerics`` of a 1001 × 1001 float32 factor costs about 5× a reduction of
it on this CPU (BENCHMARKS.md, issue 12), and K-FAC checks 4.6 M factor entries of the MLP on
every statistics step and every inverse. The sum decides first: NaN and ±inf propagate into
Σ_ij X_ij (inf − inf = NaN), so a finite sum proves every entry finite. Only a sum that is not
finite, from a non-finite entry or an overflow of finite ones, pays for ``check_numerics``,
which then raises for the former and passes the latter: the same outcome as checking every
entry, and the same error (InvalidArgumentError carrying ``message``).
"""
from __future__ import annotations

import tensorflow as tf


def check_finite(tensor: tf.Tensor, message: str) -> tf.Tensor:
    """``tensor``; raises InvalidArgumentError with ``message`` if an entry is NaN or ±inf."""
    return tf.cond(tf.math.is_finite(tf.reduce_sum(tensor)), lambda: tf.identity(tensor),
                   lambda: tf.debugging.check_numerics(tensor, message))
