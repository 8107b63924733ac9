"""The noise matrices of the convex quadratic study (``tfwd.noise.quadratic``, paper 002 §3.2).

A concept of its own: these name a constant noise matrix C on L(θ) = ½θᵀAθ, not the curvature
noise a training run adds (``tfwd.choices.noise``), even where a name looks alike.
"""
from __future__ import annotations

from tfwd.choices._choice import Choice


class QuadraticNoise(Choice):
    FISHER = "fisher"  # C = s·√A
    DIAGONAL = "diagonal"  # C = s·√diag(A)
    ISOTROPIC = "isotropic"  # C = s·c·I, the same total variance
    NONE = "none"  # C = 0


QUADRATIC_NOISE_KINDS = QuadraticNoise.values()
