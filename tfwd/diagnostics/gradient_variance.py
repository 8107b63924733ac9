"""Per-layer marginal variance of mini-batch gradients at frozen weights (paper 002 §4.1, fig. 3b).

With the weights frozen, draw K mini-batches b_1..b_K of M examples from a pool of N examples
(each mini-batch without replacement, mini-batches independent), take the mini-batch gradients
∇L_b (inference mode, mean loss over the mini-batch) and report per layer

    v_layer = 1/|θ_layer| Σ_{p ∈ layer} s²_p,   s²_p = 1/(K−1) Σ_k (∇_p L_{b_k} − mean_k ∇_p L_b)²

("variance is then averaged over the parameters within each layer"). A layer's parameters are
all its trainable variables (kernel and bias, or batch norm's γ/β). Expectation over the
mini-batch draws: E[s²_p] = (N − M)/(N − 1) · σ²_p / M with σ²_p = 1/N Σ_i (g_ip − ḡ_p)² the
variance of the per-example gradients over the pool (→ σ²_p/M for N ≫ M).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfwd.choices.diagnostics import Diagnostic
from tfwd.curvature.capture import split_layers
from tfwd.diagnostics.common import batch_size, mean_loss, primals, require_labels


def layers_with_weights(model: keras.Model) -> list:
    """Leaf layers owning trainable weights: Dense/Conv2D first, then the others (e.g. BN γ/β)."""
    supported, others = split_layers(model)
    return supported + others


def gradient_variance(
    model: keras.Model, x, y, *, minibatch_size: int, num_batches: int, seed: int = 0
) -> dict[str, float]:
    """{layer: mean over its parameters of Var_batches[∇L]} from ``num_batches`` mini-batches.

    ``x, y``: the pool of N examples; ``minibatch_size``: M < N.
    COST: ``num_batches`` forward+backward passes of M examples; memory 2·|θ| accumulators.
    """
    require_labels(y, Diagnostic.GRADIENT_VARIANCE)
    pool = batch_size(x)
    if not 1 <= minibatch_size < pool:
        raise ValueError(
            f"gradient_variance needs mini-batches smaller than the pool: batch size "
            f"{minibatch_size}, pool {pool} examples; pass a larger train batch or a "
            "smaller gradient_variance_batch_size."
        )
    if num_batches < 2:
        raise ValueError(f"A variance needs num_batches >= 2, got {num_batches}.")
    layers = layers_with_weights(model)
    variables = primals([v for layer in layers for v in layer.trainable_weights])
    owners = [layer.name for layer in layers for _ in layer.trainable_weights]

    @tf.function(reduce_retracing=True)
    def minibatch_gradient(indices):
        with tf.GradientTape() as tape:
            loss = mean_loss(model, tf.gather(x, indices), tf.gather(y, indices))
        return [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(tape.gradient(loss, variables), variables)
        ]

    sums = [np.zeros(v.shape, np.float64) for v in variables]
    squares = [np.zeros(v.shape, np.float64) for v in variables]
    for draw in range(num_batches):
        indices = tf.random.experimental.stateless_shuffle(
            tf.range(pool), seed=tf.constant([seed, draw], tf.int64)
        )[:minibatch_size]
        for k, gradient in enumerate(minibatch_gradient(indices)):
            gradient = gradient.numpy().astype(np.float64)
            sums[k] += gradient
            squares[k] += gradient**2
    totals, counts = {}, {}
    for owner, total, square in zip(owners, sums, squares):
        variance = (square - total**2 / num_batches) / (num_batches - 1)
        totals[owner] = totals.get(owner, 0.0) + float(np.maximum(variance, 0.0).sum())
        counts[owner] = counts.get(owner, 0) + variance.size
    return {name: totals[name] / counts[name] for name in totals}
