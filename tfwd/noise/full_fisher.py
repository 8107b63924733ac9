"""Full (empirical) Fisher noise — the "naive" method of paper 002 (§2.2, eq. 5).

D = s·√F with s = √((M_L − M_S)/(M_L·M_S)). F is never formed: with Rademacher signs σ_b
(paper 002 §3.3, docs/equations.md §5)

    n = (1/√B) Σ_b σ_b ∇ℓ_b,    E[n] = 0,    Cov[n] = 1/B Σ_b ∇ℓ_b ∇ℓ_bᵀ = F̂,

the empirical Fisher of the current batch. n is not Gaussian, but it has the full-Fisher
covariance, which is all eq. 2 specifies to second order. It covers every trainable variable
connected to the logits (batch-norm γ/β included), all with the same signs σ_b, so F̂ keeps
its cross-layer blocks.

No extra backward pass for the Dense/Conv2D layers (``NoiseBatch.sign_weighted_gradients``):
their per-example gradients are ∇W̃ ℓ_b = Σ_t ã_bt g_btᵀ, so the signed sum is the weight
gradient Σ_{b,t} ã_bt (σ_b g_bt)ᵀ of the captured inputs a and the per-example pre-activation
gradients g that the training step's own backward pass recorded — one matmul (Dense) or one
``Conv2DBackpropFilter`` (Conv2D) per layer. Other variables (batch-norm γ/β, unsupported
layers) take their share from one backward pass of σ⊙u restricted to them, only when the
model has some. With batch norm in training mode the examples interact and these
"per-example" gradients are those of ``tfwd.noise.batch`` (ã_b g_bᵀ with g_b the batch's
back-propagated gradient, the K-FAC approximation); Cov[n] = 1/B Σ_b w_b w_bᵀ for those w_b.
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.noise.batch import NoiseBatch, substream


def sample(batch: NoiseBatch, layers, key: tf.Tensor) -> dict[int, tf.Tensor]:
    """{variable index: (1/√B) Σ_b σ_b ∇ℓ_b} for every variable with a gradient."""
    signed = batch.sign_weighted_gradients(batch.signs(substream(key, 0)), layers,
                                           batch.noisy_indices)
    scale = tf.math.rsqrt(batch.batch_size)
    return {i: scale * value for i, value in signed.items()}
