"""Embedding block: a Dense layer on one-hot inputs, with a diagonal input factor.

An ``Embedding`` of a [V, d] table E looks up s_bt = E[i_bt] for the token ids i_bt of the T
positions of example b: a Dense layer s = Eᵀ onehot(i) without bias. Its K-FAC-expand
factors (``tfwd.curvature.kronecker``) are then

    A = 1/(B·T) Σ_{b,t} onehot(i_bt) onehot(i_bt)ᵀ = diag(n_v / (B·T))   (token frequencies)
    G = 1/B Σ_{b,t} g_bt g_btᵀ

with n_v the count of token v in the batch; A is diagonal exactly (tensorflow/kfac's
EmbeddingKFACFB makes the same observation). Exact for a batch of one example with one token.
Damping is the π-split Tikhonov damping of the Kronecker blocks with π² = (tr A / V)/(tr G / d).
The preconditioned gradient of a row v is (A_vv + π√λ)⁻¹ ∇E[v] G_λ⁻¹: only the rows looked up
in the batch are touched, so a sparse (``tf.IndexedSlices``) gradient stays sparse.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfwd.curvature.block import CurvatureBlock, Record, StateSpec
from tfwd.curvature.inverse import damped_inverse, factor_inverse_flops, pi_from_mean_eigenvalues
from tfwd.curvature.kronecker import check_float_kernel, kronecker_to_dense


def deduplicated(slices: tf.IndexedSlices) -> tf.IndexedSlices:
    """The same sparse tensor with each row index once (repeated rows summed)."""
    indices, positions = tf.unique(slices.indices)
    values = tf.math.unsorted_segment_sum(slices.values, positions, tf.shape(indices)[0])
    return tf.IndexedSlices(values, indices, slices.dense_shape)


class EmbeddingBlock(CurvatureBlock):
    """``keras.layers.Embedding``: C = diag(A) ⊗ G (module docstring)."""

    @classmethod
    def check(cls, layer) -> None:
        check_float_kernel(layer)

    @property
    def variables(self) -> list:
        return [self.layer.embeddings]

    @property
    def vocabulary(self) -> int:
        return self.layer.embeddings.shape[0]

    @property
    def output_dim(self) -> int:
        return self.layer.embeddings.shape[1]

    def forward(self, inputs, *args, **kwargs):
        ids = inputs if inputs.dtype in ("int32", "int64") else keras.ops.cast(inputs, "int32")
        s = keras.ops.take(self.layer.embeddings, ids, axis=0)
        s = keras.ops.cast(s, self.layer.compute_dtype)
        return s, Record(inputs=ids, preactivations=s)

    def input_statistics(self, record) -> list:
        ids = tf.reshape(tf.cast(record.inputs, tf.int32), [-1])
        counts = tf.math.unsorted_segment_sum(tf.ones_like(ids, self.dtype), ids, self.vocabulary)
        return [counts / tf.cast(tf.size(ids), self.dtype)]

    def output_statistics(self, record, output_gradients) -> list:
        g = self.cast(output_gradients)
        batch = tf.cast(tf.shape(g)[0], g.dtype)
        flat = tf.reshape(g, [-1, self.output_dim])
        return [tf.matmul(flat, flat, transpose_a=True) / batch]

    def factor_specs(self) -> list[StateSpec]:
        return [StateSpec("A_diagonal", (self.vocabulary,)),
                StateSpec("G", (self.output_dim, self.output_dim))]

    def inverse_specs(self) -> list[StateSpec]:
        return [StateSpec("A_diagonal_inverse", (self.vocabulary,), "ones"),
                StateSpec("G_inverse", (self.output_dim, self.output_dim), "identity")]

    def damped_inverses(self, factors, damping) -> list:
        A, G = factors
        pi = pi_from_mean_eigenvalues(tf.reduce_mean(A),
                                      tf.linalg.trace(G) / tf.cast(tf.shape(G)[0], G.dtype))
        root = tf.sqrt(tf.cast(damping, A.dtype))
        return [1.0 / (A + pi * root),
                damped_inverse(G, root / pi, self.options.inverse, self.name)]

    def inverse_cost(self) -> int:
        return self.vocabulary + factor_inverse_flops(self.output_dim, self.options.inverse)

    def precondition(self, gradients, inverses) -> list:
        gradient, (A_inverse, G_inverse) = gradients[0], inverses
        if isinstance(gradient, tf.IndexedSlices):
            gradient = deduplicated(gradient)
            rows = tf.gather(A_inverse, gradient.indices)[:, tf.newaxis] * gradient.values
            return [tf.IndexedSlices(tf.matmul(rows, G_inverse), gradient.indices,
                                     gradient.dense_shape)]
        return [tf.matmul(A_inverse[:, tf.newaxis] * gradient, G_inverse)]

    def to_dense(self, factors) -> tf.Tensor:
        """diag(A) ⊗ G, θ = E.ravel() (row-major: row v of E is a block of d)."""
        return kronecker_to_dense(tf.linalg.diag(factors[0]), factors[1])
