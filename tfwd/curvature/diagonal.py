"""Diagonal of a layer's empirical Fisher block from per-example activations and gradients.

For a layer computing s = ã·W̃ (``KroneckerBlock`` notation: ã = [a, 1] with a bias, W̃ the
[input_dim, output_dim] matrix [W; b]) the per-example gradient of a Dense layer is the outer
product ∇W̃_b = ã_b g_bᵀ with g_b = ∂ℓ_b/∂s_b, so its square is (ã_b∘ã_b)(g_b∘g_b)ᵀ and

    diag(F_layer) = 1/B Σ_b (ã_b∘ã_b)(g_b∘g_b)ᵀ           (paper 002, appendix C.1)

exactly, as one [input_dim, output_dim] matmul of the squared activations and gradients.

For Conv2D (and a Dense layer applied over extra axes) the per-example gradient is a sum over
the T output locations, ∇W̃_b = Σ_t ã_bt g_btᵀ; we use the per-location form of paper 002
appendix C.2,

    diag(F_layer) ≈ 1/B Σ_b Σ_t (ã_bt∘ã_bt)(g_bt∘g_bt)ᵀ,

which drops the cross-location terms 2 Σ_{t<t'} (ã_bt∘ã_bt')(g_bt∘g_bt')ᵀ of (Σ_t ã_bt g_btᵀ)²
(exact when T = 1). It is the diagonal analogue of KFC's spatially uncorrelated derivatives.

For Conv2D, Σ_{b,t} (ã_bt∘ã_bt)(g_bt∘g_bt)ᵀ is the kernel gradient of the same convolution
with input a∘a and output gradient g∘g (a patch of a∘a is the square of a patch of a), so it
is computed by one ``Conv2DBackpropFilter`` without materialising the patches.
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock


def diagonal_fisher(block: KroneckerBlock, inputs: tf.Tensor, output_gradients: tf.Tensor) -> tf.Tensor:
    """diag(F) of one layer in ``block.to_matrix`` layout ([input_dim, output_dim]).

    ``inputs`` is the layer input a ([B, …]); ``output_gradients`` the per-example
    g = ∂ℓ_b/∂s (no 1/B), shaped like the pre-activations.
    """
    batch = tf.cast(tf.shape(inputs)[0], inputs.dtype)
    squared_gradients = tf.square(output_gradients)
    if block.is_conv:
        kernel_part = tf.raw_ops.Conv2DBackpropFilter(
            input=tf.square(inputs),
            filter_sizes=block.kernel_shape,
            out_backprop=squared_gradients,
            strides=[1, *block.strides, 1],
            padding=block.padding.upper(),
            dilations=[1, *block.dilation_rate, 1],
        )
        bias_part = tf.reduce_sum(squared_gradients, axis=[0, 1, 2]) if block.has_bias else None
        return block.to_matrix(kernel_part, bias_part) / batch
    rows = block.input_rows(inputs)  # [B, T, input_dim]
    squared_inputs = tf.reshape(tf.square(rows), [-1, block.input_dim])
    squared_gradients = tf.reshape(squared_gradients, [-1, block.output_dim])
    return tf.matmul(squared_inputs, squared_gradients, transpose_a=True) / batch
