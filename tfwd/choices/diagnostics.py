"""The diagnostics a run can record (``tfwd.diagnostics.registry``), by name.

A name is also the key of its history in results.json. The order is part of the results: a
diagnostic's index seeds its random stream (``tfwd.diagnostics.registry.stream_seed``), so a
new one goes last.
"""
from __future__ import annotations

from tfwd.choices._choice import Choice


class Diagnostic(Choice):
    EFFECTIVE_LR = "effective_lr"
    WEIGHT_NORMS = "weight_norms"
    JACOBIAN_NORM = "jacobian_norm"
    GAUSS_NEWTON_NORM = "gauss_newton_norm"
    KFAC_GAUSS_NEWTON_NORM = "kfac_gauss_newton_norm"
    GENERALIZATION_GAP = "generalization_gap"
    FISHER_NORMS = "fisher_norms"
    EFFECTIVE_DAMPING = "effective_damping"
    GRADIENT_VARIANCE = "gradient_variance"
    HESSIAN_EIGENVALUE = "hessian_eigenvalue"


DIAGNOSTIC_NAMES = Diagnostic.values()
# Training (and held-out) examples the diagnostics measure on: chosen here (the papers state no
# sample size), the same fixed sample every epoch.
SAMPLE_SIZE = 256
