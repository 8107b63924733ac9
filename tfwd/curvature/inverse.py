"""Damped inverses of Kronecker factors and the preconditioned gradient.

Factored Tikhonov damping with the trace-norm π split (Martens & Grosse 2015, §6.3):

    π = sqrt( (tr(A)/dim A) / (tr(G)/dim G) )
    A_λ = A + π·√λ·I,   G_λ = G + (√λ/π)·I,   so that A_λ ⊗ G_λ ≈ A ⊗ G + λ·I

and the preconditioned gradient of a block is  A_λ⁻¹ · ∇W̃ · G_λ⁻¹  (docs/equations.md §4.5).
π needs traces only, never eigenvalues, so the inverse of each shifted factor M + s·I can be
computed two ways (``tfwd.choices.kfac.INVERSE_METHODS``), recomputed only every ``inv_every`` steps:

* ``"cholesky"`` (default): L Lᵀ = M + s·I, then (M + s·I)⁻¹ = L⁻ᵀ L⁻¹ by two triangular
  solves (``tf.linalg.cholesky_solve`` against I): ≈ n³/3 + 2n³ FLOPs. Should the float32
  factorization fail (round-off makes a badly conditioned M + s·I look indefinite: TF fills
  L with NaN), it is redone in float64, in the graph, and the result cast back.
* ``"eigh"``: M = V diag(μ) Vᵀ, (M + s·I)⁻¹ = V diag(1/(max(μ, 0) + s)) Vᵀ, tiny negative
  eigenvalues from round-off clipped to zero: ≈ 9n³ + 2n³ FLOPs (Golub & Van Loan, Matrix
  Computations, §8.3), and on a CPU slower still than that count suggests (BENCHMARKS.md,
  issue 12: VGG11's 4608 × 4608 input factors).

Both are the same matrix for a PSD factor, up to round-off.

KL clipping (Ba et al. 2017, as the authors' code): with preconditioned gradients P and
gradients ∇ over all parameters, the step is scaled by
ν = min(1, sqrt(c / (η² Σ ∇ᵀP)))  so that η²·ν²·Σ ∇ᵀP ≤ c
(``kl_clip_scale``; ``kl_clip_scale_of_products`` from the terms ∇ᵀP, which a low-rank
Dense block computes without its dense ∇, ``tfwd.curvature.low_rank``).
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.choices import kfac as defaults
from tfwd.choices.kfac import InverseMethod
from tfwd.curvature.finite import check_finite


def pi_from_mean_eigenvalues(mean_a: tf.Tensor, mean_g: tf.Tensor) -> tf.Tensor:
    """π = sqrt(mean_a / mean_g) (elementwise) from the factors' mean eigenvalues tr/dim;
    1 where either vanishes."""
    ok = tf.logical_and(mean_a > 0, mean_g > 0)
    return tf.where(ok, tf.sqrt(mean_a / tf.where(ok, mean_g, 1.0)), tf.ones_like(mean_a))


def pi_split(A: tf.Tensor, G: tf.Tensor) -> tf.Tensor:
    """π = sqrt((tr(A)/dim A) / (tr(G)/dim G)) of (stacks of) square factors."""
    mean_a = tf.linalg.trace(A) / tf.cast(tf.shape(A)[-1], A.dtype)
    mean_g = tf.linalg.trace(G) / tf.cast(tf.shape(G)[-1], G.dtype)
    return pi_from_mean_eigenvalues(mean_a, mean_g)


# FLOPs of one damped inverse of an n×n factor, per n³ (module docstring).
INVERSE_FLOPS_PER_CUBE = {InverseMethod.CHOLESKY: 7 / 3, InverseMethod.EIGH: 11}


def check_inverse_method(method: str) -> None:
    InverseMethod.check(method, "inverse")


def factor_inverse_flops(size: int, method: str, count: int = 1) -> int:
    """FLOPs of ``count`` damped inverses of size × size factors by ``method``."""
    return int(count * INVERSE_FLOPS_PER_CUBE[method] * size**3)


def _shifted(matrix: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """matrix + shift·I for a (stack of) square matrix and a (stack of) scalar shift."""
    shift = tf.convert_to_tensor(shift, matrix.dtype)
    return matrix + shift[..., tf.newaxis, tf.newaxis] * tf.eye(tf.shape(matrix)[-1],
                                                                 dtype=matrix.dtype)


def inverse_via_eigh(matrix: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """(matrix + shift·I)⁻¹ for a (stack of) symmetric PSD matrix, by its eigendecomposition."""
    eigenvalues, eigenvectors = tf.linalg.eigh(matrix)
    shift = tf.convert_to_tensor(shift, matrix.dtype)
    eigenvalues = tf.maximum(eigenvalues, 0.0) + shift[..., tf.newaxis]
    return tf.matmul(eigenvectors / eigenvalues[..., tf.newaxis, :], eigenvectors,
                     transpose_b=True)


def _cholesky_inverse(matrix: tf.Tensor) -> tf.Tensor:
    identity = tf.broadcast_to(tf.eye(tf.shape(matrix)[-1], dtype=matrix.dtype), tf.shape(matrix))
    return tf.linalg.cholesky_solve(tf.linalg.cholesky(matrix), identity)


def inverse_via_cholesky(matrix: tf.Tensor, shift: tf.Tensor, name: str = "") -> tf.Tensor:
    """(matrix + shift·I)⁻¹ through a Cholesky factorization; a float32 factorization that
    fails (non-finite result) is redone in float64 in the graph. Raises (InvalidArgumentError,
    naming ``name``) if even that fails."""
    shifted = _shifted(matrix, shift)
    inverse = _cholesky_inverse(shifted)
    if matrix.dtype != tf.float64:
        inverse = tf.cond(
            tf.reduce_all(tf.math.is_finite(inverse)),
            lambda: inverse,
            lambda: tf.cast(_cholesky_inverse(tf.cast(shifted, tf.float64)), matrix.dtype))
    return check_finite(
        inverse, f"The damped K-FAC factor of layer {name!r} is not positive definite even in "
        "float64 (its Cholesky factorization failed): raise damping, or use inverse='eigh'")


def damped_inverse(matrix: tf.Tensor, shift: tf.Tensor, method: str, name: str = "") -> tf.Tensor:
    """(matrix + shift·I)⁻¹ by ``method`` (``tfwd.choices.kfac.INVERSE_METHODS``); ``name`` labels errors."""
    if method == InverseMethod.EIGH:
        return inverse_via_eigh(matrix, shift)
    return inverse_via_cholesky(matrix, shift, name)


def damped_inverses(A: tf.Tensor, G: tf.Tensor, damping, method: str = defaults.INVERSE,
                    name: str = "") -> tuple[tf.Tensor, tf.Tensor]:
    """(A_λ⁻¹, G_λ⁻¹) with factored Tikhonov damping λ split by π, for factors or stacks of
    factors ([..., n, n], one π per stack entry)."""
    pi = pi_split(A, G)
    root = tf.sqrt(tf.convert_to_tensor(damping, A.dtype))
    return (damped_inverse(A, pi * root, method, name),
            damped_inverse(G, root / pi, method, name))


def precondition(gradient_matrix: tf.Tensor, A_inverse: tf.Tensor, G_inverse: tf.Tensor):
    """A_λ⁻¹ · ∇W̃ · G_λ⁻¹ for a gradient in ``KroneckerBlock.to_matrix`` layout."""
    return tf.matmul(tf.matmul(A_inverse, gradient_matrix), G_inverse)


def inner_product(gradient, direction) -> tf.Tensor:
    """∇ᵀP; sparse pairs (``tf.IndexedSlices``) must share their deduplicated row indices."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.reduce_sum(gradient.values * direction.values)
    return tf.reduce_sum(gradient * direction)


def kl_clip_scale(gradients, directions, learning_rate, kl_clip) -> tf.Tensor:
    """ν = min(1, sqrt(c / (η² Σ ∇ᵀP))) over all parameters."""
    products = [inner_product(g, p) for g, p in zip(gradients, directions)]
    return kl_clip_scale_of_products(products, learning_rate, kl_clip)


def kl_clip_scale_of_products(products, learning_rate, kl_clip) -> tf.Tensor:
    """ν = min(1, sqrt(c / (η² Σ products))) from the terms ∇ᵀP (any grouping of them)."""
    # Variables may differ in dtype (a float32 output layer in a float64 model).
    dtype = tf.float64 if any(p.dtype == tf.float64 for p in products) else tf.float32
    inner = tf.add_n([tf.cast(p, dtype) for p in products])
    learning_rate = tf.cast(tf.convert_to_tensor(learning_rate), inner.dtype)
    bound = tf.cast(kl_clip, inner.dtype) / tf.maximum(learning_rate**2 * inner, 1e-30)
    return tf.minimum(tf.cast(1.0, inner.dtype), tf.sqrt(bound))
