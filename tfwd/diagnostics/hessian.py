"""Largest Hessian eigenvalue of the training loss (paper 002 §4.2, figure 3d).

H = ∇²_θ L(θ) of the mean softmax cross-entropy L = 1/B Σ_i ℓ(f(x_i)/T, y_i) on a training
batch (inference mode), θ = all trainable variables. Hessian-vector products are
forward-over-backward: a ``ForwardAccumulator`` with tangent v around the reverse-mode gradient
gives Hv = ∂/∂ε ∇L(θ + εv) without forming H. Power iteration v ← Hv/‖Hv‖ converges to the
eigenvector of the eigenvalue of largest magnitude (at a minimum the Hessian is nearly PSD and
this is λ_max); we return the Rayleigh quotient vᵀHv of the last iterate.

Paper 002's protocol, to make λ_max comparable across runs (``calibrated_hessian_eigenvalue``):
(1) fold batch norm into the preceding layers (``folding.fold_batch_norm``), (2) fit a softmax
temperature T on held-out data (``temperature.fit_temperature``), then (3) power-iterate on
the training loss with logits divided by T.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfwd.diagnostics.common import (
    as_batch,
    inner,
    logits,
    mean_loss,
    primals,
    require_labels,
    to_float,
)
from tfwd.diagnostics.folding import fold_batch_norm
from tfwd.diagnostics.temperature import fit_temperature


def hessian_vector_product(model: keras.Model, x, y, vectors, temperature: float = 1.0) -> list:
    """H·v for a parameter vector ``vectors`` (shaped like ``model.trainable_variables``).

    COST: one forward and one backward pass with forward-mode tangents (≈ 2-3 gradient
    evaluations); memory: the activations of one batch, twice.
    """
    variables = primals(model.trainable_variables)
    with tf.autodiff.ForwardAccumulator(variables, list(vectors)) as accumulator:
        with tf.GradientTape() as tape:
            loss = mean_loss(model, x, y, temperature)
        gradients = tape.gradient(loss, variables)
    products = accumulator.jvp(gradients)
    return [tf.zeros_like(v) if p is None else p for p, v in zip(products, variables)]


def largest_hessian_eigenvalue(
    model: keras.Model,
    x,
    y,
    *,
    temperature: float = 1.0,
    num_iterations: int = 20,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> float:
    """λ of largest magnitude of H by power iteration (at most ``num_iterations`` products,
    stopping when |λ_t − λ_{t−1}| ≤ tolerance·|λ_t|). Start: a Gaussian vector from ``seed``.

    COST: up to ``num_iterations`` Hessian-vector products on the batch.
    """
    require_labels(y, "hessian_eigenvalue")
    variables = primals(model.trainable_variables)
    vector = [
        tf.random.stateless_normal(v.shape, seed=tf.constant([seed, k], tf.int64), dtype=v.dtype)
        for k, v in enumerate(variables)
    ]
    product = tf.function(
        lambda v: hessian_vector_product(model, x, y, v, temperature), reduce_retracing=True
    )
    eigenvalue = None
    for _ in range(num_iterations):
        norm = tf.sqrt(inner(vector, vector))
        vector = [v / norm for v in vector]
        image = product(vector)
        estimate = to_float(inner(vector, image))
        converged = (
            eigenvalue is not None and abs(estimate - eigenvalue) <= tolerance * abs(estimate)
        )
        eigenvalue, vector = estimate, image
        if converged:
            break
    return eigenvalue


def calibrated_hessian_eigenvalue(
    model: keras.Model,
    train_batch,
    heldout_batch,
    *,
    num_iterations: int = 20,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> dict[str, float]:
    """{"eigenvalue": λ_max, "temperature": T} by paper 002's protocol (module docstring).

    COST: one model clone, one forward pass over the held-out batch, and up to
    ``num_iterations`` Hessian-vector products on the training batch.
    """
    x_train, y_train = as_batch(train_batch)
    x_heldout, y_heldout = as_batch(heldout_batch)
    require_labels(y_heldout, "hessian_eigenvalue (temperature fit)")
    folded = fold_batch_norm(model)
    temperature = fit_temperature(
        np.asarray(logits(folded, x_heldout)), np.asarray(y_heldout)
    )
    eigenvalue = largest_hessian_eigenvalue(
        folded, x_train, y_train, temperature=temperature, num_iterations=num_iterations,
        tolerance=tolerance, seed=seed,
    )
    return {"eigenvalue": eigenvalue, "temperature": temperature}
