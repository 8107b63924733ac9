"""Curvature noise added to large-batch gradients: the training-step consumer (paper 002).

Paper 002 eq. 2 / Algorithm 1, with large batch M_L, small batch M_S, learning rate α:

    θ_{k+1} = θ_k − α ∇L_{M_L}(θ_k) + α · D(θ_k) · ξ_k,     ξ_k ~ N(0, I),
    D·Dᵀ ≈ s² · F,     s = √((M_L − M_S)/(M_L·M_S))        (``tfwd.noise.scale``)

F the empirical Fisher of the current batch (true labels). The consumer adds the noise to the
gradient before ``optimizer.apply``, so the optimizer sees ∇L_{M_L} + s·n with n one of
(``KINDS``; each kind is a module of ``tfwd.noise``):

* ``"diag_fisher"``    n = √diag(F) ⊙ ξ                (Algorithm 1, the paper's method)
* ``"full_fisher"``    n = (1/√B) Σ_b σ_b ∇ℓ_b          (Cov = F̂, eq. 5 sampled as in §3.3)
* ``"trace"``          n = √(t̂/d) · ξ, E t̂ = tr(F̂)      (isotropic, "Fisher Trace", §4.3)
* ``"kfac"``           n = L_A Ξ L_Gᵀ per layer        (Cov = G ⊗ A, §4.1, appendix E)
* ``"multiplicative"`` ∇L ⊙ (1 + σ_m ξ)                (appendix E, Hoffer et al. 2017)
* ``"none"``           no consumer (``make_noise`` returns None)

With plain SGD this is exactly Algorithm 1's update; with momentum/Adam/K-FAC the noise goes
through the optimizer's direction like the gradient does. The noise is switched off (exactly
zero, via ``tf.cond`` on the optimizer's step counter) from step
``noise_until_epoch · steps_per_epoch`` on — paper 002 §4.3 stops it after epoch 50. When
M_L = M_S, s = 0 and nothing is added (multiplicative noise too when its σ_m is tied to s,
``multiplicative_std=None``; its default is a fixed σ_m = 0.1).
``diag_fisher`` and ``kfac`` cover the Dense/Conv2D layers (``tfwd.curvature.capture``); the
variables of other layers (batch-norm γ/β, …) get no noise. ``full_fisher``, ``trace`` and
``multiplicative`` cover every trainable variable. All but ``multiplicative`` read the captured
layers' inputs a and the per-example pre-activation gradients g that the training step's own
backward pass records (``tfwd.noise.batch``; without such a record, e.g. with sample weights,
one backward pass of u provides g), and run no other backward pass through those layers;
``full_fisher`` and ``trace`` back-propagate σ⊙u once more only to variables outside them,
when the model has any.

Distribution (R replicas, local batch B, M_L = R·B). In replica context the training step
hands each replica the gradient of Keras's pre-scaled loss, g_r = (c/R)·∇L_r with
∇L_r = 1/B Σ_{b∈r} ∇ℓ_b and c the loss-scale factor (``optimizer.scale_loss(1)``, 1 without
mixed precision); the optimizer then SUM-all-reduces: Σ_r g_r = c·∇L_{M_L}. Replica r adds

    n_r = (c/√R) · s · D_r ξ_r,     D_r D_rᵀ = F̂_r (its own batch),  ξ_r independent,

so Σ_r n_r has covariance c²s² · (1/R) Σ_r F̂_r = c²s² · F̂_{M_L} (for the Fisher kinds the
mean of the replicas' batch Fishers *is* the global batch's; for ``kfac`` it is the mean of
the replicas' Kronecker blocks). So each replica's noise is √R times the gradient's own
pre-scaling (c/√R = √R · c/R): R independent draws of variance 1/R each add up to one draw of
the global covariance. Independence comes from folding the replica id into the seed.
``multiplicative`` instead uses the same ξ on every replica (no replica id in its seed, no
√R): Σ_r g_r ⊙ (1 + σ_m ξ) = c·∇L_{M_L} ⊙ (1 + σ_m ξ) exactly. (With unequal local batches,
e.g. a partial last batch, the mean of the replicas' F̂_r weights examples slightly unevenly.)

Randomness is stateless: the key of a draw is fold_in(fold_in([seed, kind], step), replica)
— identical for the same seed and step, different across seeds, steps and replicas.

Requirements: the model outputs the logits of a softmax cross-entropy with integer (or
one-hot) labels — per-example gradients are back-propagated from u = softmax(z) − onehot(y).
With batch norm in training mode those "per-example" gradients also flow through the batch
statistics (the K-FAC approximation as well).
"""
from __future__ import annotations

import math
import numbers
import warnings

import keras
import tensorflow as tf

from tfwd.choices import noise as defaults
from tfwd.choices.noise import NOISE_KINDS, NoiseKind
from tfwd.curvature.capture import LayerCapture, split_layers
from tfwd.curvature.preconditions import check_outputs_logits
from tfwd.noise import diag_fisher, full_fisher, kfac, multiplicative, trace
from tfwd.noise.batch import NoiseBatch
from tfwd.noise.scale import check_batch_sizes, noise_scale

KINDS = NOISE_KINDS  # in tfwd.choices.noise's order, which seeds each kind's stream

_SAMPLERS = {
    NoiseKind.DIAG_FISHER: diag_fisher.sample,
    NoiseKind.FULL_FISHER: full_fisher.sample,
    NoiseKind.TRACE: trace.sample,
    NoiseKind.KFAC: kfac.sample,
    NoiseKind.MULTIPLICATIVE: multiplicative.sample,
}
# Kinds that cover only the captured Dense/Conv2D layers, and kinds that read the captured
# layers' inputs and per-example pre-activation gradients (full_fisher and trace cover the
# other variables through the tape).
_LAYERWISE_KINDS = (NoiseKind.DIAG_FISHER, NoiseKind.KFAC)
_CAPTURE_KINDS = (NoiseKind.DIAG_FISHER, NoiseKind.FULL_FISHER, NoiseKind.TRACE, NoiseKind.KFAC)


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown noise kind {kind!r}; choose one of {KINDS}.")


class CurvatureNoise:
    """A ``tfwd.train.TrainStep`` consumer adding paper-002 noise to the gradients.

    Args:
      model: the (built) Keras model whose ``trainable_weights`` order the gradients.
      kind: one of ``KINDS`` other than ``"none"``.
      large_batch_size: M_L, the global batch size of training.
      small_batch_size: M_S ≤ M_L, the batch whose gradient noise is emulated.
      steps_per_epoch: optimizer steps per epoch (at batch M_L).
      noise_until_epoch: noise is added while ``optimizer.iterations`` <
        noise_until_epoch · steps_per_epoch (paper 002: 50).
      seed: seed of the stateless noise streams.
      multiplicative_std: σ_m of ``"multiplicative"``; default
        ``tfwd.choices.noise.MULTIPLICATIVE_STD`` (0.1, as ``TrainConfig``). None means σ_m = s,
        the value at which its variance σ_m²g_i² equals diagonal-Fisher noise s²F_ii when all
        per-example gradients agree (g_i² ≤ F_ii always), and zero when M_L = M_S.
    """

    def __init__(
        self,
        model: keras.Model,
        kind: str,
        *,
        large_batch_size: int,
        small_batch_size: int,
        steps_per_epoch: int,
        noise_until_epoch: int = defaults.NOISE_UNTIL_EPOCH,
        seed: int = 0,
        multiplicative_std: float | None = defaults.MULTIPLICATIVE_STD,
    ):
        check_kind(kind)
        if kind == NoiseKind.NONE:
            raise ValueError("kind='none' adds no noise: use make_noise, which returns None.")
        check_batch_sizes(large_batch_size, small_batch_size)
        for name, value, minimum in (("steps_per_epoch", steps_per_epoch, 1),
                                     ("noise_until_epoch", noise_until_epoch, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
        if multiplicative_std is not None and not multiplicative_std >= 0:
            raise ValueError(f"multiplicative_std must be >= 0 or None, got {multiplicative_std!r}.")
        check_outputs_logits(model, "Curvature noise")
        supported, others = split_layers(model)
        if kind in _CAPTURE_KINDS and not supported:
            raise ValueError(
                f"Noise kind {kind!r} needs a built model with at least one Dense or Conv2D "
                f"layer; model {model.name!r} has none (call model.build or run it once)."
            )
        self.model = model
        self.kind = kind
        self.large_batch_size = large_batch_size
        self.small_batch_size = small_batch_size
        self.steps_per_epoch = steps_per_epoch
        self.noise_until_epoch = noise_until_epoch
        self.seed = int(seed)
        self.scale = noise_scale(large_batch_size, small_batch_size)
        self.multiplicative_std = self.scale if multiplicative_std is None else float(multiplicative_std)
        self.noise_steps = noise_until_epoch * steps_per_epoch
        # Layers whose a and per-example g the draw reads. The step's tape stays persistent:
        # the draw back-propagates through it when the step did not record g, and
        # full_fisher/trace for variables outside these layers.
        self.curvature_layers = supported if kind in _CAPTURE_KINDS else []
        self.needs_persistent_tape = kind in _CAPTURE_KINDS
        self.uncovered_variables = (
            [v.path for layer in others for v in layer.trainable_weights]
            if kind in _LAYERWISE_KINDS else []
        )
        if self.uncovered_variables:
            warnings.warn(
                f"{kind} noise covers Dense/Conv2D layers only; these variables get no noise: "
                f"{self.uncovered_variables}",
                stacklevel=2,
            )

    # ----------------------------------------------------------------- drawing
    @property
    def silent(self) -> bool:
        """True when the noise is identically zero: s = 0 (M_L = M_S), or σ_m = 0."""
        multiplicative = self.kind == NoiseKind.MULTIPLICATIVE
        return (self.multiplicative_std if multiplicative else self.scale) == 0.0

    def _key(self, step, replica_id) -> tf.Tensor:
        key = tf.constant([self.seed, KINDS.index(self.kind)], tf.int64)
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(step, tf.int64))
        if self.kind == NoiseKind.MULTIPLICATIVE:  # shared across replicas (see module docstring)
            return key
        return tf.random.experimental.stateless_fold_in(key, tf.cast(replica_id, tf.int64))

    def _amplitude(self, num_replicas: int, gradient_scale):
        if self.kind == NoiseKind.MULTIPLICATIVE:
            return self.multiplicative_std
        return self.scale * gradient_scale / math.sqrt(num_replicas)

    def sample(
        self,
        tape: tf.GradientTape,
        records: dict,
        logits: tf.Tensor,
        labels,
        gradients: list,
        *,
        step,
        replica_id=0,
        num_replicas: int = 1,
        gradient_scale=1.0,
    ) -> list:
        """The noise for one replica's gradients (None where the gradient is None).

        ``tape`` must be persistent and have seen the forward pass that produced ``logits``
        and the ``records`` of ``curvature_layers``. ``gradient_scale`` is c (loss scale);
        see the module docstring for the 1/√``num_replicas`` factor.
        """
        indices = [i for i, g in enumerate(gradients) if g is not None]
        zeros = [tf.zeros_like(gradients[i]) for i in indices]
        if self.silent:
            values = zeros
        else:
            amplitude = self._amplitude(num_replicas, gradient_scale)
            batch = NoiseBatch(tape, records, logits, labels, list(self.model.trainable_weights),
                               list(gradients))
            key = self._key(step, replica_id)

            def draw():
                unit = _SAMPLERS[self.kind](batch, self.curvature_layers, key)
                return [
                    tf.cast(amplitude, gradients[i].dtype) * tf.cast(unit[i], gradients[i].dtype)
                    if i in unit else zero
                    for i, zero in zip(indices, zeros)
                ]

            active = tf.cast(step, tf.int64) < self.noise_steps
            values = tf.cond(active, draw, lambda: zeros) if indices else []
        noise = [None] * len(gradients)
        for i, value in zip(indices, values):
            noise[i] = value
        return noise

    # ---------------------------------------------------------------- consumer
    def observe(self, tape, records, y_pred, y, gradients):
        """Consumer hook of ``tfwd.train.TrainStep``: returns gradients + noise."""
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError("Compile the model before training with curvature noise.")
        context = tf.distribute.get_replica_context()
        noise = self.sample(
            tape, records, y_pred, y, gradients,
            step=optimizer.iterations,
            replica_id=context.replica_id_in_sync_group,
            num_replicas=context.num_replicas_in_sync,
            gradient_scale=optimizer.scale_loss(tf.constant(1.0)),
        )
        return [g if n is None else g + n for g, n in zip(gradients, noise)]

    def sample_for_batch(self, x, y, *, step, training: bool = False, replica_id=0,
                         num_replicas: int = 1) -> list:
        """Noise for the batch (x, y) at ``step``, outside a training step.

        Runs its own taped forward pass; the "gradients" are those of the mean
        cross-entropy (what ``multiplicative`` multiplies), unscaled (c = 1). ``replica_id``
        and ``num_replicas`` play the part of the replica context (tests, diagnostics).
        """
        with tf.GradientTape(persistent=True) as tape, LayerCapture(self.curvature_layers) as capture:
            logits = self.model(x, training=training)
        variables = list(self.model.trainable_weights)
        loss_only = NoiseBatch(tape, capture.records, logits, y, variables, gradients=[])
        gradients = tape.gradient(  # of the mean loss 1/B Σ_b ℓ_b
            logits, variables, output_gradients=loss_only.output_gradients() / loss_only.batch_size
        )
        noise = self.sample(tape, capture.records, logits, y, gradients, step=step,
                            replica_id=replica_id, num_replicas=num_replicas)
        del tape
        return noise


def make_noise(
    kind: str,
    model: keras.Model,
    *,
    large_batch_size: int,
    small_batch_size: int,
    steps_per_epoch: int,
    noise_until_epoch: int = defaults.NOISE_UNTIL_EPOCH,
    seed: int = 0,
    multiplicative_std: float | None = defaults.MULTIPLICATIVE_STD,
) -> CurvatureNoise | None:
    """The noise consumer of ``kind`` for ``model``, or None for ``"none"``.

    Install it with ``tfwd.train.TrainStep(model, [noise]).install()`` (for ``model.fit``)
    or call that step's ``replica_step`` in a custom loop. Arguments as
    ``CurvatureNoise``.
    """
    check_kind(kind)
    if kind == NoiseKind.NONE:
        return None
    return CurvatureNoise(
        model, kind,
        large_batch_size=large_batch_size,
        small_batch_size=small_batch_size,
        steps_per_epoch=steps_per_epoch,
        noise_until_epoch=noise_until_epoch,
        seed=seed,
        multiplicative_std=multiplicative_std,
    )
