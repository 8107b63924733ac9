"""The one taped training step that feeds curvature consumers (K-FAC, noise, diagnostics).

A *consumer* is any object with

* ``curvature_layers``: the Dense/Conv2D layers whose inputs and pre-activations it needs;
* ``needs_persistent_tape``: whether ``observe`` back-propagates again through the tape;
* ``observe(tape, records, y_pred, y, gradients) -> gradients``: called in replica context
  after the backward pass of the loss, with the persistent tape, the ``LayerCapture``
  records and the (loss-scaled, not yet all-reduced) gradients; it may update statistics
  and may return modified gradients (noise does; K-FAC returns them unchanged).

``taped_train_step`` mirrors Keras 3's TensorFlow ``train_step`` (loss, loss tracker, metrics,
``optimizer.apply``) so that ``model.fit`` works unchanged once ``install_train_step`` has put it
on the model; the custom ``strategy.run`` loop of ``tfwd.train`` calls ``forward_backward``.
"""
from __future__ import annotations

import functools

import keras
import tensorflow as tf
from keras.src.losses import loss as keras_loss
from keras.src.trainers.data_adapters import data_adapter_utils

from tfwd.curvature.capture import LayerCapture
from tfwd.curvature.preconditions import check_consumer_losses, check_sample_weight


def _curvature_layers(consumers):
    layers, seen = [], set()
    for consumer in consumers:
        for layer in consumer.curvature_layers:
            if id(layer) not in seen:
                seen.add(id(layer))
                layers.append(layer)
    return layers


def _is_mean_cross_entropy(loss) -> bool:
    """The compiled loss is 1/B Σ_b CE(y_b, z_b) on logits, so ∂ℓ_b/∂s = B·∂L/∂s."""
    return (isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
            and loss.get_config().get("from_logits")
            and loss.get_config().get("ignore_class") is None
            and loss.reduction == "sum_over_batch_size")


def forward_backward(model, optimizer, consumers, x, y, sample_weight=None):
    """Forward pass with capture, loss, gradients, consumers. Returns (y_pred, loss, grads).

    ``loss`` is the per-replica loss as Keras computes it (divided by the replica count under
    a strategy); gradients are of ``optimizer.scale_loss(loss)``.
    """
    check_sample_weight([type(consumer).__name__ for consumer in consumers], sample_weight)
    check_consumer_losses(model, consumers)
    layers = _curvature_layers(consumers)
    persistent = any(consumer.needs_persistent_tape for consumer in consumers)
    with tf.GradientTape(persistent=persistent) as tape, LayerCapture(layers) as capture:
        y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
        loss = model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
        )
        scaled_loss = optimizer.scale_loss(loss)
    if layers and sample_weight is None and _is_mean_cross_entropy(model.loss):
        # The same backward pass gives the per-example pre-activation gradients the consumers
        # would otherwise back-propagate again: ∂ℓ_b/∂s = ∂(c·L/R)/∂s · B·R/c, with the local
        # batch B, R replicas (Keras divides the loss by R) and loss scale c.
        preactivations = [capture.records[layer.name].preactivations for layer in layers]
        all_gradients = tape.gradient(scaled_loss, model.trainable_weights + preactivations)
        gradients = all_gradients[: len(model.trainable_weights)]
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        scale = (tf.cast(tf.shape(y_pred)[0] * replicas, y_pred.dtype)
                 / tf.cast(optimizer.scale_loss(1.0), y_pred.dtype))
        for layer, g in zip(layers, all_gradients[len(model.trainable_weights):]):
            capture.records[layer.name].example_gradients = g * scale
    else:
        gradients = tape.gradient(scaled_loss, model.trainable_weights)
    for consumer in consumers:
        gradients = consumer.observe(tape, capture.records, y_pred, y, gradients)
    del tape
    return y_pred, loss, gradients


def taped_train_step(model, consumers, data):
    """Keras ``train_step`` with curvature capture; installed by ``install_train_step``."""
    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
    optimizer = model.optimizer
    y_pred, loss, gradients = forward_backward(model, optimizer, consumers, x, y, sample_weight)
    model._loss_tracker.update_state(
        keras_loss.unscale_loss_for_distribution(loss),
        sample_weight=tf.shape(tf.nest.flatten(x)[0])[0],
    )
    optimizer.apply(gradients, model.trainable_weights)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def install_train_step(model: keras.Model, consumers) -> None:
    """Make ``model.fit`` use ``taped_train_step`` with these consumers.

    An instance attribute shadows ``Model.train_step``; the cached train function is dropped
    so the next ``fit`` traces the new step.
    """
    object.__setattr__(model, "train_step", functools.partial(taped_train_step, model, list(consumers)))
    model.train_function = None
