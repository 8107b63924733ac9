"""Largest Hessian eigenvalue of the training loss (paper 002 §4.2, figure 3d).

H = ∇²_θ L(θ) of the mean softmax cross-entropy L = 1/B Σ_i ℓ(f(x_i)/T, y_i) on a training
batch (inference mode), θ = all trainable variables. Hessian-vector products are
forward-over-backward: a ``ForwardAccumulator`` with tangent v around the reverse-mode gradient
gives Hv = ∂/∂ε ∇L(θ + εv) without forming H. Power iteration v ← Hv/‖Hv‖ converges to the
eigenvector of the eigenvalue μ of largest magnitude; its Rayleigh quotient vᵀHv estimates μ.
Paper 002 reports the *maximum* eigenvalue λ_max. Near a minimum H is nearly PSD and μ = λ_max;
away from one μ can be negative (measured: −21 on a large-batch MNIST run), and then a second
power iteration on the shifted H − μI, whose eigenvalues λ − μ ≥ 0 are dominated by λ_max − μ,
gives λ_max = μ + (its Rayleigh quotient). ``relative_change`` |λ_t − λ_{t−1}|/|λ_t| of the last
iteration says how far the iteration is from converged.

Paper 002's protocol, to make λ_max comparable across runs (``calibrated_hessian_eigenvalue``):
(1) fold batch norm into the preceding layers (``folding.fold_batch_norm``), (2) fit a softmax
temperature T on held-out data (``temperature.fit_temperature``), then (3) power-iterate on
the training loss with logits divided by T.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfwd.choices.diagnostics import Diagnostic
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

HELDOUT_CHUNK = 1024  # held-out examples per forward pass of the temperature fit


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


def _power_iteration(product, vector, num_iterations: int, tolerance: float, shift: float):
    """(Rayleigh quotient of H − shift·I, last relative change) from a start ``vector``."""
    eigenvalue, change = None, float("inf")
    for _ in range(num_iterations):
        norm = tf.sqrt(inner(vector, vector))
        vector = [v / norm for v in vector]
        image = [h - shift * v for h, v in zip(product(vector), vector)]
        estimate = to_float(inner(vector, image))
        if eigenvalue is not None:
            change = abs(estimate - eigenvalue) / max(abs(estimate), 1e-30)
        eigenvalue, vector = estimate, image
        if change <= tolerance:
            break
    return eigenvalue, change


def hessian_eigenvalue_report(
    model: keras.Model,
    x,
    y,
    *,
    temperature: float = 1.0,
    num_iterations: int = 20,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> dict[str, float]:
    """{"eigenvalue": λ_max, "relative_change"} of H by (shifted) power iteration (module
    docstring); each iteration stops after ``num_iterations`` products or when the relative
    change is ≤ ``tolerance``. Start: a Gaussian vector from ``seed``, drawn in float32 (the
    same start for float32, float64 and mixed-precision models).

    COST: up to ``num_iterations`` Hessian-vector products on the batch, twice as many when
    the dominant eigenvalue is negative.
    """
    require_labels(y, Diagnostic.HESSIAN_EIGENVALUE)
    variables = primals(model.trainable_variables)
    start = [
        tf.cast(tf.random.stateless_normal(v.shape, seed=tf.constant([seed, k], tf.int64)),
                v.dtype)
        for k, v in enumerate(variables)
    ]
    product = tf.function(
        lambda v: hessian_vector_product(model, x, y, v, temperature), reduce_retracing=True
    )
    dominant, change = _power_iteration(product, start, num_iterations, tolerance, 0.0)
    if dominant >= 0:
        return {"eigenvalue": dominant, "relative_change": change}
    gap, change = _power_iteration(product, start, num_iterations, tolerance, dominant)
    return {"eigenvalue": dominant + gap, "relative_change": change}


def largest_hessian_eigenvalue(model: keras.Model, x, y, **kwargs) -> float:
    """λ_max of H: ``hessian_eigenvalue_report(...)["eigenvalue"]`` (same arguments and cost)."""
    return hessian_eigenvalue_report(model, x, y, **kwargs)["eigenvalue"]


def calibrated_hessian_eigenvalue(
    model: keras.Model,
    train_batch,
    heldout_batch,
    *,
    num_iterations: int = 20,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> dict[str, float]:
    """{"eigenvalue": λ_max, "temperature": T, "relative_change"} by paper 002's protocol
    (module docstring). Use a large held-out batch (paper 002: the test set): T is only
    defined when some held-out examples are misclassified.

    COST: one model clone, one forward pass over the held-out batch, and up to
    2·``num_iterations`` Hessian-vector products on the training batch.

    Raises:
      UndefinedDiagnostic: no temperature minimizes the held-out NLL (``fit_temperature``).
    """
    x_train, y_train = as_batch(train_batch)
    x_heldout, y_heldout = as_batch(heldout_batch)
    require_labels(y_heldout, "hessian_eigenvalue (temperature fit)")
    folded = fold_batch_norm(model)
    heldout_logits = np.concatenate([  # in chunks: the held-out set can be the whole test set
        np.asarray(logits(folded, x_heldout[start:start + HELDOUT_CHUNK]))
        for start in range(0, int(x_heldout.shape[0]), HELDOUT_CHUNK)
    ])
    temperature = fit_temperature(heldout_logits, np.asarray(y_heldout))
    report = hessian_eigenvalue_report(
        folded, x_train, y_train, temperature=temperature, num_iterations=num_iterations,
        tolerance=tolerance, seed=seed,
    )
    return {"eigenvalue": report["eigenvalue"], "temperature": temperature,
            "relative_change": report["relative_change"]}
