"""The noise scale s = √((M_L − M_S)/(M_L·M_S)) of paper 002 (eq. 5, Algorithm 1).

Small-batch gradients ∇L_{M_S} differ from large-batch gradients ∇L_{M_L} by noise whose
covariance is approximately (1/M_S − 1/M_L)·F = (M_L − M_S)/(M_L·M_S)·F (paper 002 §2.2,
docs/equations.md §5), F the empirical Fisher. Every additive curvature noise of ``tfwd.noise`` is
s·D·ξ with D·Dᵀ ≈ F, so that the noisy large-batch step has the small-batch noise level.
"""
from __future__ import annotations

import math
import numbers


def check_batch_sizes(large_batch_size: int, small_batch_size: int) -> None:
    """Raise ValueError unless 1 ≤ M_S ≤ M_L are integers."""
    for name, value in (("large_batch_size", large_batch_size), ("small_batch_size", small_batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if small_batch_size > large_batch_size:
        raise ValueError(
            f"small_batch_size M_S={small_batch_size} exceeds large_batch_size "
            f"M_L={large_batch_size}: curvature noise emulates a *smaller* batch; "
            "pass M_S ≤ M_L (M_S = M_L gives no noise)."
        )


def noise_scale(large_batch_size: int, small_batch_size: int) -> float:
    """s = √((M_L − M_S)/(M_L·M_S)); 0 when M_L = M_S."""
    check_batch_sizes(large_batch_size, small_batch_size)
    return math.sqrt((large_batch_size - small_batch_size) / (large_batch_size * small_batch_size))
