"""Trace (isotropic) Fisher noise — "Fisher Trace" of paper 002 (§4.3, Table 1).

Isotropic Gaussian noise with the total variance of the Fisher noise:

    n = √(t̂/d) · ξ,   ξ ~ N(0, I_d),   E[t̂] = tr(F̂),   so   Cov[n] = (tr(F̂)/d) · I,

d the number of trainable parameters that receive a gradient. The consumer scales n by
s = √((M_L − M_S)/(M_L·M_S)), so tr(Cov) = s²·tr(F̂) equals that of the full and diagonal
Fisher noise. Convention: the paper's text writes D = √Tr(F) (times I), d times more total
variance; matching the trace — as ``tfwd.noise.quadratic``'s "isotropic" kind does — makes the
kinds differ only in the *structure* of the noise.

tr(F̂) is estimated without per-example gradients from the Rademacher-weighted backward pass
shared with ``full_fisher``: t̂ = ‖Σ_b σ_b ∇ℓ_b‖²/B, unbiased since
E_σ‖Σ_b σ_b ∇ℓ_b‖² = Σ_b ‖∇ℓ_b‖² = B·tr(F̂). As ξ is independent of t̂, the per-coordinate
variance of n is exactly E[t̂]/d = tr(F̂)/d. Covers every trainable variable.
"""
from __future__ import annotations

import math

import tensorflow as tf

from tfwd.noise.batch import NoiseBatch, standard_normal, substream


def sample(batch: NoiseBatch, layers, key: tf.Tensor) -> dict[int, tf.Tensor]:
    """{variable index: √(t̂/d)·ξ}; ``layers`` is unused (every variable)."""
    del layers
    indices = batch.noisy_indices
    signed = batch.sign_weighted_gradients(substream(key, 0))
    squared_norm = tf.add_n(
        [tf.reduce_sum(tf.square(signed[i])) for i in indices if signed[i] is not None]
        or [tf.zeros([], batch.logits.dtype)]
    )
    trace_estimate = squared_norm / batch.batch_size
    dimension = sum(math.prod(batch.variables[i].shape) for i in indices)
    std = tf.sqrt(trace_estimate / dimension)
    return {
        i: std * standard_normal(tf.shape(batch.gradients[i]), substream(key, 1 + i), std.dtype)
        for i in indices
    }
