"""Curvature noise (paper 002) against covariances built from explicit per-example gradients.

Statistical checks use N stateless draws at frozen parameters and compare sample second
moments with the analytic covariance (the noise has mean zero, so E[n nᵀ] is the covariance):
for Gaussian noise the sample mean of n_i n_j has standard error √((C_ii C_jj + C_ij²)/N)
(relative √(2/N) on the diagonal). Rademacher sums (full Fisher) have *smaller* fourth
moments — Var(n_i n_j) = C_ii C_jj + C_ij² − 2 Σ_b v_bi² v_bj² — so the Gaussian bound is
conservative there. Tolerances are Z_BOUND standard errors; the draws are seeded, so the
tests are deterministic.
"""
import itertools

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.capture import LayerCapture, split_layers
from tfwd.curvature.diagonal import diagonal_fisher
from tfwd.train import TrainConfig, TrainStep
from tfwd.noise import KINDS, CurvatureNoise, make_noise, noise_scale
from tfwd.noise.batch import NoiseBatch, rademacher, standard_normal
from tfwd.noise.kfac import FLOAT32_EPSILON, sketch_draw, square_root_factor, uses_sketch
from tfwd.noise.trace import dense_squared_norm_sum

NUM_DRAWS = 2000
Z_BOUND = 5.0
LARGE, SMALL = 8, 2  # s² = (8 − 2)/(8·2) = 0.375
SCALE = noise_scale(LARGE, SMALL)
NOISY_KINDS = tuple(kind for kind in KINDS if kind != "none")
FOREVER = dict(steps_per_epoch=10**6, noise_until_epoch=50)


def dense(units, name, activation=None, seed=0):
    return keras.layers.Dense(
        units, activation=activation, name=name,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=seed + 100),
    )


def mlp(batch_norm=False, width=5):
    """4 → Dense(width, tanh) [→ BN] → Dense(3) logits: 43 parameters at width 5 (+ BN's γ, β)."""
    layers = [keras.Input((4,)), dense(width, "hidden", "tanh", seed=1)]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name="norm"))
    layers.append(dense(3, "top", seed=2))
    return keras.Sequential(layers)


def single_location_conv():
    """3×3×2 input → valid 3×3 Conv2D (one output location, T = 1) → Dense(3)."""
    return keras.Sequential([
        keras.Input((3, 3, 2)),
        keras.layers.Conv2D(2, 3, activation="tanh", name="conv",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=3),
                            bias_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=4)),
        keras.layers.Flatten(),
        dense(3, "top", seed=5),
    ])


def conv_net(batch_norm=False):
    """6×5×1 → Conv2D(4, 3×3, same, tanh) [→ BN] → Conv2D(2, 3×3, stride 2, valid, no bias)
    → Dense(3): T = 30 and 4 output locations. The first conv's input has fewer elements than
    its output, the second's more (``outer_product_sum`` weights the smaller one)."""
    layers = [keras.Input((6, 5, 1)),
              keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv",
                                  kernel_initializer=keras.initializers.GlorotUniform(seed=6),
                                  bias_initializer=keras.initializers.RandomNormal(stddev=0.3,
                                                                                   seed=7))]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name="norm"))
    layers += [keras.layers.Conv2D(2, 3, strides=2, activation="tanh", use_bias=False,
                                   name="strided",
                                   kernel_initializer=keras.initializers.GlorotUniform(seed=8)),
               keras.layers.Flatten(),
               dense(3, "top", seed=9)]
    return keras.Sequential(layers)


def sequence_dense():
    """3×4 → Dense(5, tanh) on each of the 3 rows (T = 3) → Dense(3)."""
    return keras.Sequential([keras.Input((3, 4)), dense(5, "hidden", "tanh", seed=10),
                             keras.layers.Flatten(), dense(3, "top", seed=11)])


# name: (build, input shape); the batch-norm variants have γ, β outside the captured layers.
MODELS = {
    "mlp": (mlp, (4,)),
    "mlp_batch_norm": (lambda: mlp(batch_norm=True), (4,)),
    "wide_mlp": (lambda: mlp(width=8), (4,)),
    "conv": (conv_net, (6, 5, 1)),
    "conv_batch_norm": (lambda: conv_net(batch_norm=True), (6, 5, 1)),
    "sequence_dense": (sequence_dense, (3, 4)),
}


def batch(shape=(4,), size=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, *shape)).astype(np.float32)
    y = (np.arange(size) % 3).astype(np.int32)
    return x, y


def per_example_gradients(model, x, y):
    """[B, d] float64: ∇ℓ_b for each example, by an explicit loop of GradientTapes."""
    rows = []
    for b in range(len(x)):
        with tf.GradientTape() as tape:
            logits = model(x[b:b + 1])
            loss = keras.losses.sparse_categorical_crossentropy(y[b:b + 1], logits, from_logits=True)
        gradients = tape.gradient(loss, model.trainable_weights)
        rows.append(np.concatenate([np.ravel(g.numpy()) for g in gradients]))
    return np.asarray(rows, np.float64)


def split_by_variable(vector, variables):
    """{variable path: slice of a flat parameter vector, reshaped like the variable}."""
    pieces, start = {}, 0
    for variable in variables:
        size = int(np.prod(variable.shape))
        pieces[variable.path] = np.reshape(vector[..., start:start + size],
                                           (*vector.shape[:-1], *variable.shape))
        start += size
    return pieces


def layer_matrix(pieces, layer):
    """[W; b] as in KroneckerBlock.to_matrix, with numpy (leading axes kept)."""
    kernel = pieces[layer.kernel.path]
    leading = kernel.shape[:kernel.ndim - len(layer.kernel.shape)]
    kernel = np.reshape(kernel, (*leading, -1, kernel.shape[-1]))
    if not layer.use_bias:
        return kernel
    bias = pieces[layer.bias.path][..., np.newaxis, :]
    return np.concatenate([kernel, bias], axis=-2)


def flatten(tensors):
    return np.concatenate([np.ravel(np.asarray(t)) for t in tensors]).astype(np.float64)


def draws(noise, x, y, count=NUM_DRAWS, **replica):
    sample = tf.function(lambda step: noise.sample_for_batch(x, y, step=step, **replica))
    return np.stack([flatten(sample(tf.constant(k, tf.int64))) for k in range(count)])


def assert_second_moments(samples, covariance):
    """Sample E[n nᵀ] within Z_BOUND Gaussian standard errors of ``covariance``."""
    estimate = samples.T @ samples / len(samples)
    variances = np.diag(covariance)
    standard_error = np.sqrt((np.outer(variances, variances) + covariance**2) / len(samples))
    np.testing.assert_array_less(np.abs(estimate - covariance), Z_BOUND * standard_error + 1e-12)


# ------------------------------------------------------------------ diagonal Fisher itself


@pytest.mark.parametrize("build, shape", [(mlp, (4,)), (single_location_conv, (3, 3, 2))])
def test_diagonal_fisher_equals_mean_squared_per_example_gradient(build, shape):
    """Dense (and Conv2D with one output location): diag(F) = 1/B Σ (ã²)(g²)ᵀ exactly."""
    model = build()
    x, y = batch(shape)
    jacobian = per_example_gradients(model, x, y)
    explicit = split_by_variable(np.mean(jacobian**2, axis=0), model.trainable_weights)
    layers = [layer for layer in model.layers
              if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    with tf.GradientTape(persistent=True) as tape, LayerCapture(layers) as capture:
        logits = model(x)
    u = tf.nn.softmax(logits) - tf.one_hot(y, 3)
    for layer in layers:
        record = capture.records[layer.name]
        g = tape.gradient(logits, record.preactivations, output_gradients=u)
        diagonal = diagonal_fisher(KroneckerBlock.for_layer(layer), record.inputs, g)
        np.testing.assert_allclose(diagonal.numpy(), layer_matrix(explicit, layer), rtol=1e-5, atol=1e-9)
    del tape


# ------------------------------------------- signed sums, square-root factors, random signs


def captured_batch(model, x, y):
    """The NoiseBatch of an inference-mode forward pass of ``model`` with every layer captured."""
    layers = split_layers(model)[0]
    tape = tf.GradientTape(persistent=True)
    with tape, LayerCapture(layers) as capture:
        logits = model(x)
    variables = list(model.trainable_weights)
    return layers, NoiseBatch(tape, capture.records, logits, y, variables,
                              [tf.zeros_like(v) for v in variables])


@pytest.mark.parametrize("name", ["mlp", "mlp_batch_norm", "conv", "conv_batch_norm",
                                  "sequence_dense"])
def test_sign_weighted_gradients_equal_the_explicit_signed_sum(name):
    """Σ_b σ_b ∇ℓ_b layer-wise (outer-product sums of captured a and g, the tape for γ/β) equals
    the signed sum of per-example gradients taken one example at a time, and so does the pure
    tape route (no layer captured)."""
    build, shape = MODELS[name]
    model = build()
    x, y = batch(shape)
    signs = np.array([1, -1, -1, 1, 1, -1], np.float32)
    explicit = signs @ per_example_gradients(model, x, y)
    layers, noise_batch = captured_batch(model, x, y)
    indices = list(range(len(noise_batch.variables)))
    for route_layers in (layers, []):
        signed = noise_batch.sign_weighted_gradients(tf.constant(signs), route_layers, indices)
        assert sorted(signed) == indices
        np.testing.assert_allclose(flatten([signed[i] for i in indices]), explicit,
                                   rtol=1e-5, atol=1e-6)


def test_dense_squared_norm_sum_is_the_sum_of_squared_per_example_gradient_norms():
    model = mlp()
    x, y = batch()
    pieces = split_by_variable(per_example_gradients(model, x, y), model.trainable_weights)
    layers, noise_batch = captured_batch(model, x, y)
    for layer, g in zip(layers, noise_batch.preactivation_gradients(layers)):
        explicit = np.sum(layer_matrix(pieces, layer) ** 2)  # Σ_b ‖∇W̃ ℓ_b‖²
        computed = dense_squared_norm_sum(noise_batch.records[layer.name].inputs, g, True)
        np.testing.assert_allclose(computed.numpy(), explicit, rtol=1e-5)


def test_square_root_factor_is_cholesky_of_the_shifted_factor():
    """L Lᵀ = S + δI with δ = ε₃₂·tr(S) for a singular PSD S (zero and repeated columns)."""
    rng = np.random.default_rng(3)
    data = rng.standard_normal((20, 6))
    data[:, 2] = 0.0
    data[:, 4] = data[:, 1]
    factor = data.T @ data / len(data)
    root = square_root_factor(tf.constant(factor)).numpy()  # float64 in, float64 out
    np.testing.assert_array_equal(root, np.tril(root))
    shift = FLOAT32_EPSILON * np.trace(factor)
    np.testing.assert_allclose(root @ root.T, factor + shift * np.eye(6), rtol=0,
                               atol=1e-12 * np.trace(factor))


def test_square_root_factor_falls_back_to_the_clipped_symmetric_root():
    """A clearly indefinite S = QΛQᵀ (Cholesky fails): L Lᵀ = Q max(Λ, 0) Qᵀ."""
    rotation, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((3, 3)))
    eigenvalues = np.array([2.0, 0.5, -1e-3])
    root = square_root_factor(tf.constant(rotation * eigenvalues @ rotation.T)).numpy()
    clipped = rotation * np.maximum(eigenvalues, 0) @ rotation.T
    np.testing.assert_allclose(root @ root.T, clipped, atol=1e-12)


def test_rademacher_signs_are_fair_independent_bits():
    key = tf.constant([5, 6], tf.int64)
    small = rademacher([7, 5], key).numpy()  # 35 signs: not a whole number of 32-bit words
    assert small.shape == (7, 5) and set(np.unique(small)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(small, rademacher([7, 5], key).numpy())
    large = rademacher([1000, 64], key).numpy().astype(np.float64)
    assert not np.array_equal(large, rademacher([1000, 64], tf.constant([5, 7], tf.int64)).numpy())
    # Mean 0 and uncorrelated neighbours (bits of one word, adjacent words): standard error 1/√n.
    bound = Z_BOUND / np.sqrt(large.size)
    assert abs(np.mean(large)) < bound
    flat = large.ravel()
    for lag in (1, 8, 32):
        assert abs(np.mean(flat[:-lag] * flat[lag:])) < Z_BOUND / np.sqrt(flat.size - lag)


def test_standard_normal_is_normal():
    """Box–Muller draws: mean 0, variance 1, uncorrelated halves, and the N(0, 1) CDF
    (Kolmogorov–Smirnov); deterministic in the key, float64 equal to the float32 draw."""
    key = tf.constant([8, 9], tf.int64)
    draws = standard_normal([301, 100], key).numpy().astype(np.float64)  # odd count
    assert draws.shape == (301, 100)
    np.testing.assert_array_equal(draws, standard_normal([301, 100], key, tf.float64).numpy())
    flat = draws.ravel()
    assert abs(np.mean(flat)) < Z_BOUND / np.sqrt(flat.size)
    assert abs(np.var(flat) - 1) < Z_BOUND * np.sqrt(2 / flat.size)
    half = flat.size // 2  # the cos and sin of one pair land half the array apart
    assert abs(np.mean(flat[:half] * flat[half:2 * half])) < Z_BOUND / np.sqrt(half)
    assert scipy.stats.kstest(flat, "norm").pvalue > 1e-4


def exact_sketch_second_moment(block, inputs, gradients, rank):
    """E[vec N vec Nᵀ] of ``sketch_draw`` averaged over every pattern of its 2·B·T·k signs."""
    rows = int(np.prod(gradients.shape[:-1]))
    total = 0.0
    patterns = list(itertools.product([-1.0, 1.0], repeat=2 * rows * rank))
    for pattern in patterns:
        signs = np.reshape(pattern, (2, rows, rank))
        matrix = sketch_draw(block, tf.constant(inputs), tf.constant(gradients),
                             tf.constant(signs[0]), tf.constant(signs[1])).numpy()
        column_major_vec = matrix.T.ravel()
        total = total + np.outer(column_major_vec, column_major_vec)
    return total / len(patterns)


@pytest.mark.parametrize("batch_size, locations, rank, has_bias",
                         [(3, 1, 1, True), (2, 1, 2, True), (2, 2, 1, True), (3, 1, 1, False)])
def test_kfac_sketch_draw_has_covariance_g_kron_a_exactly(batch_size, locations, rank, has_bias):
    """Averaged over all sign patterns (not sampled), the sketch's second moment is G ⊗ A of
    the explicit sums A = 1/(B·T) Σ ã ãᵀ, G = 1/B Σ g gᵀ — Dense and Dense over T positions."""
    rng = np.random.default_rng(batch_size * 10 + locations + rank)
    inputs = rng.standard_normal((batch_size, locations, 2))
    gradients = rng.standard_normal((batch_size, locations, 3))
    block = KroneckerBlock(name="dense", kernel_shape=(2, 3), has_bias=has_bias)
    rows = inputs.reshape(-1, 2)
    if has_bias:
        rows = np.hstack([rows, np.ones((len(rows), 1))])
    input_factor = rows.T @ rows / (batch_size * locations)
    gradient_rows = gradients.reshape(-1, 3)
    output_factor = gradient_rows.T @ gradient_rows / batch_size
    np.testing.assert_allclose(exact_sketch_second_moment(block, inputs, gradients, rank),
                               np.kron(output_factor, input_factor), rtol=1e-12, atol=1e-14)


def test_sketch_is_used_where_it_is_cheaper():
    """k·(d_in + d_out) < d_in·d_out + dim(S)² per data row, Dense only (k = 256)."""
    def dense(rows, units):
        return KroneckerBlock(name="d", kernel_shape=(rows, units), has_bias=True)
    assert uses_sketch(dense(1000, 1000)) and uses_sketch(dense(784, 1000))  # the MLP's hidden
    assert not uses_sketch(dense(1000, 10))  # logits: forming the 10 × 10 G is cheaper
    assert not uses_sketch(dense(64, 64))
    conv = KroneckerBlock(name="c", kernel_shape=(3, 3, 512, 512), has_bias=True,
                          kernel_size=(3, 3), strides=(1, 1), dilation_rate=(1, 1),
                          padding="same")
    assert not uses_sketch(conv)


# ------------------------------------------------------------ covariance of the noise kinds


def test_diag_fisher_noise_has_variance_s2_diag_f():
    model = mlp()
    x, y = batch()
    jacobian = per_example_gradients(model, x, y)
    expected = SCALE**2 * np.mean(jacobian**2, axis=0)
    noise = make_noise("diag_fisher", model, large_batch_size=LARGE, small_batch_size=SMALL, **FOREVER)
    ratio = np.mean(draws(noise, x, y) ** 2, axis=0) / expected
    np.testing.assert_allclose(ratio, 1.0, atol=Z_BOUND * np.sqrt(2 / NUM_DRAWS))
    # The coordinates are independent, so their mean ratio has standard error √(2/(N·d)).
    assert abs(np.mean(ratio) - 1) < Z_BOUND * np.sqrt(2 / (NUM_DRAWS * len(ratio)))


@pytest.mark.parametrize("name", ["mlp", "mlp_batch_norm", "conv"])
def test_full_fisher_noise_has_covariance_s2_f(name):
    """Including the cross-covariances of batch-norm γ/β (tape) and the layers (records)."""
    build, shape = MODELS[name]
    model = build()
    x, y = batch(shape)
    jacobian = per_example_gradients(model, x, y)
    fisher = jacobian.T @ jacobian / len(x)
    noise = make_noise("full_fisher", model, large_batch_size=LARGE, small_batch_size=SMALL, **FOREVER)
    assert_second_moments(draws(noise, x, y), SCALE**2 * fisher)


def explicit_kronecker_factors(model, x, y):
    """{layer: (A, G)} from a hand-written forward pass of ``mlp()`` and per-example tapes."""
    hidden, top = model.get_layer("hidden"), model.get_layer("top")
    factors = {hidden.name: [0.0, 0.0], top.name: [0.0, 0.0]}
    for b in range(len(x)):
        inputs = tf.constant(x[b:b + 1])
        with tf.GradientTape(persistent=True) as tape:
            s1 = tf.matmul(inputs, hidden.kernel.value) + hidden.bias.value
            tape.watch(s1)
            h = tf.tanh(s1)
            s2 = tf.matmul(h, top.kernel.value) + top.bias.value
            tape.watch(s2)
            loss = keras.losses.sparse_categorical_crossentropy(y[b:b + 1], s2, from_logits=True)
        for layer, a, s in ((hidden, inputs, s1), (top, h, s2)):
            a_tilde = np.append(a.numpy()[0], 1.0).astype(np.float64)
            g = tape.gradient(loss, s).numpy()[0].astype(np.float64)
            factors[layer.name][0] += np.outer(a_tilde, a_tilde) / len(x)
            factors[layer.name][1] += np.outer(g, g) / len(x)
        del tape
    return factors


def assert_kronecker_covariance(samples, model, factors):
    """Each layer's draws have covariance s²·G ⊗ A (column-major vec of [W; b]).

    kfac's smaller factor carries δ = ε₃₂·tr(S) (``tfwd.noise.kfac``), 10⁵ times below the
    statistical tolerance here."""
    pieces = split_by_variable(samples, model.trainable_weights)
    for name, (A, G) in factors.items():
        matrices = layer_matrix(pieces, model.get_layer(name))  # [N, input_dim, output_dim]
        column_major_vec = np.swapaxes(matrices, 1, 2).reshape(len(matrices), -1)
        assert_second_moments(column_major_vec, SCALE**2 * np.kron(G, A))


@pytest.mark.parametrize("width", [5, 8])  # input_dim ≥ / < output_dim: A / G from its data
def test_kfac_noise_has_covariance_s2_g_kron_a(width):
    model = mlp(width=width)
    x, y = batch()
    noise = make_noise("kfac", model, large_batch_size=LARGE, small_batch_size=SMALL, **FOREVER)
    assert_kronecker_covariance(draws(noise, x, y), model, explicit_kronecker_factors(model, x, y))


def test_kfac_noise_of_convolutions_has_covariance_s2_g_kron_a():
    """Conv2D draws (Ãᵀ Ξ by Conv2DBackpropFilter) against KFC factors from explicit patches."""
    model = conv_net()
    x, y = batch((6, 5, 1))
    layers, noise_batch = captured_batch(model, x, y)
    factors = {}
    for layer, g in zip(layers, noise_batch.preactivation_gradients(layers)):
        block = KroneckerBlock.for_layer(layer)
        factors[layer.name] = (block.input_factor(noise_batch.records[layer.name].inputs).numpy(),
                               block.output_factor(g).numpy())
    noise = make_noise("kfac", model, large_batch_size=LARGE, small_batch_size=SMALL, **FOREVER)
    assert_kronecker_covariance(draws(noise, x, y), model, factors)


@pytest.mark.parametrize("name", ["mlp", "conv_batch_norm"])  # exact t̂ / signed estimate
def test_trace_noise_is_isotropic_with_variance_s2_trace_f_over_d(name):
    build, shape = MODELS[name]
    model = build()
    x, y = batch(shape)
    jacobian = per_example_gradients(model, x, y)
    dimension = jacobian.shape[1]
    expected = SCALE**2 * np.sum(jacobian**2) / len(x) / dimension  # s² tr(F)/d
    noise = make_noise("trace", model, large_batch_size=LARGE, small_batch_size=SMALL, **FOREVER)
    samples = draws(noise, x, y)
    per_draw = np.mean(samples**2, axis=1)
    standard_error = np.std(per_draw) / np.sqrt(len(per_draw))
    assert abs(np.mean(per_draw) - expected) < Z_BOUND * standard_error
    # Isotropic: every coordinate has the same variance (pooled over draws).
    coordinate_variance = np.mean(samples**2, axis=0)
    assert np.std(coordinate_variance) < 0.25 * np.mean(coordinate_variance)


def test_two_replicas_add_up_to_the_global_batch_covariance():
    """R = 2 replicas on the two halves, each drawing with 1/√R: Var = s²·diag(F) of all 6."""
    model = mlp()
    x, y = batch()
    jacobian = per_example_gradients(model, x, y)
    expected = SCALE**2 * np.mean(jacobian**2, axis=0)
    noise = make_noise("diag_fisher", model, large_batch_size=LARGE, small_batch_size=SMALL, **FOREVER)
    halves = [draws(noise, x[r::2], y[r::2], replica_id=r, num_replicas=2) for r in range(2)]
    assert not np.allclose(halves[0], halves[1])
    ratio = np.mean((halves[0] + halves[1]) ** 2, axis=0) / expected
    np.testing.assert_allclose(ratio, 1.0, atol=Z_BOUND * np.sqrt(2 / NUM_DRAWS))
    assert abs(np.mean(ratio) - 1) < Z_BOUND * np.sqrt(2 / (NUM_DRAWS * len(ratio)))


def test_multiplicative_noise_is_gradient_times_gaussian():
    model = mlp()
    x, y = batch()
    gradient = np.mean(per_example_gradients(model, x, y), axis=0)
    noise = make_noise("multiplicative", model, large_batch_size=LARGE, small_batch_size=SMALL,
                       multiplicative_std=0.5, **FOREVER)
    ratio = flatten(noise.sample_for_batch(x, y, step=0)) / gradient  # σ_m ξ, ξ ~ N(0, I)
    assert abs(np.std(ratio) / 0.5 - 1) < Z_BOUND / np.sqrt(2 * len(ratio))
    # Same ξ on every replica (the noise is linear in each replica's gradient share).
    replica = [flatten(noise.sample_for_batch(x, y, step=0, replica_id=r, num_replicas=2))
               for r in (0, 1)]
    np.testing.assert_array_equal(replica[0], replica[1])
    # Default σ_m: TrainConfig's; None ties it to the other kinds' scale s.
    assert make_noise("multiplicative", model, large_batch_size=LARGE, small_batch_size=SMALL,
                      **FOREVER).multiplicative_std == TrainConfig().noise.multiplicative_std
    assert make_noise("multiplicative", model, large_batch_size=LARGE, small_batch_size=SMALL,
                      multiplicative_std=None, **FOREVER).multiplicative_std == SCALE


# --------------------------------------------------------------- switching off, seeding


@pytest.mark.parametrize("kind", NOISY_KINDS)
def test_noise_is_exactly_zero_after_noise_until_epoch_and_when_batches_match(kind):
    model = mlp()
    x, y = batch()
    noise = make_noise(kind, model, large_batch_size=LARGE, small_batch_size=SMALL,
                       steps_per_epoch=3, noise_until_epoch=1)
    # Every variable gets noise at steps 0-2 (not every coordinate at every step: kfac's bias
    # rows start from sums of 6 random signs, which are exactly 0 with probability 5/16).
    active = [noise.sample_for_batch(x, y, step=step) for step in range(3)]
    assert all(any(np.any(draw[i].numpy() != 0) for draw in active)
               for i in range(len(model.trainable_weights)))
    assert np.all(flatten(noise.sample_for_batch(x, y, step=3)) == 0)
    # Multiplicative noise vanishes with s only when its σ_m is tied to s (None).
    same_batch = make_noise(kind, model, large_batch_size=LARGE, small_batch_size=LARGE,
                            multiplicative_std=None, **FOREVER)
    assert same_batch.scale == 0
    assert np.all(flatten(same_batch.sample_for_batch(x, y, step=0)) == 0)


@pytest.mark.parametrize("kind", NOISY_KINDS)
def test_noise_is_a_function_of_seed_and_step(kind):
    model = mlp()
    x, y = batch()

    def draw(seed, step):
        noise = make_noise(kind, model, large_batch_size=LARGE, small_batch_size=SMALL, seed=seed,
                           **FOREVER)
        return flatten(noise.sample_for_batch(x, y, step=step))

    np.testing.assert_array_equal(draw(0, 5), draw(0, 5))
    assert not np.allclose(draw(0, 5), draw(1, 5))
    assert not np.allclose(draw(0, 5), draw(0, 6))


def test_batch_norm_variables_get_noise_only_from_whole_model_kinds():
    model = mlp(batch_norm=True)
    x, y = batch()
    norm = {v.path for v in model.get_layer("norm").trainable_weights}
    top_kernel = model.get_layer("top").kernel.path
    for kind, covered in (("diag_fisher", False), ("kfac", False), ("full_fisher", True),
                          ("trace", True), ("multiplicative", True)):
        if covered:
            noise = make_noise(kind, model, large_batch_size=LARGE, small_batch_size=SMALL, **FOREVER)
        else:
            with pytest.warns(UserWarning, match="norm"):
                noise = make_noise(kind, model, large_batch_size=LARGE, small_batch_size=SMALL,
                                   **FOREVER)
        values = noise.sample_for_batch(x, y, step=0, training=True)
        for variable, value in zip(model.trainable_weights, values):
            if variable.path in norm:
                assert np.any(value.numpy() != 0) == covered, (kind, variable.path)
            elif variable.path == top_kernel:
                assert np.all(value.numpy() != 0), (kind, variable.path)


def test_make_noise_validates_its_arguments():
    model = mlp()
    common = dict(large_batch_size=LARGE, small_batch_size=SMALL, steps_per_epoch=10)
    assert make_noise("none", model, **common) is None
    assert isinstance(make_noise("trace", model, **common), CurvatureNoise)
    with pytest.raises(ValueError, match="diag_fisher"):
        make_noise("diagonal", model, **common)
    with pytest.raises(ValueError, match="M_S=16 exceeds"):
        make_noise("diag_fisher", model, large_batch_size=8, small_batch_size=16, steps_per_epoch=10)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_noise("diag_fisher", model, large_batch_size=8, small_batch_size=2, steps_per_epoch=0)
    softmax = keras.Sequential([keras.Input((4,)),
                                keras.layers.Dense(3, activation="softmax", name="probs")])
    with pytest.raises(ValueError, match="logits"):
        make_noise("diag_fisher", softmax, **common)
    with pytest.raises(ValueError, match="M_S ≤ M_L"):
        noise_scale(128, 4096)
    assert noise_scale(4096, 4096) == 0.0
    assert noise_scale(4096, 128) == pytest.approx(np.sqrt((4096 - 128) / (4096 * 128)))


# ----------------------------------------------------------------------- model.fit


def fitted_weights(kind, strategy=None, noise_until_epoch=50):
    """Two SGD steps of model.fit (16 examples, batch 8), with ``kind`` noise installed."""
    strategy = strategy or tf.distribute.get_strategy()
    x, y = batch(size=16, seed=1)
    with strategy.scope():
        model = mlp()
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        noise = make_noise(kind, model, large_batch_size=8, small_batch_size=2, steps_per_epoch=2,
                           noise_until_epoch=noise_until_epoch, seed=7)
        if noise is not None:
            TrainStep(model, [noise]).install()
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    return [w.numpy() for w in model.trainable_weights]


def assert_weights_differ(first, second):
    assert any(not np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(first, second))


@pytest.mark.parametrize("kind", NOISY_KINDS)
def test_fit_with_noise_moves_parameters_differently(kind):
    plain = fitted_weights("none")
    assert_weights_differ(fitted_weights(kind), plain)


def test_fit_after_noise_until_epoch_equals_plain_fit():
    for a, b in zip(fitted_weights("diag_fisher", noise_until_epoch=0), fitted_weights("none")):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", NOISY_KINDS)
def test_fit_step_adds_the_draw_of_sample_for_batch(kind):
    """One SGD(1.0) step of model.fit is θ − (∇L + n) with n = sample_for_batch's draw: the
    per-example g the training step records equal those back-propagated from u."""
    x, y = batch(size=8, seed=1)
    model = mlp()
    model.compile(optimizer=keras.optimizers.SGD(1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    noise = make_noise(kind, model, large_batch_size=8, small_batch_size=2, steps_per_epoch=1,
                       seed=7)
    TrainStep(model, [noise]).install()
    before = flatten(model.trainable_weights)
    gradient = np.mean(per_example_gradients(model, x, y), axis=0)
    draw = flatten(noise.sample_for_batch(x, y, step=0))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # kfac: G of the logits layer is singular (u_b sums to 0), so its Cholesky factor along the
    # null direction is √(δ + float32 round-off of G), δ = ε₃₂·tr(G): entries of order 10⁻⁴
    # that the two routes' round-off changes; the draws themselves are of order 0.1.
    atol = 1e-4 if kind == "kfac" else 1e-6
    np.testing.assert_allclose(flatten(model.trainable_weights), before - (gradient + draw),
                               rtol=1e-5, atol=atol)


def test_two_replica_fit_step_is_gradient_plus_the_sum_of_replica_draws(two_replicas):
    """One SGD(1.0) step of 2-replica model.fit equals θ − (∇L_8 + n_0 + n_1) exactly, where
    n_r is replica r's diag-Fisher draw on its half batch with the 1/√2 factor."""
    strategy = two_replicas
    assert strategy.num_replicas_in_sync == 2
    x, y = batch(size=8, seed=1)
    with strategy.scope():
        model = mlp()
        model.compile(optimizer=keras.optimizers.SGD(1.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        noise = make_noise("diag_fisher", model, large_batch_size=8, small_batch_size=2,
                           steps_per_epoch=1, seed=7)
        TrainStep(model, [noise]).install()
    before = flatten(model.trainable_weights)
    gradient = np.mean(per_example_gradients(model, x, y), axis=0)
    draws_by_replica = [flatten(noise.sample_for_batch(x[4 * r:4 * r + 4], y[4 * r:4 * r + 4], step=0,
                                                       replica_id=r, num_replicas=2)) for r in (0, 1)]
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    expected = before - (gradient + draws_by_replica[0] + draws_by_replica[1])
    np.testing.assert_allclose(flatten(model.trainable_weights), expected, rtol=1e-5, atol=1e-6)


def test_fit_with_full_fisher_noise_under_two_replica_mirrored_strategy(two_replicas):
    strategy = two_replicas
    noisy = fitted_weights("full_fisher", strategy)
    assert all(np.all(np.isfinite(w)) for w in noisy)
    assert_weights_differ(noisy, fitted_weights("none", strategy))
