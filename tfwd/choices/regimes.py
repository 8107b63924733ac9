"""Paper 002's training regimes by name (``tfwd.experiments.paper002.regimes`` says how each
trains; ``tfwd.experiments.published`` holds the paper's numbers for them)."""
from __future__ import annotations

from tfwd.choices._choice import Choice


class RegimeName(Choice):
    SB = "sb"  # small batch M_S
    LB_GBN = "lb_gbn"  # large batch M_L with ghost batch norm
    TRACE = "trace"  # LB+GBN plus trace (isotropic) noise
    DIAG_F = "diag_f"  # LB+GBN plus diagonal Fisher noise (the paper's method)
    KFAC = "kfac"  # LB+GBN plus K-FAC noise
    MULTIPLICATIVE = "multiplicative"  # LB+GBN plus multiplicative noise
    BATCH_CHANGE = "batch_change"  # small batch first, then large
    # Figure 3 (a-c): the large batch at the small batch's learning rate, no ghost batch norm.
    LB = "lb"
    FULL_F = "full_f"
    DIAG_F_PLAIN = "diag_f_plain"
    KFAC_PLAIN = "kfac_plain"


REGIME_NAMES = RegimeName.values()
