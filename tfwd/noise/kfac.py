"""K-FAC noise (paper 002 §4.1 fig. 3c, appendix E "K-FAC"; Martens & Grosse 2015).

The Fisher block of a Dense/Conv2D layer is replaced by its Kronecker factorisation G ⊗ A
(``tfwd.curvature.blocks``: A = 1/(B·T) Σ ããᵀ, G = 1/B Σ ggᵀ of the *current batch*, with the
true labels, i.e. empirical-Fisher factors, and KFC's spatial sums for Conv2D). A draw with
covariance G ⊗ A for vec(W̃) (column-major vec of the [input_dim, output_dim] matrix) is

    N = A^{1/2} Ξ G^{1/2},     Ξ_ij ~ N(0, 1) i.i.d.,

because vec(A^{1/2} Ξ G^{1/2}) = (G^{1/2} ⊗ A^{1/2}) vec Ξ. Square roots are the symmetric
ones, from ``tf.linalg.eigh`` with round-off negative eigenvalues clipped to zero. The consumer
scales N by s = √((M_L − M_S)/(M_L·M_S)). Variables of layers without capture (batch-norm
γ/β, unsupported layers) get no noise. Under R replicas each replica uses its own batch's
factors, so the summed noise has covariance s²·(1/R)Σ_r G_r ⊗ A_r (the mean of the replicas'
K-FAC blocks, not the K-FAC block of the global batch; both approximate the same F block).
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock
from tfwd.noise.batch import NoiseBatch, standard_normal, substream


def symmetric_square_root(matrix: tf.Tensor) -> tf.Tensor:
    """M^{1/2} = Q diag(√max(λ, 0)) Qᵀ of a symmetric positive semi-definite matrix."""
    eigenvalues, eigenvectors = tf.linalg.eigh(matrix)
    roots = tf.sqrt(tf.maximum(eigenvalues, 0.0))
    return tf.matmul(eigenvectors * roots[tf.newaxis, :], eigenvectors, transpose_b=True)


def sample(batch: NoiseBatch, layers, key: tf.Tensor) -> dict[int, tf.Tensor]:
    """{variable index: A^{1/2} Ξ G^{1/2} split into kernel and bias} for ``layers``."""
    noise = {}
    output_gradients = batch.preactivation_gradients(layers)
    for position, (layer, gradients) in enumerate(zip(layers, output_gradients)):
        block = KroneckerBlock.for_layer(layer)
        input_root = symmetric_square_root(block.input_factor(batch.records[layer.name].inputs))
        output_root = symmetric_square_root(block.output_factor(gradients))
        unit = standard_normal([block.input_dim, block.output_dim], substream(key, position),
                               input_root.dtype)
        kernel_noise, bias_noise = block.from_matrix(input_root @ unit @ output_root)
        kernel, bias = batch.layer_indices(layer)
        noise[kernel] = kernel_noise
        if bias is not None:
            noise[bias] = bias_noise
    return noise
