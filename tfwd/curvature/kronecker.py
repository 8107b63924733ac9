"""Kronecker-factored blocks: Dense (inputs of any rank), EinsumDense, Conv1D, Conv2D.

Each of these layers computes, at each of T positions t of an example b, s_bt = W̃ᵀ ã_bt with
the [d_in, d_out] matrix W̃ = [W; b] (the bias as the last row, "homogeneous coordinate" ã =
[a, 1]) — T = 1 for a Dense layer on [B, d]; the extra axes of a Dense/EinsumDense on
[B, T, …, d]; the output pixels of a convolution, whose ã is the input patch. With the
per-example gradients g_bt = ∂ℓ_b/∂s_bt, the layer's exact curvature block is
E_b[vec(Σ_t ã_bt g_btᵀ) vec(…)ᵀ], and K-FAC approximates it by a Kronecker product
(row-major vec, so that C = A ⊗ G and C⁻¹ vec(X) = vec(A⁻¹ X G⁻¹)):

* KFAC-expand (default; Eschenhagen et al., NeurIPS 2023, "Kronecker-Factored Approximate
  Curvature for Modern Neural Network Architectures", §3.1, eq. 8; for convolutions it is KFC,
  Grosse & Martens 2016, under the SH/SUD assumptions):

      A = 1/(B·T) Σ_{b,t} ã_bt ã_btᵀ,     G = 1/B Σ_{b,t} g_bt g_btᵀ

  ("mean over positions on A, sum on G"); it treats the T positions as independent examples.
* KFAC-reduce (same paper, §3.2, eq. 10): positions aggregated before the outer products,

      A = 1/B Σ_b ā_b ā_bᵀ,  ā_b = 1/T Σ_t ã_bt;     G = 1/B Σ_b ĝ_b ĝ_bᵀ,  ĝ_b = Σ_t g_bt,

  exact when the inputs are the same at every position.

Both are K-FAC's A = E[ããᵀ], G = E[ggᵀ] when T = 1 (Martens & Grosse 2015, §3), exact for a
batch of one example. Damped inverses: factored Tikhonov damping with the π split
(``tfwd.curvature.inverse``, by Cholesky or eigh); the preconditioned gradient is
A_λ⁻¹ ∇W̃ G_λ⁻¹.
"""
from __future__ import annotations

import dataclasses
import string

import keras
import tensorflow as tf

from tfwd.choices.kfac import WeightSharing
from tfwd.curvature.block import CurvatureBlock, Record, StateSpec, UnsupportedLayerError
from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.inverse import damped_inverses, factor_inverse_flops, precondition
from tfwd.curvature.low_rank import (GradientFactors, LowRankDirection, factored_direction,
                                     gradient_inner_product, gradient_matrix)


def check_float_kernel(layer) -> None:
    if getattr(layer, "quantization_mode", None) is not None:
        raise UnsupportedLayerError(f"Layer {layer.name!r} is quantized; K-FAC needs float kernels.")
    if getattr(layer, "lora_enabled", False):
        raise UnsupportedLayerError(f"Layer {layer.name!r} uses LoRA, which K-FAC does not support.")


def kronecker_to_dense(A: tf.Tensor, G: tf.Tensor) -> tf.Tensor:
    """A ⊗ G as a dense matrix."""
    m, n = A.shape[0], G.shape[0]
    return tf.reshape(A[:, tf.newaxis, :, tf.newaxis] * G[tf.newaxis, :, tf.newaxis, :],
                      [m * n, m * n])


class KroneckerFactoredBlock(CurvatureBlock):
    """C = A ⊗ G for a layer s = W̃ᵀã at T positions (module docstring for A and G).

    Subclasses say how the layer's input becomes rows ã ([B, T, d_in], ``input_rows``), its
    pre-activation gradients rows g ([B, T, d_out], ``output_rows``), how the kernel becomes
    the [d_in, d_out] matrix W (``kernel_matrix``/``kernel_from_matrix``) and the linear map
    itself (``linear``, without bias).
    """

    def input_rows(self, inputs: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def output_rows(self, output_gradients: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def kernel_matrix(self, kernel: tf.Tensor) -> tf.Tensor:
        return tf.reshape(kernel, [-1, self.output_dim])

    def kernel_from_matrix(self, matrix: tf.Tensor) -> tf.Tensor:
        return tf.reshape(matrix, self.layer.kernel.shape)

    def linear(self, inputs: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    # -- geometry
    @property
    def bias(self):
        return getattr(self.layer, "bias", None)

    @property
    def variables(self) -> list:
        return [self.layer.kernel] + ([self.bias] if self.bias is not None else [])

    @property
    def output_dim(self) -> int:
        raise NotImplementedError

    @property
    def input_dim(self) -> int:
        """Size of A: the kernel matrix's rows, plus one for the bias."""
        return self.layer.kernel.shape.num_elements() // self.output_dim + int(self.bias is not None)

    # -- forward
    def forward(self, inputs, *args, **kwargs):
        s = self.linear(inputs)
        if self.bias is not None:
            s = s + self.bias
        activation = getattr(self.layer, "activation", None)
        outputs = activation(s) if activation is not None else s
        return outputs, Record(inputs=inputs, preactivations=s)

    # -- statistics
    def _weight_shared(self, rows: tf.Tensor, aggregate) -> tf.Tensor:
        """[N, d] rows: every (b, t) for expand; one aggregate over t per example for reduce."""
        if self.options.weight_sharing == WeightSharing.REDUCE:
            return aggregate(rows, axis=1)
        return tf.reshape(rows, [-1, rows.shape[-1]])

    def input_statistics(self, record) -> list[tf.Tensor]:
        rows = self.input_rows(self.cast(record.inputs))
        if self.bias is not None:
            rows = tf.concat([rows, tf.ones_like(rows[..., :1])], axis=-1)
        flat = self._weight_shared(rows, tf.reduce_mean)
        return [tf.matmul(flat, flat, transpose_a=True) / tf.cast(tf.shape(flat)[0], flat.dtype)]

    def output_statistics(self, record, output_gradients) -> list[tf.Tensor]:
        rows = self.output_rows(self.cast(output_gradients))
        batch = tf.cast(tf.shape(rows)[0], rows.dtype)
        flat = self._weight_shared(rows, tf.reduce_sum)
        return [tf.matmul(flat, flat, transpose_a=True) / batch]

    # -- state, inverses, preconditioning
    def factor_specs(self) -> list[StateSpec]:
        return [StateSpec("A", (self.input_dim, self.input_dim)),
                StateSpec("G", (self.output_dim, self.output_dim))]

    def inverse_specs(self) -> list[StateSpec]:
        return [StateSpec("A_inverse", (self.input_dim, self.input_dim), "identity"),
                StateSpec("G_inverse", (self.output_dim, self.output_dim), "identity")]

    def damped_inverses(self, factors, damping) -> list[tf.Tensor]:
        return list(damped_inverses(factors[0], factors[1], damping, self.options.inverse,
                                    self.name))

    def inverse_cost(self) -> int:
        method = self.options.inverse
        return (factor_inverse_flops(self.input_dim, method)
                + factor_inverse_flops(self.output_dim, method))

    def to_matrix(self, kernel_value, bias_value=None) -> tf.Tensor:
        """W̃ (or its gradient) as the [input_dim, output_dim] matrix [W; b]."""
        matrix = self.kernel_matrix(kernel_value)
        if self.bias is not None:
            matrix = tf.concat([matrix, tf.reshape(bias_value, [1, -1])], axis=0)
        return matrix

    def precondition(self, gradients, inverses) -> list:
        matrix = self.to_matrix(*gradients)
        return self._variables_from_matrix(precondition(matrix, inverses[0], inverses[1]))

    def _variables_from_matrix(self, direction: tf.Tensor) -> list:
        """[kernel, bias] shaped values of a [d_in, d_out] matrix in ``to_matrix`` layout."""
        if self.bias is None:
            return [self.kernel_from_matrix(direction)]
        return [self.kernel_from_matrix(direction[:-1]),
                tf.reshape(direction[-1], self.bias.shape)]

    def to_dense(self, factors) -> tf.Tensor:
        """A ⊗ G: θ = [kernel.ravel(), bias] is the row-major vec of W̃ when the kernel matrix
        is the row-major reshape of the kernel (true for every block here but EinsumDense,
        whose ``variables_vector`` permutes the kernel accordingly)."""
        return kronecker_to_dense(factors[0], factors[1])


class DenseBlock(KroneckerFactoredBlock):
    """``keras.layers.Dense`` on inputs [B, …, d_in]: the extra axes are the T positions.

    Its gradient has rank ≤ B·T, so it can also be preconditioned through its per-example
    factors (``tfwd.curvature.low_rank``): ``gradient_factors``, ``precondition_low_rank``,
    ``low_rank_variables`` and ``gradients_from_factors``.
    """

    def gradient_factors(self, record: Record) -> GradientFactors:
        """Ã [N, d_in] and Ĝ = g/B [N, d_out] with ∇W̃ = ÃᵀĜ of the mean loss, from the
        record's inputs and per-example pre-activation gradients (N = B·T rows)."""
        rows = self.input_rows(self.cast(record.inputs))
        if self.bias is not None:
            rows = tf.concat([rows, tf.ones_like(rows[..., :1])], axis=-1)
        gradients = self.output_rows(self.cast(record.example_gradients))
        batch = tf.cast(tf.shape(gradients)[0], gradients.dtype)
        return GradientFactors(tf.reshape(rows, [-1, self.input_dim]),
                               tf.reshape(gradients, [-1, self.output_dim]) / batch)

    def precondition_low_rank(self, factors: GradientFactors, inverses,
                              l2_terms=None) -> LowRankDirection:
        """P = A_λ⁻¹ g̃ G_λ⁻¹ and ⟨g̃, P⟩ (KL clipping's term) for g̃ = ÃᵀĜ + γW̃, neither
        through the dense ÃᵀĜ (``tfwd.curvature.low_rank``); ``low_rank_variables`` gives P
        per variable.

        The γW̃ part (``l2_terms``: [γ·kernel, γ·bias] or None) is preconditioned densely,
        P_γ = A_λ⁻¹ γW̃ G_λ⁻¹, and ⟨g̃, P⟩ = ⟨ÃᵀĜ, P_F⟩ + ⟨Ĝ, Ã·P_γ⟩ + ⟨γW̃, P⟩ with
        P_F = (A_λ⁻¹Ãᵀ)(ĜG_λ⁻¹) and P = P_F + P_γ.
        """
        halves = factored_direction(factors, inverses[0], inverses[1])
        inner = gradient_inner_product(factors, halves)
        if l2_terms is None:
            return LowRankDirection(inner, halves=halves)
        l2_matrix = self.to_matrix(*l2_terms)
        l2_direction = precondition(l2_matrix, inverses[0], inverses[1])
        direction = halves.matrix() + l2_direction
        inner += (tf.reduce_sum(tf.matmul(factors.inputs, l2_direction) * factors.output_gradients)
                  + tf.reduce_sum(l2_matrix * direction))
        return LowRankDirection(inner, matrix=direction)

    def low_rank_variables(self, direction: LowRankDirection, scale=None) -> list:
        """[kernel, bias] of scale·P (``scale`` None: P). From P's halves the kernel rows and
        the bias row are separate products of (scale·left) with right: P is never formed
        whole, scaled or sliced."""
        if direction.matrix is not None:
            matrix = direction.matrix
            return self._variables_from_matrix(
                matrix if scale is None else tf.cast(scale, matrix.dtype) * matrix)
        left, right = direction.halves.left, direction.halves.right
        if scale is not None:
            left = tf.cast(scale, left.dtype) * left
        if self.bias is None:
            return [self.kernel_from_matrix(tf.matmul(left, right))]
        return [self.kernel_from_matrix(tf.matmul(left[:-1], right)),
                tf.reshape(tf.matmul(left[-1:], right), self.bias.shape)]

    def gradients_from_factors(self, factors: GradientFactors) -> list:
        """[∇kernel, ∇bias] of ∇W̃ = ÃᵀĜ (the tape's gradient, up to round-off)."""
        return self._variables_from_matrix(gradient_matrix(factors))

    @classmethod
    def check(cls, layer) -> None:
        check_float_kernel(layer)

    @property
    def output_dim(self) -> int:
        return self.layer.kernel.shape[-1]

    def linear(self, inputs):
        return keras.ops.matmul(inputs, self.layer.kernel)

    def input_rows(self, inputs):
        return tf.reshape(inputs, [tf.shape(inputs)[0], -1, inputs.shape[-1]])

    def output_rows(self, output_gradients):
        return tf.reshape(output_gradients, [tf.shape(output_gradients)[0], -1, self.output_dim])


class Conv2DBlock(KroneckerFactoredBlock):
    """``keras.layers.Conv2D`` (channels_last, groups=1, same/valid padding): KFC, ã the patch."""

    @classmethod
    def check(cls, layer) -> None:
        check_float_kernel(layer)
        if layer.data_format != "channels_last":
            raise UnsupportedLayerError(
                f"Conv2D {layer.name!r} uses {layer.data_format}; only channels_last is supported.")
        if layer.groups != 1:
            raise UnsupportedLayerError(f"Conv2D {layer.name!r} has groups={layer.groups}; need 1.")
        if layer.padding not in ("same", "valid"):
            raise UnsupportedLayerError(f"Conv2D {layer.name!r} padding {layer.padding!r}.")

    @property
    def output_dim(self) -> int:
        return self.layer.kernel.shape[-1]

    def linear(self, inputs):
        return self.layer.convolution_op(inputs, self.layer.kernel)

    def input_rows(self, inputs):
        # The patches of the existing geometry; the homogeneous 1 is appended by the base.
        geometry = dataclasses.replace(KroneckerBlock.for_layer(self.layer), has_bias=False)
        return geometry.input_rows(inputs)

    def output_rows(self, output_gradients):
        return tf.reshape(output_gradients, [tf.shape(output_gradients)[0], -1, self.output_dim])


class Conv1DBlock(KroneckerFactoredBlock):
    """``keras.layers.Conv1D`` (channels_last, groups=1; valid, same or causal padding): KFC
    in one dimension, ã the [kernel_size · C_in] input window of each output step."""

    @classmethod
    def check(cls, layer) -> None:
        check_float_kernel(layer)
        if layer.data_format != "channels_last":
            raise UnsupportedLayerError(
                f"Conv1D {layer.name!r} uses {layer.data_format}; only channels_last is supported.")
        if layer.groups != 1:
            raise UnsupportedLayerError(f"Conv1D {layer.name!r} has groups={layer.groups}; need 1.")

    @property
    def output_dim(self) -> int:
        return self.layer.kernel.shape[-1]

    def linear(self, inputs):
        if self.layer.padding == "causal":  # as keras Conv1D: left-pad, then valid
            inputs = self._causal_pad(inputs)
        return self.layer.convolution_op(inputs, self.layer.kernel)

    def _causal_pad(self, inputs):
        left = self.layer.dilation_rate[0] * (self.layer.kernel_size[0] - 1)
        return tf.pad(inputs, [[0, 0], [left, 0], [0, 0]])

    def input_rows(self, inputs):
        padding = self.layer.padding
        if padding == "causal":
            inputs, padding = self._causal_pad(inputs), "valid"
        patches = tf.image.extract_patches(
            inputs[:, tf.newaxis], sizes=[1, 1, self.layer.kernel_size[0], 1],
            strides=[1, 1, self.layer.strides[0], 1], rates=[1, 1, self.layer.dilation_rate[0], 1],
            padding=padding.upper())
        return tf.reshape(patches, [tf.shape(inputs)[0], -1, patches.shape[-1]])

    def output_rows(self, output_gradients):
        return tf.reshape(output_gradients, [tf.shape(output_gradients)[0], -1, self.output_dim])


class EinsumLayout:
    """How an EinsumDense equation is a Dense over rows: s[b, t…, f…] = Σ_c a[b, t…, c…] W[c…, f…].

    Input axes: the batch axis (first), shared axes t (also in the output: the T positions)
    and contracted axes c (also in the kernel). Kernel axes: contracted c and free f (also in
    the output). Kernel axes that are also batch/shared axes (per-position weights) or summed
    axes are not a Dense and are rejected.
    """

    def __init__(self, equation: str, input_rank: int, kernel_shape, name: str):
        inputs, rest = equation.replace(" ", "").split(",")
        kernel, output = rest.split("->")
        if "..." in inputs:
            spare = [c for c in string.ascii_letters if c not in equation]
            fill = "".join(spare[: input_rank - (len(inputs) - 3)])
            inputs, output = inputs.replace("...", fill), output.replace("...", fill)
        if "..." in kernel or len(inputs) != input_rank:
            raise UnsupportedLayerError(f"EinsumDense {name!r}: cannot read equation {equation!r}.")
        self.inputs, self.kernel, self.output = inputs, kernel, output
        self.sizes = dict(zip(kernel, kernel_shape))  # every contracted and free axis
        self.batch = inputs[0]
        self.shared = [c for c in inputs[1:] if c in output and c not in kernel]
        self.contracted = [c for c in inputs if c in kernel and c not in output]
        self.free = [c for c in output if c in kernel and c not in inputs]
        if (self.batch in kernel or self.batch not in output
                or sorted(self.shared + self.contracted) != sorted(inputs[1:])
                or sorted(self.contracted + self.free) != sorted(kernel)
                or sorted([self.batch] + self.shared + self.free) != sorted(output)):
            raise UnsupportedLayerError(
                f"EinsumDense {name!r}: equation {equation!r} is not a Dense map over positions "
                "(a kernel axis shared with the input and output, or an axis summed away).")

    @staticmethod
    def _permutation(source: str, target) -> list[int]:
        return [source.index(c) for c in target]

    def kernel_to_matrix(self, kernel):
        ordered = tf.transpose(kernel, self._permutation(self.kernel, self.contracted + self.free))
        return tf.reshape(ordered, [self.size(self.contracted), self.size(self.free)])

    def size(self, axes) -> int:
        total = 1
        for c in axes:
            total *= self.sizes[c]
        return total

    def matrix_to_kernel(self, matrix, kernel_shape):
        order = self.contracted + self.free
        ordered_shape = [kernel_shape[self.kernel.index(c)] for c in order]
        ordered = tf.reshape(matrix, ordered_shape)
        return tf.transpose(ordered, self._permutation("".join(order), self.kernel))

    def rows(self, tensor, spec: str, last):
        """[B, T, d] rows of ``tensor`` (axes ``spec``): batch, shared, then ``last`` axes."""
        ordered = tf.transpose(tensor, self._permutation(spec, [self.batch] + self.shared + last))
        return tf.reshape(ordered, [tf.shape(tensor)[0], -1, self.size(last)])


class EinsumDenseBlock(KroneckerFactoredBlock):
    """``keras.layers.EinsumDense`` as a Dense over its shared axes (``EinsumLayout``); covers
    MultiHeadAttention's query/key/value ("abc,cde->abde") and output ("abcd,cde->abe")
    projections. The bias must span exactly the free kernel axes (as MultiHeadAttention's)."""

    def __init__(self, layer, options):
        super().__init__(layer, options)
        self.layout = EinsumLayout(layer.equation, _input_rank(layer), layer.kernel.shape,
                                   layer.name)
        if self.bias is not None and sorted(layer.bias_axes) != sorted(self.layout.free):
            raise UnsupportedLayerError(
                f"EinsumDense {layer.name!r}: bias_axes {layer.bias_axes!r} differ from the "
                f"kernel's output axes {''.join(self.layout.free)!r}.")

    @classmethod
    def check(cls, layer) -> None:
        check_float_kernel(layer)

    @property
    def output_dim(self) -> int:
        return self.layout.size(self.layout.free)

    def linear(self, inputs):
        return keras.ops.einsum(self.layer.equation, inputs, self.layer.kernel)

    def kernel_matrix(self, kernel):
        return self.layout.kernel_to_matrix(kernel)

    def kernel_from_matrix(self, matrix):
        return self.layout.matrix_to_kernel(matrix, self.layer.kernel.shape)

    def input_rows(self, inputs):
        return self.layout.rows(inputs, self.layout.inputs, self.layout.contracted)

    def output_rows(self, output_gradients):
        return self.layout.rows(output_gradients, self.layout.output, self.layout.free)

    def variables_vector(self, kernel, bias=None) -> tf.Tensor:
        """θ in the order of ``to_dense``: the row-major vec of W̃ = [kernel matrix; bias]."""
        return tf.reshape(self.to_matrix(kernel, bias), [-1])


def _input_rank(layer) -> int:
    """Rank of the layer's input: from the equation, or from its symbolic input for '...'."""
    inputs = layer.equation.split(",")[0]
    if "..." not in inputs:
        return len(inputs)
    try:
        return len(layer.input.shape)
    except (AttributeError, ValueError) as error:
        raise UnsupportedLayerError(
            f"EinsumDense {layer.name!r} uses '...' and was never called on a symbolic input; "
            "K-FAC cannot tell its input rank.") from error
