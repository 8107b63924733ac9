"""The Dense/Conv2D geometry (patches, [W; b] layout, A and G) the noise and diagnostics use.

K-FAC's blocks (every layer kind, with expand/reduce) are ``tfwd.curvature.kronecker`` and its
siblings behind ``tfwd.curvature.block.CurvatureBlock``; their Dense/Conv2D factors are these.

For a layer computing s = ã·W̃ at each of T locations (T = 1 for Dense; the output pixels for
Conv2D, whose ã is the input patch), with ã = [a, 1] when the layer has a bias (the bias as the
last row of W̃, "homogeneous coordinate"), and g = ∂ℓ/∂s the back-propagated per-example
gradient of the pre-activations (K-FAC, Martens & Grosse 2015, §3):

    F_block = E[vec(∇W̃) vec(∇W̃)ᵀ] ≈ G ⊗ A     (column-major vec of the [d_in, d_out] W̃)
    A = 1/(B·T) Σ_b Σ_t ã_bt ã_btᵀ            (mean over examples and locations)
    G = 1/B     Σ_b Σ_t g_bt g_btᵀ            (sum over locations, mean over examples)

For Dense (T = 1) this is K-FAC's A = E[ããᵀ], G = E[ggᵀ], exact for a batch of one example.
For Conv2D it is KFC (Grosse & Martens 2016, eq. for Ω and Γ under the IAD/SH/SUD
assumptions): Σ_t E[ã_t ã_tᵀ] ⊗ E[g_t g_tᵀ] = (T·E_t[ããᵀ]) ⊗ E_t[ggᵀ], and we keep the factor T
on G ("spatial sum on G, spatial mean on A") so G ⊗ A is the KFC block of the whole layer.
The natural-gradient direction of a block is then  A⁻¹ ∇W̃ G⁻¹  (vec((G⊗A)⁻¹vec X) = A⁻¹XG⁻¹).
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class KroneckerBlock:
    """Geometry of one layer's Kronecker block; the math lives in small methods below."""

    name: str
    kernel_shape: tuple
    has_bias: bool
    # Conv2D geometry (None for Dense).
    kernel_size: tuple | None = None
    strides: tuple | None = None
    dilation_rate: tuple | None = None
    padding: str | None = None

    @classmethod
    def for_layer(cls, layer) -> "KroneckerBlock":
        if isinstance(layer, keras.layers.Conv2D):
            return cls(
                name=layer.name,
                kernel_shape=tuple(layer.kernel.shape),
                has_bias=layer.use_bias,
                kernel_size=tuple(layer.kernel_size),
                strides=tuple(layer.strides),
                dilation_rate=tuple(layer.dilation_rate),
                padding=layer.padding,
            )
        return cls(name=layer.name, kernel_shape=tuple(layer.kernel.shape), has_bias=layer.use_bias)

    @property
    def is_conv(self) -> bool:
        return self.kernel_size is not None

    @property
    def input_dim(self) -> int:
        """Size of A: the flattened kernel's rows, plus one for the bias."""
        rows = 1
        for size in self.kernel_shape[:-1]:
            rows *= size
        return rows + int(self.has_bias)

    @property
    def output_dim(self) -> int:
        """Size of G: the number of output units / channels."""
        return self.kernel_shape[-1]

    def input_rows(self, inputs: tf.Tensor) -> tf.Tensor:
        """ã as a [B, T, input_dim] tensor: patches for Conv2D, the input for Dense."""
        if self.is_conv:
            kh, kw = self.kernel_size
            patches = tf.image.extract_patches(
                inputs,
                sizes=[1, kh, kw, 1],
                strides=[1, *self.strides, 1],
                rates=[1, *self.dilation_rate, 1],
                padding=self.padding.upper(),
            )
            rows = tf.reshape(patches, [tf.shape(inputs)[0], -1, patches.shape[-1]])
        else:
            rows = tf.reshape(inputs, [tf.shape(inputs)[0], -1, inputs.shape[-1]])
        if self.has_bias:
            rows = tf.concat([rows, tf.ones_like(rows[..., :1])], axis=-1)
        return rows

    def input_factor(self, inputs: tf.Tensor) -> tf.Tensor:
        """A = 1/(B·T) Σ_{b,t} ã ãᵀ."""
        rows = self.input_rows(inputs)
        flat = tf.reshape(rows, [-1, rows.shape[-1]])
        return tf.matmul(flat, flat, transpose_a=True) / tf.cast(tf.shape(flat)[0], flat.dtype)

    def output_factor(self, output_gradients: tf.Tensor) -> tf.Tensor:
        """G = 1/B Σ_{b,t} g gᵀ from per-example gradients g = ∂ℓ_b/∂s."""
        batch = tf.cast(tf.shape(output_gradients)[0], output_gradients.dtype)
        flat = tf.reshape(output_gradients, [-1, self.output_dim])
        return tf.matmul(flat, flat, transpose_a=True) / batch

    def to_matrix(self, kernel_value, bias_value=None) -> tf.Tensor:
        """W̃ (or its gradient) as the [input_dim, output_dim] matrix [W; b]."""
        matrix = tf.reshape(kernel_value, [-1, self.output_dim])
        if self.has_bias:
            matrix = tf.concat([matrix, tf.reshape(bias_value, [1, -1])], axis=0)
        return matrix

    def from_matrix(self, matrix: tf.Tensor):
        """Inverse of ``to_matrix``: (kernel-shaped tensor, bias or None)."""
        if self.has_bias:
            kernel_rows, bias_row = matrix[:-1], matrix[-1]
        else:
            kernel_rows, bias_row = matrix, None
        return tf.reshape(kernel_rows, self.kernel_shape), bias_row
