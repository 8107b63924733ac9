"""Sums of per-example outer products of a layer, and its diagonal empirical Fisher block.

For a layer computing s = ã·W̃ at each of T locations (``KroneckerBlock`` notation: ã = [a, 1]
with a bias, W̃ the [input_dim, output_dim] matrix [W; b]; T = 1 for Dense, the output pixels
for Conv2D, whose ã is the input patch), and any tensor y shaped like the pre-activations s,

    outer_product_sum(a, y, w) = Σ_b w_b Σ_t ã_bt y_btᵀ = ∂/∂W̃ Σ_{b,t} w_b y_btᵀ s_bt,

the layer's weight gradient for the output gradients w_b·y_bt (weights w = 1 by default): one
matmul for Dense, one ``Conv2DBackpropFilter`` for Conv2D (no patches are materialised), bias
row Σ_b w_b Σ_t y_bt. With y = g, the per-example g_b = ∂ℓ_b/∂s_b, and signs w = σ it is the
sign-weighted sum Σ_b σ_b ∇W̃ ℓ_b (``tfwd.noise.full_fisher``); with random y and w = 1 it
applies the data factor Ãᵀ of the Kronecker factor A (``tfwd.noise.kfac``).

The diagonal Fisher. The per-example gradient of a Dense layer is the outer product
∇W̃_b = ã_b g_bᵀ, so its square is (ã_b∘ã_b)(g_b∘g_b)ᵀ and

    diag(F_layer) = 1/B Σ_b (ã_b∘ã_b)(g_b∘g_b)ᵀ           (paper 002, appendix C.1)

exactly: ``outer_product_sum`` of the squared activations and gradients (ã∘ã = [a∘a, 1]).

For Conv2D (and a Dense layer applied over extra axes) the per-example gradient is a sum over
the T output locations, ∇W̃_b = Σ_t ã_bt g_btᵀ; we use the per-location form of paper 002
appendix C.2,

    diag(F_layer) ≈ 1/B Σ_b Σ_t (ã_bt∘ã_bt)(g_bt∘g_bt)ᵀ,

which drops the cross-location terms 2 Σ_{t<t'} (ã_bt∘ã_bt')(g_bt∘g_bt')ᵀ of (Σ_t ã_bt g_btᵀ)²
(exact when T = 1). It is the diagonal analogue of KFC's spatially uncorrelated derivatives.
A patch of a∘a is the square of a patch of a, so for Conv2D this too is one
``Conv2DBackpropFilter``, of input a∘a and output gradient g∘g.
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock


def outer_product_sum(block: KroneckerBlock, inputs: tf.Tensor, output_gradients: tf.Tensor,
                      example_weights: tf.Tensor | None = None) -> tf.Tensor:
    """Σ_b w_b Σ_t ã_bt y_btᵀ in ``block.to_matrix`` layout ([input_dim, output_dim]).

    ``inputs`` is the layer input a ([B, …]); ``output_gradients`` any y shaped like the
    layer's pre-activations; ``example_weights`` w ([B]) default to 1. w multiplies whichever
    of a and y has fewer elements (a for a first convolution on a 1-channel image). The bias
    row Σ_b w_b Σ_t y_bt is a [1, B·T] × [B·T, output_dim] matmul, much faster on CPU than a
    column reduction when output_dim is small.
    """
    input_size, output_size = (t.shape[1:].num_elements() for t in (inputs, output_gradients))
    weight_inputs = (example_weights is not None and None not in (input_size, output_size)
                     and input_size < output_size)
    if example_weights is not None:
        def weighted(tensor):
            weights = tf.cast(example_weights, tensor.dtype)
            return tf.reshape(weights, [-1] + [1] * (tensor.shape.rank - 1)) * tensor
        if weight_inputs:
            inputs = weighted(inputs)
        else:
            output_gradients = weighted(output_gradients)
    columns = tf.reshape(output_gradients, [-1, block.output_dim])  # y_bt as [B·T, output_dim]
    if block.is_conv:
        kernel_part = tf.raw_ops.Conv2DBackpropFilter(
            input=inputs,
            filter_sizes=block.kernel_shape,
            out_backprop=output_gradients,
            strides=[1, *block.strides, 1],
            padding=block.padding.upper(),
            dilations=[1, *block.dilation_rate, 1],
        )
    else:
        rows = tf.reshape(inputs, [-1, inputs.shape[-1]])
        kernel_part = tf.matmul(rows, columns, transpose_a=True)
    bias_part = None
    if block.has_bias:
        if weight_inputs:  # w_b repeated over the T locations of example b
            locations = tf.shape(columns)[0] // tf.shape(example_weights)[0]
            row_weights = tf.reshape(tf.repeat(tf.cast(example_weights, columns.dtype), locations),
                                     [1, -1])
        else:
            row_weights = tf.ones([1, tf.shape(columns)[0]], columns.dtype)
        bias_part = tf.matmul(row_weights, columns)[0]
    return block.to_matrix(kernel_part, bias_part)


def diagonal_fisher(block: KroneckerBlock, inputs: tf.Tensor, output_gradients: tf.Tensor) -> tf.Tensor:
    """diag(F) of one layer in ``block.to_matrix`` layout ([input_dim, output_dim]).

    ``inputs`` is the layer input a ([B, …]); ``output_gradients`` the per-example
    g = ∂ℓ_b/∂s (no 1/B), shaped like the pre-activations.
    """
    batch = tf.cast(tf.shape(inputs)[0], inputs.dtype)
    return outer_product_sum(block, tf.square(inputs), tf.square(output_gradients)) / batch
