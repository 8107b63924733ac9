"""DepthwiseConv2D block: one Kronecker product per input channel (block-diagonal form).

A depthwise convolution with depth multiplier m filters each input channel c on its own:
its outputs c·m … c·m + m − 1 are s_btc = W_cᵀ ã_btc with ã_btc = [patch of channel c at
output pixel t (kh·kw values), 1] and the [kh·kw + 1, m] matrix W_c = [kernel[:, :, c, :]; bias_c].
Each channel is a small convolution of its own, so the block takes KFC's Kronecker
approximation (``tfwd.curvature.kronecker``: expand or reduce) per channel and drops the
couplings between channels ("block-diagonal form"; tensorflow/kfac instead treats depthwise
as a conv2d with a block-sparse kernel):

    C = blockdiag_c (A_c ⊗ G_c),   A_c = 1/(B·T) Σ_{b,t} ã_btc ã_btcᵀ,   G_c = 1/B Σ_{b,t} g_btc g_btcᵀ

(expand; reduce averages ã and sums g over t per example first). Exact for a batch of one
example, one output pixel and one input channel. Damping: the π split per channel.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfwd.choices.kfac import WeightSharing
from tfwd.curvature.block import CurvatureBlock, Record, StateSpec, UnsupportedLayerError
from tfwd.curvature.inverse import damped_inverses, factor_inverse_flops
from tfwd.curvature.kronecker import check_float_kernel


class DepthwiseConv2DBlock(CurvatureBlock):
    """``keras.layers.DepthwiseConv2D`` (channels_last, same/valid padding)."""

    @classmethod
    def check(cls, layer) -> None:
        check_float_kernel(layer)
        if layer.data_format != "channels_last":
            raise UnsupportedLayerError(
                f"DepthwiseConv2D {layer.name!r} uses {layer.data_format}; need channels_last.")
        if layer.padding not in ("same", "valid"):
            raise UnsupportedLayerError(f"DepthwiseConv2D {layer.name!r} padding {layer.padding!r}.")

    @property
    def variables(self) -> list:
        return [self.layer.kernel] + ([self.layer.bias] if self.layer.use_bias else [])

    @property
    def shape(self) -> tuple:
        """(kh·kw, C, m)."""
        kh, kw, channels, multiplier = self.layer.kernel.shape
        return kh * kw, channels, multiplier

    @property
    def rows(self) -> int:
        return self.shape[0] + int(self.layer.use_bias)

    def forward(self, inputs, *args, **kwargs):
        layer = self.layer
        s = keras.ops.depthwise_conv(inputs, layer.kernel, strides=layer.strides,
                                     padding=layer.padding, dilation_rate=layer.dilation_rate,
                                     data_format=layer.data_format)
        if layer.use_bias:
            s = s + layer.bias
        outputs = layer.activation(s) if layer.activation is not None else s
        return outputs, Record(inputs=inputs, preactivations=s)

    def _shared(self, tensor, aggregate):
        """[B, T, C, n] → [N, C, n]: all (b, t) for expand, one aggregate per b for reduce."""
        if self.options.weight_sharing == WeightSharing.REDUCE:
            return aggregate(tensor, axis=1)
        return tf.reshape(tensor, [-1, *tensor.shape[2:]])

    def input_statistics(self, record) -> list:
        inputs = self.cast(record.inputs)
        kh, kw = self.layer.kernel_size
        patches = tf.image.extract_patches(
            inputs, sizes=[1, kh, kw, 1], strides=[1, *self.layer.strides, 1],
            rates=[1, *self.layer.dilation_rate, 1], padding=self.layer.padding.upper())
        taps, channels, _ = self.shape
        rows = tf.reshape(patches, [tf.shape(inputs)[0], -1, taps, channels])
        rows = tf.transpose(rows, [0, 1, 3, 2])  # [B, T, C, kh·kw]
        if self.layer.use_bias:
            rows = tf.concat([rows, tf.ones_like(rows[..., :1])], axis=-1)
        flat = self._shared(rows, tf.reduce_mean)
        return [tf.einsum("nci,ncj->cij", flat, flat) / tf.cast(tf.shape(flat)[0], flat.dtype)]

    def output_statistics(self, record, output_gradients) -> list:
        g = self.cast(output_gradients)
        _, channels, multiplier = self.shape
        rows = tf.reshape(g, [tf.shape(g)[0], -1, channels, multiplier])
        batch = tf.cast(tf.shape(g)[0], g.dtype)
        flat = self._shared(rows, tf.reduce_sum)
        return [tf.einsum("nci,ncj->cij", flat, flat) / batch]

    def factor_specs(self) -> list[StateSpec]:
        _, channels, multiplier = self.shape
        return [StateSpec("A", (channels, self.rows, self.rows)),
                StateSpec("G", (channels, multiplier, multiplier))]

    def inverse_specs(self) -> list[StateSpec]:
        return [StateSpec(f"{spec.label}_inverse", spec.shape, "identity")
                for spec in self.factor_specs()]

    def damped_inverses(self, factors, damping) -> list:
        # Stacks [C, n, n]: one π per channel.
        return list(damped_inverses(factors[0], factors[1], damping, self.options.inverse,
                                    self.name))

    def inverse_cost(self) -> int:
        _, channels, multiplier = self.shape
        method = self.options.inverse
        return (factor_inverse_flops(self.rows, method, channels)
                + factor_inverse_flops(multiplier, method, channels))

    def _matrices(self, kernel, bias=None):
        """[C, rows, m]: W_c = [kernel[:, :, c, :]; bias_c] per channel."""
        taps, channels, multiplier = self.shape
        matrices = tf.transpose(tf.reshape(kernel, [taps, channels, multiplier]), [1, 0, 2])
        if bias is not None:
            matrices = tf.concat([matrices, tf.reshape(bias, [channels, 1, multiplier])], axis=1)
        return matrices

    def precondition(self, gradients, inverses) -> list:
        direction = tf.matmul(tf.matmul(inverses[0], self._matrices(*gradients)), inverses[1])
        taps = self.shape[0]
        kernel = tf.reshape(tf.transpose(direction[:, :taps], [1, 0, 2]), self.layer.kernel.shape)
        if not self.layer.use_bias:
            return [kernel]
        return [kernel, tf.reshape(direction[:, taps], self.layer.bias.shape)]

    def to_dense(self, factors) -> tf.Tensor:
        """θ = [kernel.ravel(), bias]: entry ((r·C + c)·m + j) is row r, channel c, output j."""
        A, G = factors
        _, channels, multiplier = self.shape
        identity = tf.eye(channels, dtype=A.dtype)
        dense = tf.einsum("crs,cjk,cd->rcjsdk", A, G, identity)
        size = self.rows * channels * multiplier
        return tf.reshape(dense, [size, size])
