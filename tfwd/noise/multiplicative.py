"""Multiplicative Gaussian gradient noise (paper 002 appendix E, after Hoffer et al. 2017).

    ∇̃ = ∇L_{M_L} ⊙ (1 + σ_m ξ),   ξ ~ N(0, I):   additive noise σ_m · ∇L_{M_L} ⊙ ξ,

a constant diagonal covariance structure relative to the gradient (variance σ_m²·g_i² per
coordinate). This module returns the unit draw ∇L ⊙ ξ; the consumer multiplies by σ_m. Being
linear in the gradient, it is applied to each replica's (pre-scaled) gradient with the *same*
ξ on every replica, so the all-reduced gradient is exactly ∇L_{M_L} ⊙ (1 + σ_m ξ).
Covers every trainable variable.
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.noise.batch import NoiseBatch, standard_normal, substream


def sample(batch: NoiseBatch, layers, key: tf.Tensor) -> dict[int, tf.Tensor]:
    """{variable index: ∇L ⊙ ξ}; ``layers`` is unused (every variable)."""
    del layers
    return {
        i: batch.gradients[i]
        * standard_normal(tf.shape(batch.gradients[i]), substream(key, i), batch.gradients[i].dtype)
        for i in batch.noisy_indices
    }
