"""Levenberg–Marquardt adaptation of K-FAC's damping λ (Martens & Grosse 2015, §6.5).

Every ``interval`` steps (M&G's T₁), right after the step δ is applied, K-FAC compares the
change of the training loss h on that step's batch with the change its quadratic model M
predicted (``tfwd.curvature.quadratic_model``: exact Gauss-Newton/Fisher products on the
batch), the reduction ratio

    ρ = (h(θ + δ) − h(θ)) / (M(δ) − M(0)),

and rescales the damping, with ω = ``decay`` ** ``interval`` (M&G: ω₁ = (19/20)^T₁, T₁ = 5):

    λ ← min(λ / ω, λ_max)   if ρ < 1/4     (h fell much less than predicted: damp more)
    λ ← max(λ · ω, λ_min)   if ρ > 3/4     (the model was accurate: damp less)
    λ unchanged             otherwise.

ρ is the plain ratio also when M predicts an increase (a step that is not a descent direction
of M, e.g. through momentum): then ρ ≈ 1 still says that M described h over the step. Cases
the ratio does not cover: a non-finite h(θ + δ) counts as ρ = −∞ (damp more); a zero
predicted change (no step, e.g. one skipped by the loss scaler) leaves λ unchanged (ρ = NaN).

λ is K-FAC's one damping, the π-split Tikhonov term of the factors (``tfwd.curvature.inverse``),
adapted directly by this rule; M&G adapt their λ this way and derive the factors' damping from
it (γ = √(λ + η), refined by a separate search, §6.6), which we do not do. A new λ reaches the
updates when the damped inverses are next recomputed (every ``inv_every`` steps; M&G recompute
them every T₃ = 20 steps). See docs/equations.md §4.9.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfwd.choices import damping as options

LOWER_RATIO, UPPER_RATIO = 0.25, 0.75  # M&G §6.5's thresholds on ρ


@dataclasses.dataclass(frozen=True)
class DampingAdaptation:
    """The options of the rule above; defaults (M&G's T₁ = 5 and 19/20, wide bounds) and
    valid ranges in ``tfwd.choices.damping``, which ``TrainConfig`` checks too."""

    interval: int = options.INTERVAL
    decay: float = options.DECAY
    minimum: float = options.MINIMUM
    maximum: float = options.MAXIMUM

    def __post_init__(self):
        options.check_adaptation(self.interval, self.decay, self.minimum, self.maximum)

    @property
    def factor(self) -> float:
        """ω = decay ** interval."""
        return self.decay ** self.interval

    def check_initial(self, damping: float) -> None:
        options.check_initial_damping(damping, self.minimum, self.maximum)

    def get_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(cls, value) -> "DampingAdaptation | None":
        """None/False: off; True: defaults; a dict (a saved config) or an instance."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"adaptive_damping must be None, a bool, a dict or a "
                         f"DampingAdaptation, got {value!r}.")


def reduction_ratio(actual: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    """ρ = actual / predicted, with −∞ and NaN for the cases in the module docstring."""
    moved = tf.not_equal(predicted, 0)
    ratio = actual / tf.where(moved, predicted, tf.ones_like(predicted))
    undecided = tf.fill(tf.shape(actual), tf.constant(float("nan"), actual.dtype))
    failed = tf.fill(tf.shape(actual), tf.constant(float("-inf"), actual.dtype))
    return tf.where(tf.math.is_finite(actual), tf.where(moved, ratio, undecided), failed)


def adapted_damping(damping: tf.Tensor, ratio: tf.Tensor, adaptation: DampingAdaptation
                    ) -> tf.Tensor:
    """λ after one application of the rule for reduction ratio ρ = ``ratio``."""
    factor = tf.cast(adaptation.factor, damping.dtype)
    raised = tf.minimum(damping / factor, tf.cast(adaptation.maximum, damping.dtype))
    lowered = tf.maximum(damping * factor, tf.cast(adaptation.minimum, damping.dtype))
    return tf.where(ratio < LOWER_RATIO, raised, tf.where(ratio > UPPER_RATIO, lowered, damping))
