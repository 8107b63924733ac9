"""Conventions shared by every diagnostic: batches, logits, losses, parameter vectors.

* Every diagnostic evaluates the model in **inference mode** (``training=False``): batch norm
  uses its moving statistics, so examples are independent (per-example gradients and
  Jacobians are well defined) and measuring never updates the moving statistics.
* The model returns **logits** z = f(x) of a softmax classifier (as every ``tfwd.models``
  network does); the loss is the softmax cross-entropy ℓ(z, y), with integer labels y
  (shape [B] or [B, 1]) or one-hot labels (shape [B, K]).
* θ is ``model.trainable_variables`` unless a function says otherwise; a list of tensors
  shaped like θ is a "parameter vector".
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf


class UndefinedDiagnostic(ValueError):
    """The quantity does not exist for this model and data (the message says why and what to
    change); ``DiagnosticCallback`` records the reason for that epoch instead of a number."""


def as_batch(batch) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(x, y) as tensors from a tuple ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``.

    Sample weights are ignored: diagnostics weight every example equally.
    """
    if isinstance(batch, dict) or not isinstance(batch, (tuple, list)):
        raise ValueError(
            "A diagnostic batch must be a tuple (x, y) of arrays or tensors, got "
            f"{type(batch).__name__}; pass e.g. next(iter(dataset)) of a (x, y) dataset."
        )
    x = tf.convert_to_tensor(batch[0])
    if x.dtype.is_integer:
        x = tf.cast(x, tf.float32)
    y = tf.convert_to_tensor(batch[1]) if len(batch) > 1 and batch[1] is not None else None
    return x, y


def batch_size(x) -> int:
    return int(x.shape[0])


def logits(model: keras.Model, x) -> tf.Tensor:
    """z = f(x) in inference mode, in at least float32.

    Under a mixed-precision policy the model computes in float16/bfloat16; the losses,
    softmaxes and reductions of the diagnostics then run in float32 (in float64 for a float64
    model), and back-propagate through the cast into the model's own compute dtype.
    """
    z = model(x, training=False)
    return tf.cast(z, keras.backend.result_type(z.dtype, "float32"))


def per_example_loss(logits_value, labels) -> tf.Tensor:
    """ℓ_i = softmax cross-entropy of example i, shape [B] (integer or one-hot labels)."""
    logits_value = tf.convert_to_tensor(logits_value)
    labels = tf.convert_to_tensor(labels)
    num_classes = logits_value.shape[-1]
    if labels.shape.rank == logits_value.shape.rank and labels.shape[-1] == num_classes > 1:
        return tf.nn.softmax_cross_entropy_with_logits(
            tf.cast(labels, logits_value.dtype), logits_value
        )
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.reshape(tf.cast(labels, tf.int32), [-1]), logits_value
    )


def mean_loss(model: keras.Model, x, y, temperature=1.0) -> tf.Tensor:
    """L = 1/B Σ_i ℓ(f(x_i)/T, y_i), inference mode."""
    z = logits(model, x)
    return tf.reduce_mean(per_example_loss(z / tf.cast(temperature, z.dtype), y))


def require_labels(y, what: str) -> None:
    if y is None:
        raise ValueError(f"{what} needs labels: pass the batch as (x, y).")


def primals(variables) -> list:
    """The tf.Variables behind Keras variables (what tapes and ForwardAccumulator watch)."""
    return [getattr(variable, "value", variable) for variable in variables]


def flatten_per_example(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    """[B, *shape_k] tensors into one [B, Σ_k |shape_k|] matrix."""
    batch = tf.shape(tensors[0])[0]
    return tf.concat([tf.reshape(t, [batch, -1]) for t in tensors], axis=1)


def inner(a: Sequence[tf.Tensor], b: Sequence[tf.Tensor]) -> tf.Tensor:
    """⟨a, b⟩ of two parameter vectors."""
    return tf.add_n([tf.reduce_sum(u * v) for u, v in zip(a, b)])


def stateless_seed(seed: int, stream: int = 0) -> tf.Tensor:
    """A stateless-random seed (shape [2] int64) for stream ``stream`` of run seed ``seed``."""
    return tf.constant([seed, stream], tf.int64)


def rademacher(shape, seed: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """Independent ±1 entries with equal probability."""
    bits = tf.random.stateless_uniform(shape, seed=seed, minval=0, maxval=2, dtype=tf.int32)
    return tf.cast(2 * bits - 1, dtype)


def to_float(value) -> float:
    # Through tf.cast: numpy cannot convert a bfloat16 tensor.
    return float(tf.cast(value, tf.float64))
