"""One taped forward and backward pass with layer capture: what every curvature user reads.

``captured_forward_backward`` runs the model under a ``LayerCapture`` of the given blocks,
computes the loss as Keras does (divided by the replica count under a strategy) and the
gradients of ``optimizer.scale_loss(loss)``, and returns them with the tape (persistent when
asked, so statistics can back-propagate again from the logits) and the capture's records.
The training step of ``tfwd.train`` calls it once per step and hands the result to K-FAC,
the noise and the diagnostics.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tfwd.curvature.capture import LayerCapture


@dataclasses.dataclass
class CapturedPass:
    """What one captured forward/backward pass produced (in replica context)."""

    y_pred: tf.Tensor
    loss: tf.Tensor  # per-replica loss as Keras computes it (divided by the replica count)
    gradients: list  # of optimizer.scale_loss(loss), not yet all-reduced
    tape: tf.GradientTape
    records: dict  # LayerCapture records by layer name


def _is_mean_cross_entropy(loss) -> bool:
    """The compiled loss is 1/B Σ_b CE(y_b, z_b) on logits, so ∂ℓ_b/∂s = B·∂L/∂s."""
    return (isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
            and loss.get_config().get("from_logits")
            and loss.get_config().get("ignore_class") is None
            and loss.reduction == "sum_over_batch_size")


def captured_forward_backward(model, optimizer, blocks, x, y, sample_weight=None, *,
                              persistent: bool, example_gradient_layers=()) -> CapturedPass:
    """Forward pass capturing ``blocks``, loss and gradients; the caller deletes the tape.

    For the layers named in ``example_gradient_layers`` the records also get the
    per-example g = ∂ℓ_b/∂s read off this backward pass (when the loss allows it).
    """
    with tf.GradientTape(persistent=persistent) as tape, LayerCapture(blocks) as capture:
        y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
        loss = model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
        )
        scaled_loss = optimizer.scale_loss(loss)
    wanted = [block for block in blocks if block.name in set(example_gradient_layers)]
    if wanted and sample_weight is None and _is_mean_cross_entropy(model.loss):
        # The same backward pass gives the per-example pre-activation gradients the consumers
        # would otherwise back-propagate again: ∂ℓ_b/∂s = ∂(c·L/R)/∂s · B·R/c, with the local
        # batch B, R replicas (Keras divides the loss by R) and loss scale c.
        preactivations = [capture.records[block.name].preactivations for block in wanted]
        all_gradients = tape.gradient(scaled_loss, model.trainable_weights + preactivations)
        gradients = all_gradients[: len(model.trainable_weights)]
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        for block, g in zip(wanted, all_gradients[len(model.trainable_weights):]):
            # In float32 under mixed policies: g/c of a float16 g would underflow first.
            g = tf.cast(g, tf.float64 if g.dtype == tf.float64 else tf.float32)
            scale = (tf.cast(tf.shape(y_pred)[0] * replicas, g.dtype)
                     / tf.cast(optimizer.scale_loss(1.0), g.dtype))
            capture.records[block.name].example_gradients = g * scale
    else:
        gradients = tape.gradient(scaled_loss, model.trainable_weights)
    return CapturedPass(y_pred, loss, gradients, tape, capture.records)
