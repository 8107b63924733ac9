"""Learning-rate schedules expressed in epochs, and batch-size scaling rules.

* Step decay (paper 000 §A): η(e) = η₀ · factor^⌊e / every⌋ — ×0.1 every 40 epochs for
  K-FAC, every 60 for SGD/Adam at batch 128 (docs/equations.md §3, §9).
* Linear warm-up (Goyal et al. 2017): η ramps linearly from η₀/warmup_steps to η₀ over the
  first ``warmup_epochs``, then the step decay applies.
* Batch change (paper 002's "small batch, then large" regime): the first
  ``first_phase_epochs`` run with ``first_phase_steps_per_epoch`` steps of a small batch at
  ``first_phase_learning_rate``; the epoch count continues across the switch.
* Batch-size scaling relative to a base batch B₀ (paper 002; paper 000 table 3):
  linear η = η₀ · B/B₀ (Goyal et al.), square root η = η₀ · √(B/B₀) (Hoffer et al.).
"""
from __future__ import annotations

import math

import keras

from tfwd.choices.schedules import LR_SCALINGS, LearningRateScaling


def scaled_learning_rate(
    base_learning_rate: float, batch_size: int, base_batch_size: int, rule: str
) -> float:
    """η₀ rescaled from ``base_batch_size`` to ``batch_size`` by ``rule``."""
    if rule not in LR_SCALINGS:
        raise ValueError(f"lr scaling rule must be one of {LR_SCALINGS}, got {rule!r}.")
    if batch_size <= 0 or base_batch_size <= 0:
        raise ValueError("batch sizes must be positive.")
    ratio = batch_size / base_batch_size
    if rule == LearningRateScaling.LINEAR:
        return base_learning_rate * ratio
    if rule == LearningRateScaling.SQRT:
        return base_learning_rate * math.sqrt(ratio)
    return base_learning_rate


@keras.saving.register_keras_serializable(package="tfwd")
class EpochStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """η(step) = warm-up ramp, then η₀ · decay_factor^⌊epoch / decay_every_epochs⌋.

    Args:
      base_learning_rate: η₀.
      steps_per_epoch: optimizer steps in one epoch (converts steps to epochs).
      decay_every_epochs: N in "×factor every N epochs"; 0 disables decay.
      decay_factor: the factor (0.1 in both papers).
      warmup_epochs: length of the linear warm-up; 0 disables it.
      first_phase_epochs, first_phase_steps_per_epoch, first_phase_learning_rate: the
        optional small-batch phase of the batch-change regime (0 epochs disables it).
    """

    def __init__(
        self,
        base_learning_rate: float,
        steps_per_epoch: int,
        decay_every_epochs: int = 0,
        decay_factor: float = 0.1,
        warmup_epochs: float = 0.0,
        first_phase_epochs: int = 0,
        first_phase_steps_per_epoch: int = 1,
        first_phase_learning_rate: float | None = None,
    ):
        if steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}.")
        if decay_every_epochs < 0 or warmup_epochs < 0:
            raise ValueError("decay_every_epochs and warmup_epochs must be >= 0.")
        self.base_learning_rate = float(base_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.decay_every_epochs = int(decay_every_epochs)
        self.decay_factor = float(decay_factor)
        self.warmup_epochs = float(warmup_epochs)
        if first_phase_epochs and first_phase_learning_rate is None:
            raise ValueError("first_phase_learning_rate is needed with first_phase_epochs.")
        self.first_phase_epochs = int(first_phase_epochs)
        self.first_phase_steps_per_epoch = int(first_phase_steps_per_epoch)
        self.first_phase_learning_rate = first_phase_learning_rate

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        epoch = keras.ops.floor(step / self.steps_per_epoch)
        rate = keras.ops.convert_to_tensor(self.base_learning_rate, "float32")
        if self.first_phase_epochs:
            first_steps = float(self.first_phase_epochs * self.first_phase_steps_per_epoch)
            in_first = step < first_steps
            epoch = keras.ops.where(
                in_first,
                keras.ops.floor(step / self.first_phase_steps_per_epoch),
                self.first_phase_epochs
                + keras.ops.floor((step - first_steps) / self.steps_per_epoch),
            )
            rate = keras.ops.where(in_first, float(self.first_phase_learning_rate), rate)
        if self.decay_every_epochs:
            rate = rate * keras.ops.power(
                self.decay_factor, keras.ops.floor(epoch / self.decay_every_epochs)
            )
        if self.warmup_epochs:
            warmup_steps = self.warmup_epochs * self.steps_per_epoch
            ramp = keras.ops.minimum(1.0, (step + 1.0) / warmup_steps)
            rate = rate * ramp
        return rate

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_every_epochs": self.decay_every_epochs,
            "decay_factor": self.decay_factor,
            "warmup_epochs": self.warmup_epochs,
            "first_phase_epochs": self.first_phase_epochs,
            "first_phase_steps_per_epoch": self.first_phase_steps_per_epoch,
            "first_phase_learning_rate": self.first_phase_learning_rate,
        }
