"""Frobenius norms of the full and the diagonal empirical Fisher (paper 002 §4.1, figure 3a).

On a batch of B examples with per-example loss gradients g_i = ∇_θ ℓ_i (true labels, inference
mode), the empirical Fisher is F = 1/B Σ_i g_i g_iᵀ (REFERENCE §4). Without forming the d×d F:

    ‖F‖²_F       = tr(F²) = 1/B² Σ_{i,j} (g_iᵀ g_j)² = ‖Γ‖²_F / B²   (Gram matrix Γ_ij = g_iᵀ g_j)
    ‖diag F‖²_F  = Σ_p ( 1/B Σ_i g_ip² )²

Paper 002 uses the gap between the two to explain why diagonal-Fisher noise converges faster
than full-Fisher noise (section 3.2: the bound depends on Tr(CᵀAC), ‖A‖²_F vs ‖diag A‖²_F).

* Exact (small models): all per-example gradients at once (``tape.jacobian``, vectorized),
  then the B×B Gram matrix. Memory B·d.
* Estimate (large models): ‖diag F‖ stays exact (per-example gradients accumulated in chunks,
  memory chunk·d); ‖F‖²_F = 1/B² Σ_j c_j with c_j = ‖Γ_{:,j}‖² is estimated from m columns j
  drawn without replacement. Column j is Γ_{:,j} = (g_iᵀ g_j)_i, a forward-mode product of the
  per-example losses with tangent g_j, so no per-example gradient matrix is needed. The
  estimate (1/B)·mean_j c_j is unbiased, with standard error
  (1/B)·sqrt((1 − m/B)·s²_c/m) (finite-population correction; 0 when m = B).
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tfwd.diagnostics.common import (
    batch_size,
    flatten_per_example,
    logits,
    per_example_loss,
    primals,
    require_labels,
    to_float,
)


@dataclasses.dataclass(frozen=True)
class FisherNorms:
    """Squared Frobenius norms of F and diag(F) and the standard error of ‖F‖²_F."""

    full_squared: float
    diagonal_squared: float
    full_squared_standard_error: float = 0.0

    @property
    def full(self) -> float:
        return max(self.full_squared, 0.0) ** 0.5

    @property
    def diagonal(self) -> float:
        return max(self.diagonal_squared, 0.0) ** 0.5

    def as_dict(self) -> dict[str, float]:
        """{"full": ‖F‖_F, "diagonal": ‖diag F‖_F, "full_standard_error"}: the last is the
        delta-method error of ‖F‖_F, se(‖F‖²_F) / (2‖F‖_F) (0 when exact)."""
        error = self.full_squared_standard_error / (2.0 * self.full) if self.full > 0 else 0.0
        return {"full": self.full, "diagonal": self.diagonal, "full_standard_error": error}


def per_example_gradients(model: keras.Model, x, y) -> tf.Tensor:
    """Γ-rows: ∇_θ ℓ_i for every example as a [B, d] matrix (θ = trainable variables).

    COST: one forward pass and B vectorized backward passes (``tape.jacobian``); memory B·d.
    """
    variables = primals(model.trainable_variables)
    with tf.GradientTape() as tape:
        losses = per_example_loss(logits(model, x), y)
    jacobians = tape.jacobian(losses, variables)
    jacobians = [
        tf.zeros([batch_size(x), *v.shape], losses.dtype) if j is None else j
        for j, v in zip(jacobians, variables)
    ]
    return flatten_per_example(jacobians)


def empirical_fisher_norms_exact(model: keras.Model, x, y) -> FisherNorms:
    """‖F‖²_F and ‖diag F‖²_F exactly, from the Gram matrix of all per-example gradients.

    COST: as ``per_example_gradients`` plus a B×B×d product; memory B·d.
    """
    require_labels(y, "fisher_norms")
    gradients = tf.cast(per_example_gradients(model, x, y), tf.float64)
    count = tf.cast(tf.shape(gradients)[0], tf.float64)
    gram = tf.matmul(gradients, gradients, transpose_b=True)
    full_squared = tf.reduce_sum(tf.square(gram)) / count**2
    diagonal = tf.reduce_mean(tf.square(gradients), axis=0)
    return FisherNorms(to_float(full_squared), to_float(tf.reduce_sum(tf.square(diagonal))))


def _single_example_gradient(model: keras.Model, x, y, index: int) -> list:
    variables = primals(model.trainable_variables)
    with tf.GradientTape() as tape:
        example = slice(index, index + 1)
        loss = tf.reduce_sum(per_example_loss(logits(model, x[example]), y[example]))
    return [
        tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
        for g, v in zip(tape.gradient(loss, variables), variables)
    ]


def gram_column(model: keras.Model, x, y, tangent) -> tf.Tensor:
    """(g_iᵀ t)_i for the whole batch: per-example losses differentiated forward along t.

    COST: one forward-mode pass over the batch.
    """
    variables = primals(model.trainable_variables)
    with tf.autodiff.ForwardAccumulator(variables, tangent) as accumulator:
        losses = per_example_loss(logits(model, x), y)
    return accumulator.jvp(losses)


def empirical_fisher_norms_estimate(
    model: keras.Model, x, y, num_columns: int, seed: int = 0, chunk_size: int = 8
) -> FisherNorms:
    """Unbiased ‖F‖²_F from ``num_columns`` Gram columns (with standard error), exact ‖diag F‖².

    COST: B/chunk_size vectorized per-example-gradient passes (memory chunk_size·d) for the
    diagonal, plus per column one single-example backward pass and one forward-mode pass over
    the batch (memory d + activations).
    """
    require_labels(y, "fisher_norms")
    count = batch_size(x)
    if not 2 <= num_columns <= count:
        raise ValueError(f"num_columns must be in [2, batch size {count}], got {num_columns}.")
    squares = None
    for start in range(0, count, chunk_size):
        chunk = tf.cast(
            per_example_gradients(model, x[start:start + chunk_size], y[start:start + chunk_size]),
            tf.float64,
        )
        chunk_squares = tf.reduce_sum(tf.square(chunk), axis=0)
        squares = chunk_squares if squares is None else squares + chunk_squares
    diagonal_squared = tf.reduce_sum(tf.square(squares / count))

    columns = tf.random.experimental.stateless_shuffle(
        tf.range(count), seed=tf.constant([seed, 0], tf.int64)
    )[:num_columns]
    column_norms = []
    for index in columns.numpy():
        column = gram_column(model, x, y, _single_example_gradient(model, x, y, int(index)))
        column_norms.append(tf.reduce_sum(tf.square(tf.cast(column, tf.float64))))
    column_norms = tf.stack(column_norms)
    full_squared = tf.reduce_mean(column_norms) / count
    sample_variance = tf.math.reduce_variance(column_norms) * num_columns / (num_columns - 1)
    error = tf.sqrt((1.0 - num_columns / count) * sample_variance / num_columns) / count
    return FisherNorms(to_float(full_squared), to_float(diagonal_squared), to_float(error))


def empirical_fisher_norms(
    model: keras.Model, x, y, num_columns: int | None = None, seed: int = 0, chunk_size: int = 8
) -> FisherNorms:
    """Exact norms if ``num_columns`` is None, else ``empirical_fisher_norms_estimate``."""
    if num_columns is None:
        return empirical_fisher_norms_exact(model, x, y)
    return empirical_fisher_norms_estimate(model, x, y, num_columns, seed, chunk_size)
