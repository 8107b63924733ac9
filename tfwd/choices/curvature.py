"""Which curvature matrix the Kronecker factors estimate (``tfwd.curvature.statistics``)."""
from __future__ import annotations

from tfwd.choices._choice import Choice


class Curvature(Choice):
    FISHER = "fisher"  # targets sampled from the model (KFAC-F)
    GAUSS_NEWTON = "gauss_newton"  # identity output Hessian on the logits (KFAC-G)
    EMPIRICAL = "empirical"  # the true labels (empirical Fisher)


CURVATURES = Curvature.values()
