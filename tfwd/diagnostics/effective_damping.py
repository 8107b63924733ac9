"""Normalized-weight curvature and effective damping (paper 000 §4.3, eq. 13-14, figure 7).

For a batch-normalized layer with kernel w (docs/equations.md §7, mechanism III) the curvature with
respect to the direction ŵ = w/‖w‖ is

    C_ŵ = ‖w‖² · C_w          (C = Fisher F or Gauss-Newton G; eq. 13)

and K-FAC with Tikhonov damping λ updates ŵ approximately as
ŵ ← ŵ − η (C_ŵ + λ‖w‖² I)⁻¹ ∇_ŵ L (eq. 14), so the **effective damping** is λ‖w‖².

C_w is the layer's Kronecker block G ⊗ A_w (``tfwd.curvature``; A_w = the kernel rows of A,
without the bias coordinate). We report its **Frobenius norm** by default,
‖G ⊗ A_w‖_F = ‖G‖_F · ‖A_w‖_F, or the spectral norm ‖G‖₂ · ‖A_w‖₂ — norms of a Kronecker
product factor exactly. Curvatures: ``"fisher"`` = KFAC-F (targets sampled from the model,
one sample per example), ``"gauss_newton"`` = KFAC-G (identity output Hessian, exact over the
K outputs). Figure 7 shows the first layer: ‖F_ŵ‖ falls by ~4 orders of magnitude, ‖G_ŵ‖ ~2×.
λ is the damping of the full block; the optimizer splits it between A and G with the π
correction, so λ‖w‖² is the effective damping of the block as a whole.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfwd.choices.curvature import Curvature
from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.kfac import EXACT_GAUSS_NEWTON
from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.statistics import check_curvature, kronecker_factors
from tfwd.diagnostics.common import to_float
from tfwd.diagnostics.layers import kernel_norm, require_normalized_layers

NORMS = ("frobenius", "spectral")


def _matrix_norm(matrix: tf.Tensor, norm: str) -> tf.Tensor:
    if norm == "frobenius":
        return tf.norm(matrix)
    return tf.reduce_max(tf.abs(tf.linalg.eigvalsh(matrix)))  # symmetric PSD factors


def kronecker_norm(A: tf.Tensor, G: tf.Tensor, norm: str = "frobenius") -> float:
    """‖G ⊗ A‖ = ‖G‖·‖A‖ (Frobenius or spectral)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
    return to_float(_matrix_norm(A, norm) * _matrix_norm(G, norm))


def normalized_curvature_norms(
    model: keras.Model,
    x,
    y=None,
    *,
    curvature: str = Curvature.FISHER,
    seed: int = 0,
    norm: str = "frobenius",
) -> dict[str, float]:
    """{batch-normalized layer: ‖C_ŵ‖ = ‖w‖² · ‖G ⊗ A_w‖} on the batch ``x``.

    COST: one forward pass and 1 (Fisher) or K (Gauss-Newton) backward passes; memory: the
    Kronecker factors of every Dense/Conv2D layer.
    """
    check_curvature(curvature)
    pairs = require_normalized_layers(model, Diagnostic.EFFECTIVE_DAMPING)
    # Exact Gauss-Newton factors (K backward passes), the measurement this diagnostic reports.
    factors = kronecker_factors(model, x, y, curvature=curvature, seed=seed,
                                gauss_newton_samples=EXACT_GAUSS_NEWTON)
    norms = {}
    for name, pair in pairs.items():
        block = KroneckerBlock.for_layer(pair.linear)
        A, G = factors[name]
        kernel_rows = block.input_dim - int(block.has_bias)
        squared_weight_norm = to_float(kernel_norm(pair.linear)) ** 2
        norms[name] = squared_weight_norm * kronecker_norm(
            A[:kernel_rows, :kernel_rows], G, norm
        )
    return norms


def effective_damping(model: keras.Model, damping: float) -> dict[str, float]:
    """{batch-normalized layer: λ‖w‖²} (paper 000 eq. 14). COST: reads the weights only."""
    pairs = require_normalized_layers(model, Diagnostic.EFFECTIVE_DAMPING)
    return {name: damping * to_float(kernel_norm(pair.linear)) ** 2 for name, pair in pairs.items()}


def effective_damping_report(
    model: keras.Model, x, damping: float, *, seed: int = 0, norm: str = "frobenius"
) -> dict[str, dict[str, float]]:
    """Per batch-normalized layer: {"weight_norm": ‖w‖, "effective_damping": λ‖w‖²,
    "fisher_norm": ‖F_ŵ‖, "gauss_newton_norm": ‖G_ŵ‖} (figure 7 and eq. 14 together).

    COST: one forward pass and K + 1 backward passes (both curvatures).
    """
    fisher = normalized_curvature_norms(model, x, curvature=Curvature.FISHER, seed=seed,
                                        norm=norm)
    gauss_newton = normalized_curvature_norms(model, x, curvature=Curvature.GAUSS_NEWTON,
                                              norm=norm)
    dampings = effective_damping(model, damping)
    pairs = require_normalized_layers(model, Diagnostic.EFFECTIVE_DAMPING)
    return {
        name: {
            "weight_norm": to_float(kernel_norm(pair.linear)),
            "effective_damping": dampings[name],
            "fisher_norm": fisher[name],
            "gauss_newton_norm": gauss_newton[name],
        }
        for name, pair in pairs.items()
    }
