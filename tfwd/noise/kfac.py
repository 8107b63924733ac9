"""K-FAC noise (paper 002 §4.1 fig. 3c, appendix E "K-FAC"; Martens & Grosse 2015).

The Fisher block of a Dense/Conv2D layer is replaced by its Kronecker factorisation G ⊗ A
(``tfwd.curvature.blocks``: A = 1/(B·T) Σ_{b,t} ã_bt ã_btᵀ, G = 1/B Σ_{b,t} g_bt g_btᵀ of the
*current batch*, with the true labels, i.e. empirical-Fisher factors, and KFC's spatial sums
for Conv2D). For any factorisations A = L_A L_Aᵀ and G = L_G L_Gᵀ (L_A: input_dim × p,
L_G: output_dim × q) and a p × q matrix Ξ of independent zero-mean unit-variance entries,

    N = L_A Ξ L_Gᵀ,    vec N = (L_G ⊗ L_A) vec Ξ,    Cov[vec N] = G ⊗ A

(column-major vec of the [input_dim, output_dim] matrix W̃ = [W; b]). Per layer, one factor
enters through its data and is never formed, the other through its Cholesky factor:

* A through L_A = Ãᵀ/√(B·T), Ã the [B·T, input_dim] rows ã_bt, with Ξ [B·T, output_dim]
  shaped like the pre-activations: Ãᵀ Ξ is one weight-gradient product (for Conv2D one
  ``Conv2DBackpropFilter``, no patches; ``tfwd.curvature.diagonal.outer_product_sum``). Used
  for Conv2D always and for Dense when input_dim ≥ output_dim; then S = G.
* G through L_G = Γᵀ/√B, Γ the [B·T, output_dim] rows g_bt, with Ξ [input_dim, B·T]: for
  Dense with input_dim < output_dim; then S = A.
* S through L = chol(S + δI) computed in float64, δ = ε₃₂·tr(S), ε₃₂ = 2⁻²³.

A Dense layer for which it is cheaper (``uses_sketch``: 784-1000-1000 MLP's two hidden
layers; never Conv2D) instead draws through a rank-k sketch of both data matrices,

    N = (Ãᵀ Ω)(Γᵀ Ψ)ᵀ / (B·√(T·k)),     Ω, Ψ: [B·T, k] independent Rademacher signs,

vec N = Σ_j (Γᵀψ_j) ⊗ (Ãᵀω_j)/(B√(Tk)), whose covariance is G ⊗ A *exactly* (no δ, no
factor formed or factorised): the k terms are independent, zero-mean, with
E[(Γᵀψψᵀ Γ) ⊗ (Ãᵀωωᵀ Ã)] = ΓᵀΓ ⊗ ÃᵀÃ. It costs k·B·T·(input_dim + output_dim) + k·input_dim·
output_dim multiply-adds instead of B·T·(input_dim·output_dim + dim(S)²) + dim(S)³/3 + …; for
k = ``SKETCH_RANK`` = 256 and the 1000 × 1000 layer at batch 4096, 2.1·10⁹ instead of
8.2·10⁹ plus a float64 Cholesky. What differs from a Gaussian with that covariance are the
higher moments: N has rank ≤ k, and an entry is a sum of k products of two (nearly Gaussian)
projections, excess kurtosis ≈ 6/k = 0.023 (the factor route's, a sum of B·T terms, is
≈ 0). Small-batch gradient noise itself, the thing emulated, is a sum of M_S rank-one
per-example terms ã_b g_bᵀ.

Forming the factor that enters through its data would cost as much as that product again
(B·T·dim² multiply-adds) plus a dim³ factorisation; so a Dense layer forms only its smaller
factor, and a Conv2D layer only G: its A would need the input patches
(``tf.image.extract_patches`` alone takes about 1 CPU-second for LeNet's first layer at
batch 4096).

So the covariance is (G + δI) ⊗ A or G ⊗ (A + δI), δ on S only. Why δ: the factors are
singular (pixels that are zero in every image, dead ReLU units, and G of the logits layer,
whose u_b = softmax − onehot sum to zero), and S is formed in float32, whose round-off leaves
eigenvalues down to about −0.4·ε₃₂·tr(S) (measured on MNIST factors), which Cholesky cannot
factor. δ = ε₃₂·tr(S) ≤ ε₃₂·dim(S)·‖S‖₂ is within the backward error O(dim(S)·ε₃₂·‖S‖₂) of a
float32 eigendecomposition, i.e. no larger than the round-off of the symmetric square root
S^{1/2} from ``tf.linalg.eigh`` (10–20 times slower than Cholesky at dim 1000); it changes
tr(Cov) by the relative amount dim(S)·ε₃₂ ≤ 1.2·10⁻⁴ for dim(S) ≤ 1000. Should Cholesky still
fail (NaN), the draw falls back to that symmetric square root of S, with negative round-off
eigenvalues clipped to zero (no δ).

Ξ has Rademacher (±1) entries: its B·T rows (or columns) make it as large as the layer's
pre-activations (or inputs) — 19 M entries for LeNet's first layer at batch 4096: 0.27 CPU-s
as Gaussian draws, 0.02 as signs (``tfwd.noise.batch.rademacher``). N then is not Gaussian
but a sum of B·T independent terms (ã_bt ξ_btᵀ L_Gᵀ, resp. L_A ξ_bt g_btᵀ) with exactly the
covariance above, Gaussian in the limit — as ``full_fisher``'s signed sum. (For a handful of
examples the difference shows: a bias row starts from Σ_b ξ_b, an integer.)

The consumer scales N by s = √((M_L − M_S)/(M_L·M_S)). Variables of layers without capture
(batch-norm γ/β, unsupported layers) get no noise. Under R replicas each replica uses its own
batch's factors, so the summed noise has covariance s²·(1/R)Σ_r G_r ⊗ A_r (the mean of the
replicas' K-FAC blocks, not the K-FAC block of the global batch; both approximate the same F
block). With batch norm in training mode g_b is the batch's back-propagated gradient (the
K-FAC approximation, ``tfwd.noise.batch``).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.diagonal import outer_product_sum
from tfwd.noise.batch import NoiseBatch, rademacher, substream

FLOAT32_EPSILON = float(np.finfo(np.float32).eps)  # ε₃₂ = 2⁻²³
# k of the sketch draw: its entries' excess kurtosis is about 6/k (a Gaussian's is 0), and
# its cost k·(input_dim + output_dim) per row is a quarter of the factor route's at
# 1000 × 1000 (BENCHMARKS.md, "Curvature noise").
SKETCH_RANK = 256


def symmetric_square_root(matrix: tf.Tensor) -> tf.Tensor:
    """M^{1/2} = Q diag(√max(λ, 0)) Qᵀ of a symmetric positive semi-definite matrix."""
    eigenvalues, eigenvectors = tf.linalg.eigh(matrix)
    roots = tf.sqrt(tf.maximum(eigenvalues, tf.zeros_like(eigenvalues)))
    return tf.matmul(eigenvectors * roots[tf.newaxis, :], eigenvectors, transpose_b=True)


def cholesky_shift(matrix: tf.Tensor) -> tf.Tensor:
    """δ = ε₃₂·tr(S), the diagonal shift of ``square_root_factor``."""
    return FLOAT32_EPSILON * tf.linalg.trace(matrix)


def square_root_factor(matrix: tf.Tensor) -> tf.Tensor:
    """L with L Lᵀ = S + δI, δ = ε₃₂·tr(S): Cholesky in float64, returned in S's dtype.

    Falls back to the symmetric square root of S (L Lᵀ = S with its round-off negative
    eigenvalues clipped) when Cholesky fails.
    """
    wide = tf.cast(matrix, tf.float64)
    size = tf.shape(wide)[0]
    factor = tf.linalg.cholesky(wide + cholesky_shift(wide) * tf.eye(size, dtype=tf.float64))
    factor = tf.cond(tf.reduce_all(tf.math.is_finite(factor)),
                     lambda: tf.linalg.band_part(factor, -1, 0),
                     lambda: symmetric_square_root(wide))
    return tf.cast(factor, matrix.dtype)


def uses_sketch(block: KroneckerBlock) -> bool:
    """Whether a Dense layer draws through the rank-k sketch (k = ``SKETCH_RANK``): when its
    multiply-adds per data row, k·(input_dim + output_dim), are fewer than the factor
    route's, input_dim·output_dim + dim(S)² (the data product and forming S). Conv2D never
    does: its B·T rows are the output pixels, and the factor route needs no patches."""
    if block.is_conv:
        return False
    formed = block.output_dim if uses_input_data(block) else block.input_dim
    sketch = SKETCH_RANK * (block.input_dim + block.output_dim)
    return sketch < block.input_dim * block.output_dim + formed**2


def sketch_draw(block: KroneckerBlock, inputs: tf.Tensor, output_gradients: tf.Tensor,
                input_signs: tf.Tensor, output_signs: tf.Tensor) -> tf.Tensor:
    """N = (Ãᵀ Ω)(Γᵀ Ψ)ᵀ / (B·√(T·k)) of a Dense layer, Ω and Ψ [B·T, k] independent signs.

    vec N = Σ_j (Γᵀψ_j) ⊗ (Ãᵀω_j) / (B√(Tk)), so Cov[vec N] = k·(ΓᵀΓ ⊗ ÃᵀÃ)/(B²Tk) = G ⊗ A
    exactly (E[ψψᵀ] = E[ωωᵀ] = I, the k terms independent and zero-mean): no factor is
    formed, factorised or shifted.
    """
    rows = tf.reshape(inputs, [-1, inputs.shape[-1]])  # a_bt as [B·T, input_dim without 1]
    gradient_rows = tf.reshape(output_gradients, [-1, block.output_dim])
    input_part = tf.matmul(rows, input_signs, transpose_a=True)  # [input_dim, k]
    if block.has_bias:  # the rows' homogeneous 1: Σ_bt ω_bt
        input_part = tf.concat([input_part, tf.reduce_sum(input_signs, 0, keepdims=True)], 0)
    output_part = tf.matmul(gradient_rows, output_signs, transpose_a=True)  # [output_dim, k]
    dtype = output_gradients.dtype
    scale = tf.math.rsqrt(tf.cast(tf.shape(output_gradients)[0], dtype)
                          * tf.cast(tf.shape(gradient_rows)[0], dtype)
                          * tf.cast(tf.shape(input_signs)[1], dtype))
    return tf.matmul(input_part * scale, output_part, transpose_b=True)


def uses_input_data(block: KroneckerBlock) -> bool:
    """Whether A enters through its data Ãᵀ/√(B·T) (else G through Γᵀ/√B)."""
    return block.is_conv or block.input_dim >= block.output_dim


def layer_draw(block: KroneckerBlock, inputs: tf.Tensor, output_gradients: tf.Tensor,
               key: tf.Tensor) -> tf.Tensor:
    """N in ``block.to_matrix`` layout with Cov[vec N] = G ⊗ A: the rank-k sketch where
    ``uses_sketch``, else L_A Ξ L_Gᵀ (+ δ on the formed factor, see above)."""
    dtype = output_gradients.dtype
    if uses_sketch(block):
        rows = tf.size(output_gradients) // block.output_dim  # B·T
        signs = rademacher(tf.stack([2, rows, SKETCH_RANK]), key, dtype)
        return sketch_draw(block, inputs, output_gradients, signs[0], signs[1])
    batch = tf.cast(tf.shape(output_gradients)[0], dtype)
    locations = tf.cast(tf.size(output_gradients) // block.output_dim, dtype)  # B·T
    if uses_input_data(block):
        # (Ãᵀ/√(B·T)) Ξ L_Gᵀ with Ξ [B·T, output_dim], shaped like the pre-activations.
        signs = rademacher(tf.shape(output_gradients), key, dtype)
        input_part = outer_product_sum(block, inputs, signs) * tf.math.rsqrt(locations)
        output_root = square_root_factor(block.output_factor(output_gradients))
        return tf.matmul(input_part, output_root, transpose_b=True)
    # L_A Ξ (Γ/√B) with Ξ [input_dim, B·T], drawn as its transpose.
    rows = tf.reshape(output_gradients, [-1, block.output_dim])
    signs = rademacher(tf.stack([tf.shape(rows)[0], block.input_dim]), key, dtype)
    output_part = tf.matmul(signs, rows, transpose_a=True) * tf.math.rsqrt(batch)
    input_root = square_root_factor(block.input_factor(inputs))
    return tf.matmul(input_root, output_part)


def sample(batch: NoiseBatch, layers, key: tf.Tensor) -> dict[int, tf.Tensor]:
    """{variable index: L_A Ξ L_Gᵀ split into kernel and bias} for ``layers``."""
    return batch.layerwise(
        layers,
        lambda position, block, inputs, gradients: layer_draw(
            block, inputs, gradients, substream(key, position)),
    )
