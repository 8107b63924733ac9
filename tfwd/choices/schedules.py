"""How the base learning rate is rescaled with the batch size (``tfwd.optimizers.schedules``)."""
from __future__ import annotations

from tfwd.choices._choice import Choice


class LearningRateScaling(Choice):
    NONE = "none"
    LINEAR = "linear"  # η = η₀·B/B₀ (Goyal et al.)
    SQRT = "sqrt"  # η = η₀·√(B/B₀) (Hoffer et al. 2017)


LR_SCALINGS = LearningRateScaling.values()
