"""Trace (isotropic) Fisher noise — "Fisher Trace" of paper 002 (§4.3, Table 1).

Isotropic Gaussian noise with the total variance of the Fisher noise:

    n = √(t̂/d) · ξ,   ξ ~ N(0, I_d),   E[t̂] = tr(F̂),   so   Cov[n] = (tr(F̂)/d) · I,

d the number of trainable parameters that receive a gradient. The consumer scales n by
s = √((M_L − M_S)/(M_L·M_S)), so tr(Cov) = s²·tr(F̂) equals that of the full and diagonal
Fisher noise. Convention: the paper's text writes D = √Tr(F) (times I), d times more total
variance; matching the trace — as ``tfwd.noise.quadratic``'s "isotropic" kind does — makes the
kinds differ only in the *structure* of the noise.

tr(F̂) = 1/B Σ_b ‖∇ℓ_b‖² is a sum over variables, and t̂ adds one term per group:

* a Dense layer on [B, d_in] inputs: its per-example gradient ã_b g_bᵀ has squared norm
  ‖ã_b‖²‖g_b‖², so its share 1/B Σ_b ‖ã_b‖²‖g_b‖² is exact, from the captured a and the
  per-example pre-activation gradients g of the training step's backward pass;
* every other variable (Conv2D layers, whose per-example gradients are sums over locations;
  batch-norm γ/β): ‖Σ_b σ_b ∇ℓ_b‖²/B with Rademacher signs σ_b (``NoiseBatch.
  sign_weighted_gradients``, shared with ``full_fisher``), unbiased since
  E_σ‖Σ_b σ_b ∇ℓ_b‖² = Σ_b ‖∇ℓ_b‖².

So E[t̂] = tr(F̂), and as ξ is independent of t̂ the per-coordinate variance of n is exactly
E[t̂]/d = tr(F̂)/d. Covers every trainable variable. With batch norm in training mode the
per-example gradients are those of ``tfwd.noise.batch`` (the K-FAC approximation).
"""
from __future__ import annotations

import math

import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock
from tfwd.noise.batch import NoiseBatch, standard_normal, substream


def dense_squared_norm_sum(inputs: tf.Tensor, output_gradients: tf.Tensor,
                           with_bias: bool) -> tf.Tensor:
    """Σ_b ‖ã_b g_bᵀ‖² = Σ_b ‖ã_b‖²‖g_b‖² for a Dense layer on [B, d_in] inputs (ã = [a, 1])."""
    input_norms = tf.reduce_sum(tf.square(inputs), axis=-1) + (1.0 if with_bias else 0.0)
    return tf.reduce_sum(input_norms * tf.reduce_sum(tf.square(output_gradients), axis=-1))


def _is_single_location_dense(block: KroneckerBlock, inputs: tf.Tensor) -> bool:
    return not block.is_conv and inputs.shape.rank == 2


def sample(batch: NoiseBatch, layers, key: tf.Tensor) -> dict[int, tf.Tensor]:
    """{variable index: √(t̂/d)·ξ} for every variable with a gradient."""
    indices = batch.noisy_indices
    # All layers' g at once (one backward pass if the step kept none; the signed sums reuse it).
    per_example = dict(zip([layer.name for layer in layers], batch.preactivation_gradients(layers)))
    exact_layers = [layer for layer in layers
                    if _is_single_location_dense(KroneckerBlock.for_layer(layer),
                                                 batch.records[layer.name].inputs)]
    dtype = batch.dtype
    exact_indices = set()
    squared_norms = [tf.zeros([], dtype)]
    for layer in exact_layers:
        gradients = per_example[layer.name]
        kernel, bias = batch.layer_indices(layer)
        if kernel not in indices:
            continue
        with_bias = bias is not None and bias in indices
        exact_indices.update([kernel, bias] if with_bias else [kernel])
        squared_norms.append(dense_squared_norm_sum(batch.inputs(layer), gradients, with_bias))
    signed_layers = [layer for layer in layers if all(layer is not e for e in exact_layers)]
    signed = batch.sign_weighted_gradients(batch.signs(substream(key, 0)), signed_layers,
                                           [i for i in indices if i not in exact_indices])
    squared_norms += [tf.cast(tf.reduce_sum(tf.square(value)), dtype) for value in signed.values()]
    trace_estimate = tf.add_n(squared_norms) / batch.batch_size
    dimension = sum(math.prod(batch.variables[i].shape) for i in indices)
    std = tf.sqrt(trace_estimate / dimension)
    return {
        i: std * standard_normal(tf.shape(batch.gradients[i]), substream(key, 1 + i), std.dtype)
        for i in indices
    }
