"""Gauss-Newton norms of the parameters (paper 000 §4.2, lemmas 1-2, theorem 1, figure 5).

G is the Gauss-Newton matrix of the **identity output Hessian** (squared error ½‖z − t‖² on
the logits; KFAC-G of docs/equations.md §4.2, half the authors' variance-0.5 convention):

    G = E_x[ J_θ(x)ᵀ J_θ(x) ],      ‖θ‖²_G = θᵀ G θ = E_x ‖J_θ(x) θ‖²

with J_θ(x) = ∂f(x)/∂θ the [K, |θ|] parameter-output Jacobian. J_θ θ is a forward-mode
(Jacobian-vector) product with tangent θ itself. Lemma 1: for a bias-free ReLU network with
n weight layers, J_θ θ = n·f(x) and f(x) = J_x x.

The **K-FAC GN norm** replaces G by its Kronecker-factored block diagonal (``tfwd.curvature``):

    ‖θ‖²_{G_KFAC} = Σ_layers vec(W̃)ᵀ (G_l ⊗ A_l) vec(W̃) = Σ_layers tr(W̃ᵀ A_l W̃ G_l)

with W̃ = [W; b] in ``KroneckerBlock.to_matrix`` layout. Lemma 2: for a bias-free linear network
it equals n·E_x‖f(x)‖²; theorem 1: with whitened inputs (E[x] = 0, E[xxᵀ] = I) it equals
n·‖J_x‖²_F. Only Dense/Conv2D layers enter (batch norm's γ/β have no Kronecker block).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfwd.choices.curvature import Curvature
from tfwd.choices.kfac import EXACT_GAUSS_NEWTON
from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.capture import split_layers
from tfwd.curvature.statistics import kronecker_factors
from tfwd.diagnostics.common import logits, primals, to_float


def parameter_output_jvp(model: keras.Model, x, tangents=None) -> tf.Tensor:
    """J_θ(x)·t for every example, shape [B, K]; t defaults to θ itself.

    ``tangents``: parameter vector shaped like ``model.trainable_variables``.
    COST: one forward pass with forward-mode tangents (about 2-3 forward passes).
    """
    variables = primals(model.trainable_variables)
    if tangents is None:
        tangents = [tf.identity(v) for v in variables]
    with tf.autodiff.ForwardAccumulator(variables, list(tangents)) as accumulator:
        z = logits(model, x)
    jvp = accumulator.jvp(z)
    if jvp is None:  # logits independent of θ
        jvp = tf.zeros_like(z)
    return jvp


def gauss_newton_norm(model: keras.Model, x) -> float:
    """θᵀGθ = 1/B Σ_i ‖J_θ(x_i) θ‖² over the batch ``x``, θ = all trainable variables.

    Paper 000 eq. for ‖θ‖²_G (§4.2). COST: one forward-mode pass over the batch.
    """
    jvp = parameter_output_jvp(model, x)
    return to_float(tf.reduce_mean(tf.reduce_sum(tf.square(jvp), axis=-1)))


def kfac_gauss_newton_norms(model: keras.Model, x) -> dict:
    """{"total": Σ_l tr(W̃ᵀ A_l W̃ G_l), "layers": {layer: tr(W̃ᵀ A_l W̃ G_l)}} on batch ``x``.

    Factors from ``kronecker_factors(curvature="gauss_newton", gauss_newton_samples=None)``
    (exact identity-Hessian G, inference mode). Paper 000 lemma 2 / figure 5.
    COST: one forward pass and K backward passes (K = number of logits); memory: the factors.
    """
    factors = kronecker_factors(model, x, curvature=Curvature.GAUSS_NEWTON,
                                gauss_newton_samples=EXACT_GAUSS_NEWTON)
    layers, _ = split_layers(model)
    per_layer = {}
    for layer in layers:
        block = KroneckerBlock.for_layer(layer)
        A, G = factors[layer.name]
        weights = block.to_matrix(layer.kernel, layer.bias if block.has_bias else None)
        weights = tf.cast(weights, A.dtype)
        # tr(W̃ᵀ A W̃ G) = Σ_ij (A W̃)_ij (W̃ G)_ij for symmetric A, G.
        per_layer[layer.name] = to_float(
            tf.reduce_sum(tf.matmul(A, weights) * tf.matmul(weights, G))
        )
    return {"total": sum(per_layer.values()), "layers": per_layer}
