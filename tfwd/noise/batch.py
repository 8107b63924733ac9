"""Per-example gradients of one replica's batch, as the noise kinds need them.

With logits z_b and the softmax cross-entropy ℓ_b = −log p(y_b|x_b, θ) of the *true* label
(paper 002 §2.2: F is the empirical Fisher), u_b = ∂ℓ_b/∂z_b = softmax(z_b) − onehot(y_b)
(``tfwd.curvature.statistics.output_vectors(..., "empirical")``). Back-propagating u through
the tape of the training step gives, without a loop over examples,

* ``preactivation_gradients``: g_b = ∂ℓ_b/∂s_b at each captured layer (per example, no 1/B),
  read off the training step's own backward pass when it recorded them;
* ``sign_weighted_gradients``: Σ_b σ_b ∇_θ ℓ_b with Rademacher signs σ_b, whose covariance
  over σ is Σ_b ∇ℓ_b ∇ℓ_bᵀ = B·F̂ (paper 002 §3.3 / docs/equations.md §5). For a captured Dense/Conv2D
  layer ∇W̃ ℓ_b = Σ_t ã_bt g_btᵀ, so its share is one ``outer_product_sum`` of a and g with
  weights σ (a weight-gradient product, no backward pass); the other variables (batch-norm γ/β,
  unsupported layers) take theirs from one backward pass of σ⊙u restricted to them, with the
  same signs, so that the cross-covariances between the two groups are kept too.

Both are per-example quantities only when examples do not interact in the forward pass:
with batch norm in training mode the back-propagated u also flows through the batch
statistics, the same approximation K-FAC makes (``tfwd.curvature.statistics``). Then a
captured layer's "per-example gradient" is ã_b g_bᵀ with g_b row b of the batch's backward
pass, while the backward pass of σ⊙u gives the other variables Σ_b σ_b ∂ℓ_b/∂θ through the
batch statistics; both are linear in σ, so the sum still has covariance Σ_b w_b w_bᵀ over σ,
w_b the concatenation of the two.

Random streams are stateless: ``substream(key, i)`` folds i into a [2] int64 key. Draws are
made in float32 and cast, so a seed gives the same noise under float32, float64 and the mixed
policies (up to the rounding of the cast).

Dtypes: the statistics are formed in ``NoiseBatch.dtype``, the logits' dtype but at least
float32 — float32 under ``mixed_float16``/``mixed_bfloat16`` (whose float16/bfloat16 squares
and sums of per-example gradients would overflow or round away), float64 for a float64 model.
Back-propagation through the tape stays in the model's compute dtype.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tfwd.choices.curvature import Curvature
from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.diagonal import outer_product_sum
from tfwd.curvature.statistics import output_vectors


def substream(key: tf.Tensor, index) -> tf.Tensor:
    """An independent stateless seed derived from ``key`` ([2] int64) and an integer."""
    return tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))


def standard_normal(shape, key: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """N(0, 1) entries drawn in float32 (the same numbers for every ``dtype``), then cast.

    Box–Muller on pairs of the stateless stream's uniforms u₁, u₂ ∈ [0, 1):
    √(−2 ln(1 − u₁))·(cos 2πu₂, sin 2πu₂) are two independent N(0, 1) (Box & Muller 1958),
    exactly, up to the float32 grid of u₁ that cuts the tails at |ξ| ≤ √(2·23·ln 2) ≈ 5.65
    (probability 1.6·10⁻⁸; ``tf.random.stateless_normal`` cuts its own at ≈ 5.7). Written out
    because it takes about half the CPU time of ``stateless_normal`` (measured on 1.8 M draws,
    BENCHMARKS.md), which here runs largely on one thread.
    """
    shape = tf.convert_to_tensor(shape, tf.int32)
    count = tf.reduce_prod(shape)
    uniforms = tf.random.stateless_uniform(tf.stack([2, (count + 1) // 2]), seed=key,
                                           dtype=tf.float32)
    radius = tf.sqrt(-2.0 * tf.math.log1p(-uniforms[0]))
    angle = (2.0 * np.pi) * uniforms[1]
    normals = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], axis=0)
    return tf.cast(tf.reshape(normals[:count], shape), dtype)


# Byte value v → its 8 bits as signs: row v, column i is +1 if bit i of v is set, else −1.
_BYTE_SIGNS = np.array([[1.0 if value >> bit & 1 else -1.0 for bit in range(8)]
                        for value in range(256)], np.float32)


def rademacher(shape, key: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """Independent ±1 signs with probability ½ each.

    Every bit of the uniformly random 32-bit words of the stateless stream is one sign (a
    byte looks up its 8 signs in a table): about a sixth of the CPU time of one random integer
    per sign, for the large draws of ``kfac``.
    """
    shape = tf.convert_to_tensor(shape, tf.int32)
    count = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform([(count + 31) // 32], seed=key, minval=None,
                                        maxval=None, dtype=tf.int32)
    byte_values = tf.cast(tf.bitcast(words, tf.uint8), tf.int32)  # [words, 4]
    signs = tf.gather(tf.constant(_BYTE_SIGNS, dtype), byte_values)  # [words, 4, 8]
    return tf.reshape(tf.reshape(signs, [-1])[:count], shape)


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
    _preactivation_gradients: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def dtype(self) -> tf.DType:
        """The dtype of the statistics: the logits' dtype, but at least float32."""
        return tf.as_dtype(keras.backend.result_type(self.logits.dtype, "float32"))

    @property
    def batch_size(self) -> tf.Tensor:
        """B, the replica's local batch size, as a float."""
        return tf.cast(tf.shape(self.logits)[0], self.dtype)

    @property
    def noisy_indices(self) -> list[int]:
        """Indices of the variables that have a gradient this step."""
        return [i for i, g in enumerate(self.gradients) if g is not None]

    def output_gradients(self) -> tf.Tensor:
        """u_b = softmax(z_b) − onehot(y_b) = ∂ℓ_b/∂z_b, [B, K], in ``dtype``."""
        logits = tf.cast(self.logits, self.dtype)
        (vector, _), = output_vectors(logits, class_indices(self.labels, logits),
                                      Curvature.EMPIRICAL, seed=None)
        return tf.stop_gradient(vector)

    def inputs(self, layer) -> tf.Tensor:
        """The captured input a of ``layer``, in ``dtype``."""
        return tf.cast(self.records[layer.name].inputs, self.dtype)

    def preactivation_gradients(self, layers) -> list[tf.Tensor]:
        """[g = ∂ℓ_b/∂s_b] per layer, shaped like the layer's pre-activations, in ``dtype``.

        Read off the training step's own backward pass when it recorded them (compiled mean
        sparse cross-entropy on logits, no sample weights); otherwise one more backward pass
        of u = ∂ℓ_b/∂z_b from the logits (for all the layers asked for at once, remembered for
        later calls).
        """
        missing = [layer.name for layer in layers
                   if layer.name not in self._preactivation_gradients
                   and self.records[layer.name].example_gradients is None]
        if missing:
            values = self.tape.gradient(
                self.logits, [self.records[name].preactivations for name in missing],
                output_gradients=tf.cast(self.output_gradients(), self.logits.dtype))
            self._preactivation_gradients.update(zip(missing, values))
        return [tf.cast(self._preactivation_gradients.get(
                    layer.name, self.records[layer.name].example_gradients), self.dtype)
                for layer in layers]

    def signs(self, key: tf.Tensor) -> tf.Tensor:
        """σ: one Rademacher sign per example, [B]."""
        return rademacher(tf.shape(self.logits)[:1], key, self.dtype)

    def sign_weighted_gradients(self, signs: tf.Tensor, layers, indices) -> dict[int, tf.Tensor]:
        """{i: Σ_b σ_b ∇_θi ℓ_b} for the variable indices ``indices`` (connected ones only).

        The kernels and biases of ``layers`` (captured Dense/Conv2D layers) from their records,
        Σ_b σ_b Σ_t ã_bt g_btᵀ; any other requested variable from one backward pass of σ⊙u
        through the tape, taken only when there is such a variable.
        """
        signed = self.layerwise(
            layers,
            lambda position, block, inputs, gradients: outer_product_sum(
                block, inputs, gradients, example_weights=signs),
        )
        signed = {i: value for i, value in signed.items() if i in indices}
        others = [i for i in indices if i not in signed]
        if others:
            values = self.tape.gradient(
                self.logits, [self.variables[i] for i in others],
                output_gradients=tf.cast(signs[:, tf.newaxis] * self.output_gradients(),
                                         self.logits.dtype),
            )
            signed.update({i: value for i, value in zip(others, values) if value is not None})
        return signed

    def layerwise(self, layers, matrix) -> dict[int, tf.Tensor]:
        """{variable index: kernel or bias part of M_l} for every layer l of ``layers``, where
        M_l = ``matrix(position, block, inputs, per_example_gradients)`` is in the layer's
        ``KroneckerBlock.to_matrix`` layout ([input_dim, output_dim], bias as the last row).
        """
        parts = {}
        per_example = self.preactivation_gradients(layers)
        for position, (layer, gradients) in enumerate(zip(layers, per_example)):
            block = KroneckerBlock.for_layer(layer)
            value = matrix(position, block, self.inputs(layer), gradients)
            for index, part in zip(self.layer_indices(layer), block.from_matrix(value)):
                if index is not None:
                    parts[index] = part
        return parts

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
