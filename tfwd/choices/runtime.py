"""Where and how a run executes: distribution strategy, training loop, numeric precision."""
from __future__ import annotations

from tfwd.choices._choice import Choice


class Strategy(Choice):
    """``tfwd.train.strategy``."""

    DEFAULT = "default"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi_worker"


class Loop(Choice):
    FIT = "fit"  # Keras Model.fit
    CUSTOM = "custom"  # strategy.run inside a tf.function


class DtypePolicy(Choice):
    """Keras dtype policies (``tfwd.train.precision``)."""

    FLOAT32 = "float32"
    FLOAT64 = "float64"
    MIXED_FLOAT16 = "mixed_float16"
    MIXED_BFLOAT16 = "mixed_bfloat16"


STRATEGIES = Strategy.values()
LOOPS = Loop.values()
DTYPE_POLICIES = DtypePolicy.values()
