"""Scale-and-shift block: the γ, β of BatchNormalization and LayerNormalization.

The layer computes s = γ ∘ x̂ + β with x̂ the normalized input, γ, β of C entries ("channels")
broadcast over the T other positions of an example (pixels for batch norm on [B, H, W, C],
tokens for layer norm on [B, T, d]). The per-example gradient of channel c is exact and cheap,

    v_bc = (Σ_t g_btc x̂_btc,  Σ_t g_btc)  = (∂ℓ_b/∂γ_c, ∂ℓ_b/∂β_c),    g = ∂ℓ_b/∂s,

so the block keeps, per channel, the exact curvature of (γ_c, β_c) and drops the couplings
between channels (tensorflow/kfac's ScaleAndShift blocks; kfac-jax's ScaleAndShiftDiagonal):

* ``scale_shift="per_channel"``:  F_c = 1/B Σ_b v_bc v_bcᵀ   (2×2; 1×1 with only γ or only β)
* ``scale_shift="diagonal"``:     F_c = 1/B Σ_b v_bc ∘ v_bc  (its diagonal)

Both equal the corresponding entries of the exact Gauss-Newton / Fisher matrix for any batch
(with exact output curvature); everything they omit is the cross-channel part. Damping adds
λ to F_c (Tikhonov, as A_λ ⊗ G_λ ≈ A ⊗ G + λI for the Kronecker blocks); the preconditioned
gradient is (F_c + λI)⁻¹ v_c per channel.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfwd.choices.kfac import ScaleShift
from tfwd.curvature.block import CurvatureBlock, Record, StateSpec, UnsupportedLayerError


class ScaleAndShiftBlock(CurvatureBlock):
    """Curvature of a normalization layer's γ and β; subclasses compute x̂."""

    def normalized(self, inputs, *args, **kwargs) -> tf.Tensor:
        raise NotImplementedError

    @property
    def variables(self) -> list:
        return [v for v in (self.gamma, self.beta) if v is not None]

    @property
    def gamma(self):
        return self.layer.gamma if self.layer.scale else None

    @property
    def beta(self):
        return self.layer.beta if self.layer.center else None

    @property
    def channels(self) -> int:
        return self.variables[0].shape.num_elements()

    @property
    def parameters_per_channel(self) -> int:
        return len(self.variables)

    def _check_trailing_axes(self, input_rank: int) -> None:
        axes = self.layer.axis if isinstance(self.layer.axis, (list, tuple)) else [self.layer.axis]
        axes = sorted(a % input_rank for a in axes)
        if axes != list(range(input_rank - len(axes), input_rank)):
            raise UnsupportedLayerError(
                f"{type(self.layer).__name__} {self.name!r} normalizes axes {self.layer.axis}; "
                "K-FAC's scale-and-shift block needs γ/β on the trailing axes.")

    def forward(self, inputs, *args, **kwargs):
        self._check_trailing_axes(len(inputs.shape))
        x_hat = self.normalized(inputs, *args, **kwargs)
        s = x_hat
        if self.gamma is not None:
            s = s * keras.ops.cast(self.gamma, s.dtype)
        if self.beta is not None:
            s = s + keras.ops.cast(self.beta, s.dtype)
        return s, Record(inputs=inputs, preactivations=s, extras={"normalized": x_hat})

    def _rows(self, tensor):
        return tf.reshape(self.cast(tensor), [tf.shape(tensor)[0], -1, self.channels])

    def example_gradients(self, record, output_gradients) -> tf.Tensor:
        """v: [B, C, k], the exact per-example gradients of (γ, β) per channel."""
        g = self._rows(output_gradients)
        parts = []
        if self.gamma is not None:
            parts.append(tf.reduce_sum(g * self._rows(record.extras["normalized"]), axis=1))
        if self.beta is not None:
            parts.append(tf.reduce_sum(g, axis=1))
        return tf.stack(parts, axis=-1)

    def input_statistics(self, record) -> list:
        return []

    def output_statistics(self, record, output_gradients) -> list:
        v = self.example_gradients(record, output_gradients)
        batch = tf.cast(tf.shape(v)[0], v.dtype)
        if self.options.scale_shift == ScaleShift.DIAGONAL:
            return [tf.reduce_sum(tf.square(v), axis=0) / batch]
        return [tf.einsum("bci,bcj->cij", v, v) / batch]

    def factor_specs(self) -> list[StateSpec]:
        k = self.parameters_per_channel
        diagonal = self.options.scale_shift == ScaleShift.DIAGONAL
        shape = (self.channels, k) if diagonal else (self.channels, k, k)
        return [StateSpec("F", shape)]

    def inverse_specs(self) -> list[StateSpec]:
        spec = self.factor_specs()[0]
        initializer = "ones" if self.options.scale_shift == ScaleShift.DIAGONAL else "identity"
        return [StateSpec("F_inverse", spec.shape, initializer)]

    def damped_inverses(self, factors, damping) -> list:
        F = factors[0]
        damping = tf.cast(damping, F.dtype)
        if self.options.scale_shift == ScaleShift.DIAGONAL:
            return [1.0 / (F + damping)]
        identity = tf.eye(self.parameters_per_channel, dtype=F.dtype)
        return [tf.linalg.inv(F + damping * identity)]

    def inverse_cost(self) -> int:
        k = self.parameters_per_channel
        return self.channels * (k if self.options.scale_shift == ScaleShift.DIAGONAL else 2 * k**3)

    def precondition(self, gradients, inverses) -> list:
        v = tf.stack([tf.reshape(g, [-1]) for g in gradients], axis=-1)  # [C, k]
        if self.options.scale_shift == ScaleShift.DIAGONAL:
            direction = inverses[0] * v
        else:
            direction = tf.einsum("cij,cj->ci", inverses[0], v)
        return [tf.reshape(direction[:, i], variable.shape)
                for i, variable in enumerate(self.variables)]

    def to_dense(self, factors) -> tf.Tensor:
        """θ = [γ.ravel(), β.ravel()]: entry (i·C + c, j·C + c) is F_c[i, j]."""
        F = factors[0]
        if self.options.scale_shift == ScaleShift.DIAGONAL:
            F = tf.linalg.diag(F)
        k, channels = self.parameters_per_channel, self.channels
        dense = tf.einsum("cij,cd->icjd", F, tf.eye(channels, dtype=F.dtype))
        return tf.reshape(dense, [k * channels, k * channels])


class LayerNormalizationBlock(ScaleAndShiftBlock):
    """``keras.layers.LayerNormalization``: x̂ = (x − mean) / sqrt(var + ε) over its axes."""

    @classmethod
    def check(cls, layer) -> None:
        if layer.rms_scaling:
            raise UnsupportedLayerError(
                f"LayerNormalization {layer.name!r} uses rms_scaling; not supported by K-FAC.")
        if not (layer.scale or layer.center):
            raise UnsupportedLayerError(f"LayerNormalization {layer.name!r} has no γ or β.")

    def normalized(self, inputs, *args, **kwargs):
        x_hat = keras.ops.layer_normalization(inputs, None, None, self.layer.axis,
                                              self.layer.epsilon)
        return keras.ops.cast(x_hat, self.layer.compute_dtype)


class BatchNormalizationBlock(ScaleAndShiftBlock):
    """``keras.layers.BatchNormalization`` (no renorm): x̂ from batch statistics in training
    (the layer's moving averages are updated as usual), moving averages in inference."""

    @classmethod
    def check(cls, layer) -> None:
        if layer.renorm:
            raise UnsupportedLayerError(
                f"BatchNormalization {layer.name!r} uses renorm; not supported by K-FAC.")
        if not (layer.scale or layer.center):
            raise UnsupportedLayerError(f"BatchNormalization {layer.name!r} has no γ or β.")

    def normalized(self, inputs, *args, **kwargs):
        # The layer's own call with γ = 1, β = 0: its exact normalization, moments and
        # moving-average updates; γ, β are applied by ``forward`` so that s is recorded.
        # The flags are restored before anything else reads them.
        layer, flags = self.layer, (self.layer.scale, self.layer.center)
        try:
            object.__setattr__(layer, "scale", False)
            object.__setattr__(layer, "center", False)
            return type(layer).call(layer, inputs, *args, **kwargs)
        finally:
            object.__setattr__(layer, "scale", flags[0])
            object.__setattr__(layer, "center", flags[1])
