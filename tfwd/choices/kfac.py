"""K-FAC's options and their defaults (``tfwd.optimizers.KFAC``, docs/equations.md §4).

Each default is spelled here only; ``KFAC``, ``TrainConfig``, the launchers and the benchmark
refer to it. The periods and the damping are the authors' (paper 000 appendix A).
"""
from __future__ import annotations

import numbers

from tfwd.choices._choice import Choice
from tfwd.choices.curvature import Curvature
from tfwd.choices.optimizers import Optimizer


class InverseMethod(Choice):
    """How the damped factors are inverted (``tfwd.curvature.inverse``)."""

    CHOLESKY = "cholesky"
    EIGH = "eigh"


class LowRankMode(Choice):
    """Whether Dense gradients are preconditioned through their factors
    (``tfwd.curvature.low_rank``)."""

    AUTO = "auto"
    NEVER = "never"
    ALWAYS = "always"


class WeightSharing(Choice):
    """K-FAC for layers applied at several positions (Eschenhagen et al., NeurIPS 2023, §3)."""

    EXPAND = "expand"
    REDUCE = "reduce"


class ScaleShift(Choice):
    """The curvature block of normalization γ/β (``tfwd.curvature.scale_shift``)."""

    PER_CHANNEL = "per_channel"
    DIAGONAL = "diagonal"


INVERSE_METHODS = InverseMethod.values()
LOW_RANK_MODES = LowRankMode.values()

# KFAC-G: the variant README's main job and the small-scale entries train (paper 000 fig. 5,
# table 2 compare SGD with it).
CURVATURE = Curvature.GAUSS_NEWTON
DAMPING = 1e-3  # λ, the authors' value (paper 000 appendix A)
COV_DECAY = 0.95  # moving-average decay of the factors, the authors' value
COV_EVERY = 10  # statistics every 10 steps, the authors' value
INV_EVERY = 100  # damped inverses every 100 steps, the authors' value
# Off: the authors clip only networks without batch norm, so no one value fits every run.
KL_CLIP = None
# The authors' KL clipping bound of networks without batch norm (docs/equations.md §9).
AUTHORS_KL_CLIP = {Optimizer.KFAC_G: 1e-4, Optimizer.KFAC_F: 1e-5}
# One Rademacher vector u per example and statistics step: unbiased (E[uuᵀ] = I) at one
# backward pass instead of K (one per class).
GAUSS_NEWTON_SAMPLES = 1
# gauss_newton_samples meaning the exact Gauss-Newton factors: all K one-hot vectors u = e_k.
EXACT_GAUSS_NEWTON = None
# Cholesky: the same inverse as eigh up to round-off at a fraction of its CPU time (issue 12,
# BENCHMARKS.md: VGG11's 4608 × 4608 input factors).
INVERSE = InverseMethod.CHOLESKY
# The cheaper route by FLOP count; both give the same direction up to round-off.
LOW_RANK = LowRankMode.AUTO
# Each replica inverts a share of the blocks (docs/equations.md §4.8): the same inverses, bitwise,
# for 1/R of the inverse work per replica.
SHARD_INVERSES = True
# K-FAC-expand (Eschenhagen et al. 2023, eq. 8): each position counts as an example, which needs
# no assumption about how the inputs vary over positions.
WEIGHT_SHARING = WeightSharing.EXPAND
# The full 2×2 curvature of (γ_c, β_c) per channel: no approximation beyond the block.
SCALE_SHIFT = ScaleShift.PER_CHANNEL


def check_gauss_newton_samples(samples) -> None:
    """Raise ValueError unless ``samples`` is an integer >= 1 or ``EXACT_GAUSS_NEWTON``."""
    if samples is EXACT_GAUSS_NEWTON:
        return
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
        raise ValueError(f"gauss_newton_samples must be an integer >= 1 (Rademacher vectors per "
                         f"statistics step), or None for the exact Gauss-Newton factors "
                         f"(--gauss_newton_samples=0 on the command line); got {samples!r}.")
