"""Low-rank preconditioning of a Dense layer's gradient through its per-example factors.

A Dense layer s_bt = W̃ᵀ ã_bt (T positions per example, T = 1 on [B, d] inputs; bias as the
last row of W̃ = [W; b], ã = [a, 1]) trained on the mean loss L = 1/B Σ_b ℓ_b has the
gradient

    ∇W̃ = 1/B Σ_{b,t} ã_bt g_btᵀ = Ãᵀ Ĝ,    Ã = [N, d_in] rows ã_bt,  Ĝ = [N, d_out] rows g_bt / B,

with g_bt = ∂ℓ_b/∂s_bt and N = B·T: its rank is at most N. The K-FAC direction of the block
(``tfwd.curvature.inverse``) is then, exactly (associativity of the matrix product),

    A_λ⁻¹ ∇W̃ G_λ⁻¹ = (A_λ⁻¹ Ãᵀ) (Ĝ G_λ⁻¹)

at 2N·(d_in² + d_out² + d_in·d_out) FLOPs instead of 2·d_in·d_out·(d_in + d_out) for the dense
product (``precondition_flops``): about 5× fewer for the 784-1000-1000-10 MLP's hidden layers
at B = 128, more for larger layers, none for thin ones (a 1001 × 10 output layer). The
factors are the ones the training step already holds (``tfwd.curvature.step``: layer inputs
and per-example pre-activation gradients read off its backward pass), so nothing else is
computed. An L2 decay term γW̃ in the gradient (decay_type="l2") is not of this form; it is
preconditioned separately, densely: A_λ⁻¹(Ãᵀ Ĝ + γW̃)G_λ⁻¹ = (A_λ⁻¹Ãᵀ)(ĜG_λ⁻¹) + γA_λ⁻¹W̃G_λ⁻¹.

``LOW_RANK_MODES``: "auto" takes the cheaper route by the FLOP counts (with an L2 term the
low-rank route costs the dense one and more, so "auto" keeps it dense), "always" the
low-rank one, "never" the dense one.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfwd.choices.kfac import LOW_RANK_MODES, LowRankMode


def check_low_rank_mode(mode: str) -> None:
    if mode not in LOW_RANK_MODES:
        raise ValueError(f"low_rank must be one of {LOW_RANK_MODES}, got {mode!r}.")


@dataclasses.dataclass
class GradientFactors:
    """∇W̃ = inputsᵀ · output_gradients (module docstring: Ã and Ĝ)."""

    inputs: tf.Tensor  # [N, d_in]
    output_gradients: tf.Tensor  # [N, d_out], already divided by the batch size B


def precondition_flops(rows, input_dim: int, output_dim: int) -> dict:
    """FLOPs of A_λ⁻¹ ∇W̃ G_λ⁻¹ by each route, for ``rows`` = N (an int or a scalar tensor)."""
    return {"dense": 2 * input_dim * output_dim * (input_dim + output_dim),
            "low_rank": 2 * rows * (input_dim**2 + output_dim**2 + input_dim * output_dim)}


def prefers_low_rank(mode: str, factors: GradientFactors, has_l2_term: bool):
    """Whether to take the low-rank route: a Python bool, or a boolean tensor when "auto"
    meets a batch size only known when the step runs."""
    if mode != LowRankMode.AUTO:
        return mode == LowRankMode.ALWAYS
    if has_l2_term:
        return False
    input_dim, output_dim = factors.inputs.shape[-1], factors.output_gradients.shape[-1]
    rows = factors.inputs.shape[0]
    if rows is None:
        rows = tf.shape(factors.inputs, out_type=tf.int64)[0]
    flops = precondition_flops(rows, input_dim, output_dim)
    return flops["low_rank"] < flops["dense"]


def precondition_factored(factors: GradientFactors, A_inverse: tf.Tensor,
                          G_inverse: tf.Tensor) -> tf.Tensor:
    """(A_λ⁻¹ Ãᵀ)(Ĝ G_λ⁻¹) = A_λ⁻¹ ∇W̃ G_λ⁻¹ as a [d_in, d_out] matrix."""
    left = tf.matmul(A_inverse, factors.inputs, transpose_b=True)  # [d_in, N]
    right = tf.matmul(factors.output_gradients, G_inverse)  # [N, d_out]
    return tf.matmul(left, right)
