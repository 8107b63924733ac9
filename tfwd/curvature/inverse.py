"""Damped inverses of Kronecker factors and the preconditioned gradient.

Factored Tikhonov damping with the trace-norm π split (Martens & Grosse 2015, §6.3):

    π = sqrt( (tr(A)/dim A) / (tr(G)/dim G) )
    A_λ = A + π·√λ·I,   G_λ = G + (√λ/π)·I,   so that A_λ ⊗ G_λ ≈ A ⊗ G + λ·I

and the preconditioned gradient of a block is  A_λ⁻¹ · ∇W̃ · G_λ⁻¹  (docs/equations.md §4.5).
Inverses come from an eigendecomposition (the factors are symmetric PSD; tiny negative
eigenvalues from round-off are clipped to zero), recomputed only every ``inv_every`` steps.

KL clipping (Ba et al. 2017, as the authors' code): with preconditioned gradients P and
gradients ∇ over all parameters, the step is scaled by
ν = min(1, sqrt(c / (η² Σ ∇ᵀP)))  so that η²·ν²·Σ ∇ᵀP ≤ c.
"""
from __future__ import annotations

import tensorflow as tf


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


def inverse_via_eigh(matrix: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """(matrix + shift·I)⁻¹ for a symmetric PSD matrix, through its eigendecomposition."""
    eigenvalues, eigenvectors = tf.linalg.eigh(matrix)
    eigenvalues = tf.maximum(eigenvalues, 0.0) + shift
    return tf.matmul(eigenvectors / eigenvalues[tf.newaxis, :], eigenvectors, transpose_b=True)


def damped_inverses(A: tf.Tensor, G: tf.Tensor, damping) -> tuple[tf.Tensor, tf.Tensor]:
    """(A_λ⁻¹, G_λ⁻¹) with factored Tikhonov damping λ split by π."""
    pi = pi_split(A, G)
    root = tf.sqrt(tf.convert_to_tensor(damping, A.dtype))
    return inverse_via_eigh(A, pi * root), inverse_via_eigh(G, root / pi)


def precondition(gradient_matrix: tf.Tensor, A_inverse: tf.Tensor, G_inverse: tf.Tensor):
    """A_λ⁻¹ · ∇W̃ · G_λ⁻¹ for a gradient in ``KroneckerBlock.to_matrix`` layout."""
    return tf.matmul(tf.matmul(A_inverse, gradient_matrix), G_inverse)


def _inner_product(gradient, direction) -> tf.Tensor:
    """∇ᵀP; sparse pairs (``tf.IndexedSlices``) must share their deduplicated row indices."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.reduce_sum(gradient.values * direction.values)
    return tf.reduce_sum(gradient * direction)


def kl_clip_scale(gradients, directions, learning_rate, kl_clip) -> tf.Tensor:
    """ν = min(1, sqrt(c / (η² Σ ∇ᵀP))) over all parameters."""
    products = [_inner_product(g, p) for g, p in zip(gradients, directions)]
    # Variables may differ in dtype (a float32 output layer in a float64 model).
    dtype = tf.float64 if any(p.dtype == tf.float64 for p in products) else tf.float32
    inner = tf.add_n([tf.cast(p, dtype) for p in products])
    learning_rate = tf.cast(tf.convert_to_tensor(learning_rate), inner.dtype)
    bound = tf.cast(kl_clip, inner.dtype) / tf.maximum(learning_rate**2 * inner, 1e-30)
    return tf.minimum(tf.cast(1.0, inner.dtype), tf.sqrt(bound))
