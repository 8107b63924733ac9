"""Input-output Jacobian norm (paper 000 §4.2, figure 5 and table 2; Novak et al. 2018).

J_x = ∂f(x)/∂x is the [K, D] Jacobian of the logits with respect to the (flattened) input of
one example. **What we report**: the root-mean-square Frobenius norm

    jacobian_norm = sqrt( E_x ‖J_x‖²_F )          (E_x = mean over the given batch)

in both the exact and the estimated mode, together with the mean squared norm E_x‖J_x‖²_F
and the standard error of its estimate. We use the squared norm because it has an unbiased
random-projection estimator, and because it is the quantity of Theorem 1 (K-FAC GN norm =
n·‖J_x‖²_F for whitened linear networks). By Jensen, sqrt(E‖J‖²_F) ≥ E‖J‖_F (the paper's
"E_x‖J_x‖_F"), with equality when ‖J_x‖_F is the same for every x (e.g. linear networks).

* Exact (small inputs): ``tape.batch_jacobian`` gives every J_x.
* Estimate (large inputs): ‖J_x‖²_F = tr(J_x J_xᵀ) = E_v ‖J_xᵀ v‖² for v over the K outputs with
  E[vvᵀ] = I — Rademacher (default; lower variance, 2(‖JJᵀ‖²_F − Σ_k (JJᵀ)²_kk) per draw) or
  standard normal (variance 2‖JJᵀ‖²_F). J_xᵀv is one vector-Jacobian product, i.e. one backward
  pass for the whole batch with an independent v per example.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tfwd.diagnostics.common import logits, rademacher, stateless_seed, to_float

PROJECTIONS = ("rademacher", "normal")


@dataclasses.dataclass(frozen=True)
class JacobianNorm:
    """E_x‖J_x‖²_F over a batch, and the standard error of that number.

    ``standard_error`` is the Monte-Carlo error of the random projections with respect to the
    exact value on the same batch (0 when computed exactly); it does not include the
    sampling of the batch from the data distribution.
    """

    mean_squared: float
    standard_error: float

    @property
    def root_mean_squared(self) -> float:
        return max(self.mean_squared, 0.0) ** 0.5

    def as_dict(self) -> dict[str, float]:
        return {
            "jacobian_norm": self.root_mean_squared,
            "mean_squared": self.mean_squared,
            "standard_error": self.standard_error,
        }


def input_jacobians(model: keras.Model, x) -> tf.Tensor:
    """J_x for every example: [B, K, D] with D the flattened input size (``batch_jacobian``).

    COST: one forward pass, K backward passes (vectorized); memory B·K·D.
    """
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = logits(model, x)
    jacobian = tape.batch_jacobian(z, x)
    return tf.reshape(jacobian, [x.shape[0], z.shape[-1], -1])


def jacobian_squared_norms(model: keras.Model, x) -> tf.Tensor:
    """‖J_x‖²_F per example, exactly, shape [B]. COST: as ``input_jacobians``."""
    return tf.reduce_sum(tf.square(input_jacobians(model, x)), axis=[1, 2])


def projected_jacobian_squared_norms(
    model: keras.Model, x, num_projections: int, seed: int = 0, projection: str = "rademacher"
) -> tf.Tensor:
    """‖J_xᵀ v_s‖² for S = ``num_projections`` independent v_s per example: shape [S, B].

    Each entry is an unbiased estimate of ‖J_x‖²_F. COST: one forward pass and S backward
    passes over the batch (persistent tape); memory: the activations of one batch.
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}.")
    if num_projections < 1:
        raise ValueError(f"num_projections must be >= 1, got {num_projections}.")
    x = tf.convert_to_tensor(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z = logits(model, x)
    squared = []
    for sample in range(num_projections):
        sample_seed = stateless_seed(seed, sample + 1)
        if projection == "rademacher":
            v = rademacher(tf.shape(z), sample_seed, z.dtype)
        else:
            v = tf.random.stateless_normal(tf.shape(z), seed=sample_seed, dtype=z.dtype)
        vjp = tape.gradient(z, x, output_gradients=v)
        squared.append(tf.reduce_sum(tf.reshape(tf.square(vjp), [x.shape[0], -1]), axis=1))
    del tape
    return tf.stack(squared)


def jacobian_norm(
    model: keras.Model,
    x,
    num_projections: int | None = None,
    seed: int = 0,
    projection: str = "rademacher",
) -> JacobianNorm:
    """E_x‖J_x‖²_F over the batch ``x``: exact if ``num_projections`` is None, else estimated.

    Estimate: Q̂ = 1/B Σ_i q̂_i with q̂_i the mean of S projections of example i; its standard
    error is sqrt(Σ_i s²_i / S) / B with s²_i the sample variance of example i's projections
    (needs S ≥ 2). Paper 000 figure 5 / table 2. COST: see ``jacobian_squared_norms`` (exact)
    and ``projected_jacobian_squared_norms`` (estimate).
    """
    if num_projections is None:
        return JacobianNorm(to_float(tf.reduce_mean(jacobian_squared_norms(model, x))), 0.0)
    if num_projections < 2:
        raise ValueError("A standard error needs num_projections >= 2.")
    samples = projected_jacobian_squared_norms(model, x, num_projections, seed, projection)
    per_example = tf.reduce_mean(samples, axis=0)
    variances = tf.math.reduce_variance(samples, axis=0) * num_projections / (num_projections - 1)
    batch = tf.cast(tf.shape(samples)[1], samples.dtype)
    error = tf.sqrt(tf.reduce_sum(variances) / num_projections) / batch
    return JacobianNorm(to_float(tf.reduce_mean(per_example)), to_float(error))
