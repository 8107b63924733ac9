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

Neither the direction nor KL clipping's ⟨∇W̃, P⟩ (``tfwd.curvature.inverse.kl_clip_scale``)
needs the dense ∇W̃ = ÃᵀĜ, whose product costs 2N·d_in·d_out FLOPs (a third of the MLP's
backward pass). With left = A_λ⁻¹Ãᵀ [d_in, N] and right = ĜG_λ⁻¹ [N, d_out] (P = left·right),
by tr(XY) = tr(YX):

    ⟨ÃᵀĜ, left·right⟩ = tr(ĜᵀÃ·left·right) = tr((Ã·left)(right·Ĝᵀ))
                      = Σ_ij (Ã·left)_ij (Ĝ·rightᵀ)_ij

from two N × N matrices, 2N²·(d_in + d_out) FLOPs (``gradient_inner_product``). So a layer on
the low-rank route never forms ∇W̃ and the graph drops the tape's kernel-gradient product.
The cost model (``precondition_flops``) compares the preconditioning products only, without
the dense route's ∇W̃ or the low-rank route's N × N products (at the MLP's B = 128 these
favour the low-rank route further: 0.46 against 0.12 GFLOP).

``tfwd.choices.kfac.LOW_RANK_MODES``: "auto" takes the cheaper route by the FLOP counts (with an L2 term the
low-rank route costs the dense one and more, so "auto" keeps it dense), "always" the
low-rank one, "never" the dense one.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfwd.choices.kfac import LowRankMode


def check_low_rank_mode(mode: str) -> None:
    LowRankMode.check(mode, "low_rank")


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


@dataclasses.dataclass
class FactoredDirection:
    """P = A_λ⁻¹ ∇W̃ G_λ⁻¹ = left · right (module docstring)."""

    left: tf.Tensor  # A_λ⁻¹ Ãᵀ, [d_in, N]
    right: tf.Tensor  # Ĝ G_λ⁻¹, [N, d_out]

    def matrix(self) -> tf.Tensor:
        """P as a [d_in, d_out] matrix."""
        return tf.matmul(self.left, self.right)


@dataclasses.dataclass
class LowRankDirection:
    """A block's P from its gradient factors, with ⟨g̃, P⟩ (KL clipping's term). Without an
    L2 term P stays in its two halves, so that the clipped ν·P = (ν·left)·right is formed
    in the one product that forms P; with one, P = P_F + P_γ is a formed matrix."""

    inner_product: tf.Tensor
    halves: FactoredDirection | None = None
    matrix: tf.Tensor | None = None


def factored_direction(factors: GradientFactors, A_inverse: tf.Tensor,
                       G_inverse: tf.Tensor) -> FactoredDirection:
    """The two halves (A_λ⁻¹ Ãᵀ) and (Ĝ G_λ⁻¹) of A_λ⁻¹ ∇W̃ G_λ⁻¹."""
    return FactoredDirection(tf.matmul(A_inverse, factors.inputs, transpose_b=True),
                             tf.matmul(factors.output_gradients, G_inverse))


def gradient_inner_product(factors: GradientFactors, direction: FactoredDirection) -> tf.Tensor:
    """⟨ÃᵀĜ, left·right⟩ = Σ_ij (Ã·left)_ij (Ĝ·rightᵀ)_ij without forming ÃᵀĜ (module
    docstring): two N × N products."""
    inputs_side = tf.matmul(factors.inputs, direction.left)  # [N, N]
    outputs_side = tf.matmul(factors.output_gradients, direction.right, transpose_b=True)
    return tf.reduce_sum(inputs_side * outputs_side)


def gradient_matrix(factors: GradientFactors) -> tf.Tensor:
    """∇W̃ = ÃᵀĜ as a [d_in, d_out] matrix."""
    return tf.matmul(factors.inputs, factors.output_gradients, transpose_a=True)
