"""The curvature noise added to large-batch gradients (``tfwd.noise``, paper 002), and its defaults.

Not the noise of the convex quadratic study, a different concept: ``tfwd.choices.quadratic``.
"""
from __future__ import annotations

from tfwd.choices._choice import Choice


class NoiseKind(Choice):
    """The order is part of the results: a kind's index seeds its noise stream
    (``tfwd.noise.consumer``), so a new kind goes last."""

    NONE = "none"
    DIAG_FISHER = "diag_fisher"
    FULL_FISHER = "full_fisher"
    TRACE = "trace"
    KFAC = "kfac"
    MULTIPLICATIVE = "multiplicative"


NOISE_KINDS = NoiseKind.values()
ADDED_NOISE_KINDS = tuple(kind for kind in NOISE_KINDS if kind != NoiseKind.NONE)

NOISE_UNTIL_EPOCH = 50  # paper 002 §4.3 stops the noise after epoch 50
SMALL_BATCH_SIZE = 128  # M_S, the small batch the noise imitates: paper 002's 128
LARGE_BATCH_SIZE = 4096  # M_L, the large batch it is added to: paper 002's 4096
# σ_m of "multiplicative" noise g ⊙ (1 + σ_m ξ): N(0, 0.1²), paper 002 table 2's Multiplicative
# regime as tfwd.experiments.paper002.tables describes it. None instead ties σ_m to s, the
# scale of the other kinds (tfwd.noise.CurvatureNoise).
MULTIPLICATIVE_STD = 0.1
