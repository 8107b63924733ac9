"""Curvature noise for large-batch training (paper 002) and its convex quadratic study.

``make_noise(kind, model, ...)`` builds the training-step consumer (``tfwd.noise.consumer``);
one module per kind (``diag_fisher``, ``full_fisher``, ``trace``, ``kfac``,
``multiplicative``); ``quadratic`` is the §3.2 study (its figures:
``tfwd.experiments.paper002.quadratic``).
"""
from tfwd.noise.consumer import KINDS, CurvatureNoise, make_noise
from tfwd.noise.quadratic import (
    expected_loss_exact,
    run_quadratic_study,
    sample_trajectories,
)
from tfwd.noise.scale import noise_scale

__all__ = [
    "KINDS",
    "CurvatureNoise",
    "expected_loss_exact",
    "make_noise",
    "noise_scale",
    "run_quadratic_study",
    "sample_trajectories",
]
