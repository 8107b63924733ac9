"""Weight decay: its form and the layers it applies to (``tfwd.optimizers.decay``)."""
from __future__ import annotations

from tfwd.choices._choice import Choice


class DecayType(Choice):
    DECOUPLED = "decoupled"  # θ ← θ − η·(step(∇L) + γθ)
    L2 = "l2"  # θ ← θ − η·step(∇L + γθ)


class DecayGroup(Choice):
    ALL = "all"
    TOP = "top"  # only the output layer
    REST = "rest"  # every layer but the output layer


DECAY_TYPES = DecayType.values()
DECAY_GROUPS = DecayGroup.values()

WEIGHT_DECAY = 0.0  # γ: no decay unless asked for
DECAY_TYPE = DecayType.DECOUPLED  # the form the package is about (Loshchilov & Hutter)
DECAY_GROUP = DecayGroup.ALL  # every layer, as the papers' "wd" unless a figure says otherwise
