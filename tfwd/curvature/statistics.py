"""Per-layer Kronecker statistics (A, G) from one captured forward pass.

The output-side vectors g of a block's ``output_statistics`` (``tfwd.curvature.block``) are back-propagated from the
logits z with a vector u per example, g = J_sᵀ u (J_s = ∂z/∂s), so that E[ggᵀ] = J_sᵀ E[uuᵀ] J_s
is the curvature we want (the model must output logits of a softmax cross-entropy):

* ``"fisher"`` (KFAC-F, paper 000 §3): u = softmax(z) − onehot(ŷ), ŷ ~ softmax(z) sampled
  from the model's predictive distribution — the true Fisher; E[uuᵀ] = diag(p) − ppᵀ.
* ``"gauss_newton"`` (KFAC-G): identity output Hessian, E[uuᵀ] = I, i.e. the Gauss-Newton
  matrix of ½‖z − t‖² on the logits. With ``gauss_newton_samples=None`` the K one-hot
  vectors u = e_k are used (exact over all outputs, K backward passes); with an integer S, S
  Rademacher vectors (unbiased, unit covariance), averaged. Convention note: the authors'
  code registered a normal predictive distribution of variance 0.5 on the logits, so their G
  is 2× ours; multiply ``damping`` by ½ to match their damping-to-curvature ratio.
* ``"empirical"``: u = softmax(z) − onehot(y) with the true labels y (empirical Fisher).
"""
from __future__ import annotations

import tensorflow as tf

from tfwd.choices import kfac as defaults
from tfwd.choices.curvature import Curvature
from tfwd.curvature.capture import LayerCapture, split_layers
from tfwd.curvature.registry import block_for


def check_curvature(curvature: str) -> None:
    Curvature.check(curvature, "curvature")


def _example_uniforms(shape_of_rows, seed, example_offset, total_examples):
    """Uniforms for rows [offset, offset + B) of a [total, K] stateless draw.

    Each example's random numbers depend only on its position in the *global* batch, so a
    replica holding rows offset..offset+B−1 draws exactly what one replica with the whole
    batch draws for them: 1 and N replicas sample the same curvature.
    """
    rows, columns = shape_of_rows[0], shape_of_rows[1]
    total = rows if total_examples is None else total_examples
    draws = tf.random.stateless_uniform(tf.stack([total, columns]), seed=seed)
    return draws[example_offset:example_offset + rows]


def output_vectors(logits, labels, curvature: str, seed,
                   gauss_newton_samples=defaults.GAUSS_NEWTON_SAMPLES, example_offset=0,
                   total_examples=None):
    """The list of (u [B, K], weight) whose weighted Σ E[uuᵀ] is the output curvature.

    ``seed`` is a stateless-random seed (shape [2] int tensor) for the sampled kinds;
    ``example_offset``/``total_examples`` place this batch inside a global batch split over
    replicas (see ``_example_uniforms``).
    """
    check_curvature(curvature)
    logits = tf.convert_to_tensor(logits)
    num_classes = logits.shape[-1]
    shape = tf.shape(logits)
    if curvature == Curvature.GAUSS_NEWTON:
        if gauss_newton_samples is defaults.EXACT_GAUSS_NEWTON:
            batch = tf.shape(logits)[0]
            return [
                (tf.tile(tf.one_hot([k], num_classes, dtype=logits.dtype), [batch, 1]), 1.0)
                for k in range(num_classes)
            ]
        vectors = []
        for sample in range(gauss_newton_samples):
            uniforms = _example_uniforms(shape, seed + [0, 7919 * (sample + 1)],
                                         example_offset, total_examples)
            signs = tf.where(uniforms < 0.5, -1.0, 1.0)
            vectors.append((tf.cast(signs, logits.dtype), 1.0 / gauss_newton_samples))
        return vectors
    probabilities = tf.nn.softmax(logits)
    if curvature == Curvature.FISHER:
        # Gumbel-max: argmax(z + Gumbel noise) ~ softmax(z), from per-example uniforms.
        uniforms = _example_uniforms(shape, seed, example_offset, total_examples)
        gumbel = -tf.math.log(-tf.math.log(tf.clip_by_value(uniforms, 1e-20, 1.0 - 1e-7)))
        targets = tf.argmax(logits + tf.cast(gumbel, logits.dtype), axis=-1)
    else:
        if labels is None:
            raise ValueError("curvature='empirical' needs the true labels y.")
        labels = tf.convert_to_tensor(labels)
        one_hot = labels.shape.rank == logits.shape.rank and labels.shape[-1] == num_classes > 1
        if one_hot:  # CategoricalCrossentropy's labels; [B, 1] integer labels are not
            targets = tf.argmax(labels, axis=-1)
        else:
            targets = tf.reshape(tf.cast(labels, tf.int64), [-1])
    return [(probabilities - tf.one_hot(targets, num_classes, dtype=logits.dtype), 1.0)]


def block_statistics(blocks, records, tape, logits, labels, curvature, seed,
                     gauss_newton_samples=defaults.GAUSS_NEWTON_SAMPLES, example_offset=0,
                     total_examples=None):
    """[[statistics of block] per block] (``CurvatureBlock.statistics``) from a capture's
    records and the (persistent) tape that saw them; in each block's dtype (float32 under
    mixed precision: the output vectors u are drawn from float32 logits)."""
    preactivations = [records[block.name].preactivations for block in blocks]
    vectors = output_vectors(tf.cast(logits, tf.float32 if logits.dtype != tf.float64 else
                                     tf.float64), labels, curvature, seed, gauss_newton_samples,
                             example_offset, total_examples)
    per_block = [[] for _ in blocks]
    for vector, weight in vectors:
        gradients = tape.gradient(logits, preactivations,
                                  output_gradients=tf.stop_gradient(tf.cast(vector, logits.dtype)))
        for collected, g in zip(per_block, gradients):
            collected.append((g, weight))
    return [block.statistics(records[block.name], weighted)
            for block, weighted in zip(blocks, per_block)]


def kronecker_factors(
    model,
    x,
    y=None,
    curvature: str = defaults.CURVATURE,
    seed: int = 0,
    gauss_newton_samples: int | None = defaults.GAUSS_NEWTON_SAMPLES,
    training: bool = False,
) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """Per-layer K-FAC factors {layer name: (A, G)} of ``model`` on the batch ``x``.

    Works without any optimizer (STYLE rule 2). ``y`` is needed only for ``"empirical"``.
    See ``tfwd.curvature.kronecker`` for the factor definitions and ``output_vectors`` for
    curvatures. ``gauss_newton_samples`` defaults to the optimizer's one Rademacher vector
    (``tfwd.choices.kfac.GAUSS_NEWTON_SAMPLES``); pass None for the exact factors.
    """
    check_curvature(curvature)
    layers, _ = split_layers(model)
    if not layers:
        raise ValueError(f"Model {model.name!r} has no Dense or Conv2D layer to factor.")
    blocks = [block_for(layer) for layer in layers]
    return {block.name: tuple(factors) for block, factors in
            zip(blocks, block_factors(model, blocks, x, y, curvature, seed,
                                      gauss_newton_samples, training))}


def block_factors(model, blocks, x, y=None, curvature: str = defaults.CURVATURE, seed: int = 0,
                  gauss_newton_samples: int | None = defaults.GAUSS_NEWTON_SAMPLES,
                  training: bool = False) -> list:
    """Each block's statistics on the batch ``x`` (its factors, for one batch), no optimizer."""
    check_curvature(curvature)
    with tf.GradientTape(persistent=True) as tape, LayerCapture(blocks) as capture:
        logits = model(x, training=training)
    statistics = block_statistics(blocks, capture.records, tape, logits, y, curvature,
                                  tf.constant([seed, 0], tf.int64), gauss_newton_samples)
    del tape
    return statistics
