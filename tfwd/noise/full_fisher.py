"""Full (empirical) Fisher noise — the "naive" method of paper 002 (§2.2, eq. 5).

D = s·√F with s = √((M_L − M_S)/(M_L·M_S)). F is never formed: with Rademacher signs σ_b
(paper 002 §3.3, REFERENCE §4)

    n = (1/√B) Σ_b σ_b ∇ℓ_b,    E[n] = 0,    Cov[n] = 1/B Σ_b ∇ℓ_b ∇ℓ_bᵀ = F̂,

the empirical Fisher of the current batch, at the cost of one extra backward pass of the
sign-weighted loss through the training step's tape (no extra forward pass). n is not
Gaussian, but it has the full-Fisher covariance, which is all eq. 2 specifies to second order.
It covers every trainable variable connected to the logits (batch-norm γ/β included).
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.noise.batch import NoiseBatch, substream


def sample(batch: NoiseBatch, layers, key: tf.Tensor) -> dict[int, tf.Tensor]:
    """{variable index: (1/√B) Σ_b σ_b ∇ℓ_b}; ``layers`` is unused (every variable)."""
    del layers
    signed = batch.sign_weighted_gradients(substream(key, 0))
    scale = tf.math.rsqrt(batch.batch_size)
    return {i: scale * signed[i] for i in batch.noisy_indices if signed[i] is not None}
