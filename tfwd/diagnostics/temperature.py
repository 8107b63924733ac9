"""Softmax temperature calibration on held-out data (paper 002 §4.2, figure 3d; Guo et al. 2017).

    T* = argmin_T NLL(T),   NLL(T) = 1/N Σ_i [ logsumexp_k(z_ik / T) − z_{i,y_i} / T ]

on held-out logits z. In β = 1/T, NLL is convex (log-sum-exp of an affine function of β minus
an affine function), with derivative

    NLL'(β) = 1/N Σ_i ( Σ_k p_ik(β) z_ik − z_{i,y_i} ),    p_i(β) = softmax(β z_i)

which is non-decreasing. We bisect on its sign in log β over β ∈ [1/T_max, 1/T_min]
(``bounds`` = (T_min, T_max)), to machine precision; if the minimum lies outside the bracket
(e.g. every held-out example already classified with certainty, so NLL decreases without
bound in β), the nearest bound is returned.
"""
from __future__ import annotations

import numpy as np


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _labels(labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] == num_classes > 1:
        return labels.argmax(-1)
    return labels.reshape(-1).astype(np.int64)


def temperature_nll(logits, labels, temperature: float) -> float:
    """NLL(T) of held-out logits [N, K] and labels (integer or one-hot)."""
    z = np.asarray(logits, np.float64)
    y = _labels(labels, z.shape[-1])
    return float(-np.mean(_log_softmax(z / temperature)[np.arange(len(y)), y]))


def temperature_nll_derivative(logits, labels, inverse_temperature: float) -> float:
    """dNLL/dβ at β = 1/T (module docstring)."""
    z = np.asarray(logits, np.float64)
    y = _labels(labels, z.shape[-1])
    p = np.exp(_log_softmax(inverse_temperature * z))
    return float(np.mean((p * z).sum(-1) - z[np.arange(len(y)), y]))


def fit_temperature(
    logits, labels, bounds: tuple[float, float] = (1e-2, 1e2), iterations: int = 200
) -> float:
    """T* minimizing the held-out NLL (module docstring). COST: O(iterations·N·K) in numpy."""
    low, high = np.log(1.0 / bounds[1]), np.log(1.0 / bounds[0])  # log β bracket
    if temperature_nll_derivative(logits, labels, np.exp(low)) >= 0:
        return float(bounds[1])
    if temperature_nll_derivative(logits, labels, np.exp(high)) <= 0:
        return float(bounds[0])
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if temperature_nll_derivative(logits, labels, np.exp(middle)) < 0:
            low = middle
        else:
            high = middle
    return float(np.exp(-0.5 * (low + high)))
