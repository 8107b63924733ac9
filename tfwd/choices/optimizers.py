"""The optimizers a run can train with, and what K-FAC's two variants mean.

``kfac_g`` and ``kfac_f`` are one optimizer, ``tfwd.optimizers.KFAC``, with two curvatures
(paper 000 §3, docs/equations.md §4): KFAC-G the Gauss-Newton matrix, KFAC-F the Fisher.
"""
from __future__ import annotations

from tfwd.choices._choice import Choice
from tfwd.choices.curvature import Curvature


class Optimizer(Choice):
    SGD = "sgd"
    ADAM = "adam"
    KFAC_G = "kfac_g"  # K-FAC, Gauss-Newton curvature
    KFAC_F = "kfac_f"  # K-FAC, Fisher curvature


OPTIMIZERS = Optimizer.values()
KFAC_CURVATURES = {Optimizer.KFAC_G: Curvature.GAUSS_NEWTON, Optimizer.KFAC_F: Curvature.FISHER}
KFAC_OPTIMIZERS = tuple(KFAC_CURVATURES)
# How the papers' tables and our plots name them.
DISPLAY_NAMES = {Optimizer.SGD: "SGD", Optimizer.ADAM: "Adam", Optimizer.KFAC_F: "KFAC-F",
                 Optimizer.KFAC_G: "KFAC-G"}

# Momentum μ of SGD and K-FAC: the authors' K-FAC value (paper 000 appendix A), which the
# entries use for SGD too.
MOMENTUM = 0.9


def is_kfac(optimizer: str) -> bool:
    """Whether ``optimizer`` (a name of ``OPTIMIZERS``) is one of K-FAC's variants."""
    return optimizer in KFAC_CURVATURES


def kfac_curvature(optimizer: str) -> Curvature:
    """The curvature K-FAC preconditions with for ``kfac_g`` / ``kfac_f``."""
    if not is_kfac(optimizer):
        raise ValueError(f"optimizer {optimizer!r} is not K-FAC; K-FAC's are {KFAC_OPTIMIZERS}.")
    return KFAC_CURVATURES[optimizer]
