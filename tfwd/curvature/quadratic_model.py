"""The Gauss-Newton quadratic model of the training loss along a step, against its actual change.

For the training loss h on one batch — the compiled loss as Keras computes it (mean over the
batch, plus the model's regularization losses; under a strategy divided by the replica count,
so the replicas' values add up to the global batch's) — a step δ = θ' − θ, the Jacobian J of
the logits z with respect to θ and the loss's Hessian H_L = ∂²h/∂z² with respect to the logits:

    predicted = M(δ) − M(0) = ∇h(θ)ᵀδ + ½ δᵀ Jᵀ H_L J δ
    actual    = h(θ + δ) − h(θ)

M is the quadratic model of Martens & Grosse (2015) §6.5 with the *exact* Gauss-Newton matrix
Jᵀ H_L J of the batch (for softmax cross-entropy on logits it is the exact Fisher), not the
Kronecker-factored approximation and without a damping term: ρ = actual / predicted then asks
how well the curvature the step was built for describes h over that step, whatever K-FAC's
approximation error, and equals 1 exactly when h is quadratic with Hessian Jᵀ H_L J (a linear
model with squared error). See docs/equations.md §4.9.

On the same batch: one forward-mode pass at θ with tangent δ gives h(θ), ∇h(θ)ᵀδ and Jδ;
H_L·(Jδ) comes from differentiating ∇_z h along Jδ (on the logits only); one forward pass at
θ + δ gives h(θ + δ). Both passes run the layers in training mode, as the step did, under a
``keras.StatelessScope``: parameter values are substituted without assigning, and state updates
(batch-norm moving statistics, the dropout seed's advance) are discarded, so both passes see the
same dropout masks and the model's state is left as the step left it.
"""
from __future__ import annotations

import keras
import tensorflow as tf


def _loss_at(model, values, x, y, sample_weight):
    """(h, logits) with the trainable variables taking ``values``, nothing assigned."""
    with keras.StatelessScope(state_mapping=list(zip(model.trainable_variables, values))):
        logits = model(x, training=True) if model._call_has_training_arg else model(x)
        loss = model._compute_loss(x=x, y=y, y_pred=logits, sample_weight=sample_weight,
                                   training=True)
    return loss, logits


def _output_curvature(model, x, y, sample_weight, logits, direction) -> tf.Tensor:
    """vᵀ H_L v for v = ``direction`` (shaped like the logits), by reverse over reverse."""
    logits = tf.stop_gradient(logits)
    with tf.GradientTape() as outer:
        outer.watch(logits)
        with tf.GradientTape() as inner:
            inner.watch(logits)
            loss = model._compute_loss(x=x, y=y, y_pred=logits, sample_weight=sample_weight,
                                       training=True)
        slope = tf.reduce_sum(inner.gradient(loss, logits) * direction)
    curvature_times_direction = outer.gradient(slope, logits)
    return tf.reduce_sum(tf.cast(direction * curvature_times_direction, tf.float32))


def reduction_terms(model: keras.Model, x, y, sample_weight, before: list, after: list
                    ) -> tf.Tensor:
    """[actual, predicted] (float32) for the step from ``before`` to ``after``.

    ``before``, ``after``: values of ``model.trainable_variables`` in their order.
    """
    steps = [new - old for new, old in zip(after, before)]
    with tf.autodiff.ForwardAccumulator(before, steps) as accumulator:
        loss_before, logits = _loss_at(model, before, x, y, sample_weight)
    zero = tf.UnconnectedGradients.ZERO
    slope = accumulator.jvp(loss_before, unconnected_gradients=zero)  # ∇h(θ)ᵀδ
    output_step = accumulator.jvp(logits, unconnected_gradients=zero)  # J δ
    curvature = _output_curvature(model, x, y, sample_weight, logits, output_step)
    loss_after, _ = _loss_at(model, after, x, y, sample_weight)
    actual = tf.cast(loss_after, tf.float32) - tf.cast(loss_before, tf.float32)
    predicted = tf.cast(slope, tf.float32) + 0.5 * curvature
    return tf.stack([actual, predicted])
