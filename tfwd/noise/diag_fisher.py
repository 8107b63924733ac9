"""Diagonal Fisher noise — the method of paper 002 (§3.1, Algorithm 1).

Per step k, with ξ ~ N(0, I) and s = √((M_L − M_S)/(M_L·M_S)) (``tfwd.noise.scale``):

    ε_k = α_k · s · √diag(F(θ_k)) ⊙ ξ_k,        θ_{k+1} = θ_k − α_k ∇L_{M_L}(θ_k) + ε_k,

i.e. the gradient handed to the optimizer becomes ∇L_{M_L} − s·√diag(F)⊙ξ (the sign of a
symmetric noise is immaterial). This module returns the unit-scale draw √diag(F)⊙ξ; the
consumer (``tfwd.noise.consumer``) multiplies by s and the distribution factors.

diag(F) per Dense/Conv2D layer is ``tfwd.curvature.diagonal.diagonal_fisher`` (paper 002
appendix C): 1/B Σ_b (ã_b∘ã_b)(g_b∘g_b)ᵀ, exact for Dense; for Conv2D summed over output
locations, which ignores the cross-location terms of the per-example kernel gradient.
Variables of layers without capture (batch-norm γ/β, unsupported layers) get no noise.
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.curvature.diagonal import diagonal_fisher
from tfwd.noise.batch import NoiseBatch, standard_normal, substream


def sample(batch: NoiseBatch, layers, key: tf.Tensor) -> dict[int, tf.Tensor]:
    """{variable index: √diag(F)⊙ξ} for the kernels and biases of ``layers``."""

    def draw(position, block, inputs, gradients):
        std = tf.sqrt(tf.maximum(diagonal_fisher(block, inputs, gradients), 0.0))
        return std * standard_normal(tf.shape(std), substream(key, position), std.dtype)

    return batch.layerwise(layers, draw)
