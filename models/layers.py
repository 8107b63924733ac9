"""Building blocks shared by the model zoo, and ghost batch normalization.

`BlockBuilder` creates every weight layer of a network in a form the curvature code can use:
each `Dense`/`Conv2D` is linear (`activation=None`) and followed by separate batch-norm and
ReLU layers, so K-FAC (Martens & Grosse 2015; Grosse & Martens 2016 for convolutions) can
capture a layer's input and its pre-activation. Conventions of the two seed papers
(docs/equations.md §9): Glorot-uniform kernels, zero biases, batch norm without gamma/beta,
and no bias in a layer followed by batch norm (the normalization would cancel it).

`GhostBatchNormalization` is the batch norm of Hoffer, Hubara & Soudry, "Train longer,
generalize better" (NeurIPS 2017), section 4: the large-batch baseline of the curvature-noise
paper (seed 002, section 4) normalizes every virtual batch of `virtual_batch_size` examples
with its own statistics.
"""
from __future__ import annotations

import collections

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfwd.choices.models import TOP_LAYER


def check_int(name: str, value: int, *, minimum: int) -> None:
    """Raises ValueError unless `value` is an int (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


@keras.saving.register_keras_serializable(package="tfwd")
class GhostBatchNormalization(keras.layers.Layer):
    """Batch normalization over consecutive virtual ("ghost") batches (Hoffer et al. 2017).

    Training: the (per-replica) batch of B examples is split in order into B / v ghost batches
    of v = `virtual_batch_size` examples, and each ghost batch g is normalized with its own
    mean μ_g and biased variance σ²_g over the examples (and spatial positions for conv
    features) of that ghost batch:  y = γ · (x − μ_g) / √(σ²_g + ε) + β.
    B must be divisible by v; otherwise a ValueError is raised when the batch size is known
    while tracing, else `tf.errors.InvalidArgumentError` when the step runs.

    Moving statistics (convention of tf.keras 2's `BatchNormalization(virtual_batch_size=…)`)
    are updated from the *mean of the ghost statistics*, with momentum m:
        moving_mean     ← m · moving_mean     + (1 − m) · mean_g(μ_g)
        moving_variance ← m · moving_variance + (1 − m) · mean_g(σ²_g)
    (mean_g(σ²_g) is the within-ghost variance: it omits the spread of the ghost means.)
    Under `tf.distribute` each replica normalizes its own batch and the update is averaged
    over replicas (the statistics variables use `aggregation="mean"`), i.e. for equal replica
    batches it is the mean over all ghost batches of the global batch.

    Inference: y = γ · (x − moving_mean) / √(moving_variance + ε) + β, as plain batch norm.

    Args:
      virtual_batch_size: v, examples per ghost batch.
      momentum: m above (Keras `BatchNormalization` default 0.99).
      epsilon: ε above (Keras default 1e-3).
      center: learn the offset β (default False: the papers' batch norm has no β).
      scale: learn the scale γ (default False: no γ).
    The normalized axis is the last one (channels-last features).
    """

    def __init__(
        self,
        virtual_batch_size: int,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = False,
        scale: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("virtual_batch_size", virtual_batch_size, minimum=1)
        self.virtual_batch_size = virtual_batch_size
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.gamma = None
        self.beta = None

    def build(self, input_shape: tuple) -> None:
        shape = (input_shape[-1],)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape, name="gamma", initializer="ones", autocast=False
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape, name="beta", initializer="zeros", autocast=False
            )
        # Replicas assign these in replica context; "mean" averages their updates.
        self.moving_mean = self.add_weight(
            shape=shape, name="moving_mean", initializer="zeros", trainable=False,
            autocast=False, aggregation="mean",
        )
        self.moving_variance = self.add_weight(
            shape=shape, name="moving_variance", initializer="ones", trainable=False,
            autocast=False, aggregation="mean",
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def call(self, inputs, training: bool | None = None):
        # Statistics overflow in float16/bfloat16, so normalize in (at least) float32.
        inputs = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        # A frozen layer (trainable=False) runs in inference mode, as Keras BatchNormalization.
        if training and self.trainable:
            ghosts = self._split_into_ghost_batches(inputs)
            per_ghost_axes = list(range(1, len(ghosts.shape) - 1))
            mean, variance = ops.moments(ghosts, axes=per_ghost_axes, keepdims=True)
            outputs = ops.reshape(self._normalize(ghosts, mean, variance), ops.shape(inputs))
            ghost_and_spatial_axes = list(range(len(mean.shape) - 1))
            self._update_moving_statistics(
                ops.mean(mean, axis=ghost_and_spatial_axes),
                ops.mean(variance, axis=ghost_and_spatial_axes),
            )
        else:
            outputs = self._normalize(
                inputs,
                ops.cast(self.moving_mean, inputs.dtype),
                ops.cast(self.moving_variance, inputs.dtype),
            )
        return ops.cast(outputs, self.compute_dtype)

    def _split_into_ghost_batches(self, inputs: tf.Tensor) -> tf.Tensor:
        """Reshapes [B, ...] to [B / v, v, ...], checking that v divides B."""
        v = self.virtual_batch_size
        message = (
            f"{self.name}: the batch size must be divisible by virtual_batch_size={v}; "
            "use a (per-replica) batch size that is a multiple of the ghost batch size, "
            "e.g. batch the data with drop_remainder=True."
        )
        batch_size = inputs.shape[0]
        if batch_size is not None:
            if batch_size % v:
                raise ValueError(f"{message} Got batch size {batch_size}.")
        else:
            check = tf.debugging.assert_equal(tf.shape(inputs)[0] % v, 0, message=message)
            with tf.control_dependencies([check]):
                inputs = tf.identity(inputs)
        return tf.reshape(inputs, tf.concat([[-1, v], tf.shape(inputs)[1:]], axis=0))

    def _normalize(self, x, mean, variance):
        outputs = (x - mean) * ops.rsqrt(variance + self.epsilon)
        if self.scale:
            outputs = outputs * ops.cast(self.gamma, x.dtype)
        if self.center:
            outputs = outputs + ops.cast(self.beta, x.dtype)
        return outputs

    def _update_moving_statistics(self, mean, variance) -> None:
        for moving, batch_value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(
                moving * self.momentum + ops.cast(batch_value, moving.dtype) * (1.0 - self.momentum)
            )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "virtual_batch_size": self.virtual_batch_size,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
        }


def derive_seed(seed: int, layer_index: int) -> int:
    """A 32-bit initializer seed for weight layer `layer_index` of a model built with `seed`.

    numpy's SeedSequence hashes the pair, so distinct (seed, index) pairs give unrelated
    streams (unlike e.g. seed + index, which would make model seed 1 reuse seed 0's layers).
    """
    return int(np.random.SeedSequence([seed, layer_index]).generate_state(1)[0])


class BlockBuilder:
    """Creates the named, seeded layers of one network and applies them (functional API).

    Names, in order of creation and counted from 1 per kind: `conv_<i>` (Conv2D),
    `dense_<i>` (hidden Dense), `bn_<i>` (batch norm, plain or ghost), `relu_<i>`,
    `pool_<i>`, `add_<i>`, and for the transformer `embedding_<i>`, `norm_<i>` (layer norm),
    `attention_<i>`; the output layer is `top`. The `j`-th randomly initialized weight
    (a Dense/Conv2D kernel, an embedding table, each attention projection; counted from 0) is
    drawn with seed `derive_seed(seed, j)`, so equal seeds give equal initial weights without
    touching global random state.

    Args:
      batch_norm: put batch norm after every hidden Dense/Conv2D (which then has no bias).
      bn_affine: give batch norm a learned scale γ and offset β.
      ghost_batch_size: use `GhostBatchNormalization` with this many examples per ghost batch.
      seed: model seed.
    """

    def __init__(
        self,
        *,
        batch_norm: bool,
        bn_affine: bool,
        ghost_batch_size: int | None,
        seed: int,
    ):
        if not batch_norm and (bn_affine or ghost_batch_size is not None):
            raise ValueError(
                "bn_affine and ghost_batch_size configure batch norm; "
                "pass batch_norm=True to use them."
            )
        check_int("seed", seed, minimum=0)
        self.batch_norm = batch_norm
        self.bn_affine = bn_affine
        self.ghost_batch_size = ghost_batch_size
        self.seed = seed
        self._counts = collections.Counter()
        self._weight_layers = 0

    def conv(
        self, x, filters: int, kernel_size: int = 3, strides: int = 1, padding: str = "same"
    ):
        """Conv2D followed by batch norm if enabled; no activation."""
        x = keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding, activation=None,
            use_bias=not self.batch_norm, **self._initializers(), name=self._name("conv"),
        )(x)
        return self._normalize(x)

    def conv_relu(
        self, x, filters: int, kernel_size: int = 3, strides: int = 1, padding: str = "same"
    ):
        """`conv` then ReLU."""
        return self.relu(self.conv(x, filters, kernel_size, strides, padding))

    def dense(self, x, units: int):
        """Hidden Dense (linear), followed by batch norm if enabled."""
        x = keras.layers.Dense(
            units, activation=None, use_bias=not self.batch_norm, **self._initializers(),
            name=self._name("dense"),
        )(x)
        return self._normalize(x)

    def dense_relu(self, x, units: int):
        """`dense` then ReLU."""
        return self.relu(self.dense(x, units))

    def embedding(self, indices, input_dim: int, output_dim: int):
        """Embedding `embedding_<i>`: rows drawn from N(0, 0.02²), seeded (ViT's position
        embedding initialization, Dosovitskiy et al. 2021)."""
        seed = self._next_weight_layer_seed()
        return keras.layers.Embedding(
            input_dim, output_dim, name=self._name("embedding"),
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02, seed=seed),
        )(indices)

    def layer_norm(self, x):
        """LayerNormalization `norm_<i>` over the last axis with γ and β (ε = 1e-6, as ViT)."""
        return keras.layers.LayerNormalization(epsilon=1e-6, name=self._name("norm"))(x)

    def self_attention(self, x, num_heads: int):
        """MultiHeadAttention `attention_<i>` of x on itself, key_dim = width / num_heads.

        Keras gives the query, key, value and output projections (`EinsumDense` layers, with
        zero biases) clones of one initializer, so a seeded initializer would make the query,
        key and value kernels equal. The layer is therefore built with zero kernels and each
        projection's kernel drawn afterwards, Glorot-uniform (Keras's default for this layer),
        from its own seed.
        """
        width = x.shape[-1]
        if width % num_heads:
            raise ValueError(
                f"the attention width {width} must be divisible by num_heads={num_heads}."
            )
        attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim=width // num_heads, kernel_initializer="zeros",
            name=self._name("attention"),
        )
        outputs = attention(x, x)
        for projection in (attention.query_dense, attention.key_dense,
                           attention.value_dense, attention.output_dense):
            initializer = keras.initializers.GlorotUniform(seed=self._next_weight_layer_seed())
            projection.kernel.assign(initializer(projection.kernel.shape))
        return outputs

    def top(self, x, num_classes: int):
        """The output layer `top`: Dense with bias, returning logits."""
        return keras.layers.Dense(
            num_classes, activation=None, **self._initializers(), name=TOP_LAYER
        )(x)

    def relu(self, x):
        return keras.layers.ReLU(name=self._name("relu"))(x)

    def max_pool(self, x, pool_size: int, strides: int):
        return keras.layers.MaxPooling2D(
            pool_size, strides=strides, padding="same", name=self._name("pool")
        )(x)

    def add(self, inputs: list):
        return keras.layers.Add(name=self._name("add"))(inputs)

    def _normalize(self, x):
        if not self.batch_norm:
            return x
        affine = {"center": self.bn_affine, "scale": self.bn_affine, "name": self._name("bn")}
        if self.ghost_batch_size is None:
            return keras.layers.BatchNormalization(**affine)(x)
        return GhostBatchNormalization(self.ghost_batch_size, **affine)(x)

    def _next_weight_layer_seed(self) -> int:
        seed = derive_seed(self.seed, self._weight_layers)
        self._weight_layers += 1
        return seed

    def _initializers(self) -> dict:
        return {
            "kernel_initializer": keras.initializers.GlorotUniform(
                seed=self._next_weight_layer_seed()
            ),
            "bias_initializer": "zeros",
        }

    def _name(self, kind: str) -> str:
        self._counts[kind] += 1
        return f"{kind}_{self._counts[kind]}"
