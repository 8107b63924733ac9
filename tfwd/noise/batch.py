"""Per-example gradients of one replica's batch, as the noise kinds need them.

With logits z_b and the softmax cross-entropy ℓ_b = −log p(y_b|x_b, θ) of the *true* label
(paper 002 §2.2: F is the empirical Fisher), u_b = ∂ℓ_b/∂z_b = softmax(z_b) − onehot(y_b)
(``tfwd.curvature.statistics.output_vectors(..., "empirical")``). Back-propagating u through
the tape of the training step gives, without a loop over examples,

* ``preactivation_gradients``: g_b = ∂ℓ_b/∂s_b at each captured layer (per example, no 1/B);
* ``sign_weighted_gradients``: Σ_b σ_b ∇_θ ℓ_b with Rademacher signs σ_b (one backward pass),
  whose covariance over σ is Σ_b ∇ℓ_b ∇ℓ_bᵀ = B·F̂ (paper 002 §3.3 / REFERENCE §4).

Both are per-example quantities only when examples do not interact in the forward pass:
with batch norm in training mode the back-propagated u also flows through the batch
statistics, the same approximation K-FAC makes (``tfwd.curvature.statistics``).

Random streams are stateless: ``substream(key, i)`` folds i into a [2] int64 key.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfwd.curvature.statistics import output_vectors


def substream(key: tf.Tensor, index) -> tf.Tensor:
    """An independent stateless seed derived from ``key`` ([2] int64) and an integer."""
    return tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))


def standard_normal(shape, key: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    return tf.random.stateless_normal(shape, seed=key, dtype=dtype)


def rademacher(shape, key: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """Independent ±1 signs with probability ½ each."""
    bits = tf.random.stateless_uniform(shape, seed=key, minval=0, maxval=2, dtype=tf.int32)
    return tf.cast(2 * bits - 1, dtype)


def class_indices(labels, logits: tf.Tensor) -> tf.Tensor:
    """Integer class labels from sparse labels or one-hot rows of width K (argmax)."""
    labels = tf.convert_to_tensor(labels)
    num_classes = logits.shape[-1]
    if labels.shape.rank == logits.shape.rank and labels.shape[-1] == num_classes and num_classes > 1:
        return tf.argmax(labels, axis=-1)
    return labels


@dataclasses.dataclass
class NoiseBatch:
    """What one noise draw reads from the taped forward/backward pass of one replica.

    ``variables`` are the model's trainable variables in the order of ``gradients`` (the
    loss gradients of the training step, ``None`` where a variable is not connected).
    """

    tape: tf.GradientTape
    records: dict
    logits: tf.Tensor
    labels: tf.Tensor
    variables: list
    gradients: list

    @property
    def batch_size(self) -> tf.Tensor:
        """B, the replica's local batch size, as a float."""
        return tf.cast(tf.shape(self.logits)[0], self.logits.dtype)

    @property
    def noisy_indices(self) -> list[int]:
        """Indices of the variables that have a gradient this step."""
        return [i for i, g in enumerate(self.gradients) if g is not None]

    def output_gradients(self) -> tf.Tensor:
        """u_b = softmax(z_b) − onehot(y_b) = ∂ℓ_b/∂z_b, [B, K]."""
        labels = class_indices(self.labels, self.logits)
        (vector, _), = output_vectors(self.logits, labels, "empirical", seed=None)
        return tf.stop_gradient(vector)

    def preactivation_gradients(self, layers) -> list[tf.Tensor]:
        """[g = ∂ℓ_b/∂s_b] per layer, shaped like the layer's pre-activations.

        Read off the training step's own backward pass when it recorded them (compiled mean
        sparse cross-entropy on logits, no sample weights); otherwise one more backward pass
        of u = ∂ℓ_b/∂z_b from the logits.
        """
        records = [self.records[layer.name] for layer in layers]
        if all(record.example_gradients is not None for record in records):
            return [record.example_gradients for record in records]
        preactivations = [record.preactivations for record in records]
        return self.tape.gradient(self.logits, preactivations, output_gradients=self.output_gradients())

    def sign_weighted_gradients(self, key: tf.Tensor) -> list:
        """Σ_b σ_b ∇ℓ_b for every variable (None where not connected to the logits)."""
        signs = rademacher(tf.shape(self.logits)[:1], key, self.logits.dtype)
        return self.tape.gradient(
            self.logits, self.variables, output_gradients=signs[:, tf.newaxis] * self.output_gradients()
        )

    def layer_indices(self, layer) -> tuple[int, int | None]:
        """Positions of ``layer``'s kernel and bias in ``variables`` (bias None if absent)."""
        position = {id(variable): i for i, variable in enumerate(self.variables)}
        kernel = position.get(id(layer.kernel))
        if kernel is None:
            raise ValueError(
                f"Layer {layer.name!r}'s kernel is not among the model's trainable variables; "
                "curvature noise covers trainable Dense/Conv2D layers only (was it frozen "
                "after the noise was built? rebuild it with tfwd.noise.make_noise)."
            )
        bias = position.get(id(layer.bias)) if layer.use_bias else None
        return kernel, bias
