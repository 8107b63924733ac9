"""Curvature noise (paper 002) against covariances built from explicit per-example gradients.

Statistical checks use N stateless draws at frozen parameters and compare sample second
moments with the analytic covariance (the noise has mean zero, so E[n nᵀ] is the covariance):
for Gaussian noise the sample mean of n_i n_j has standard error √((C_ii C_jj + C_ij²)/N)
(relative √(2/N) on the diagonal). Rademacher sums (full Fisher) have *smaller* fourth
moments — Var(n_i n_j) = C_ii C_jj + C_ij² − 2 Σ_b v_bi² v_bj² — so the Gaussian bound is
conservative there. Tolerances are Z_BOUND standard errors; the draws are seeded, so the
tests are deterministic.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.capture import LayerCapture
from tfwd.curvature.diagonal import diagonal_fisher
from tfwd.curvature.step import install_train_step
from tfwd.noise import KINDS, CurvatureNoise, make_noise, noise_scale

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


def mlp(batch_norm=False):
    """4 → Dense(5, tanh) [→ BN] → Dense(3) logits: 43 parameters (+ BN's γ, β)."""
    layers = [keras.Input((4,)), dense(5, "hidden", "tanh", seed=1)]
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


def test_full_fisher_noise_has_covariance_s2_f():
    model = mlp()
    x, y = batch()
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


def test_kfac_noise_has_covariance_s2_g_kron_a():
    model = mlp()
    x, y = batch()
    noise = make_noise("kfac", model, large_batch_size=LARGE, small_batch_size=SMALL, **FOREVER)
    pieces = split_by_variable(draws(noise, x, y), model.trainable_weights)
    for name, (A, G) in explicit_kronecker_factors(model, x, y).items():
        matrices = layer_matrix(pieces, model.get_layer(name))  # [N, input_dim, output_dim]
        column_major_vec = np.swapaxes(matrices, 1, 2).reshape(len(matrices), -1)
        assert_second_moments(column_major_vec, SCALE**2 * np.kron(G, A))


def test_trace_noise_is_isotropic_with_variance_s2_trace_f_over_d():
    model = mlp()
    x, y = batch()
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
    assert make_noise("multiplicative", model, large_batch_size=LARGE, small_batch_size=SMALL,
                      **FOREVER).multiplicative_std == SCALE


# --------------------------------------------------------------- switching off, seeding


@pytest.mark.parametrize("kind", NOISY_KINDS)
def test_noise_is_exactly_zero_after_noise_until_epoch_and_when_batches_match(kind):
    model = mlp()
    x, y = batch()
    noise = make_noise(kind, model, large_batch_size=LARGE, small_batch_size=SMALL,
                       steps_per_epoch=3, noise_until_epoch=1)
    assert np.all(flatten(noise.sample_for_batch(x, y, step=2)) != 0)
    assert np.all(flatten(noise.sample_for_batch(x, y, step=3)) == 0)
    same_batch = make_noise(kind, model, large_batch_size=LARGE, small_batch_size=LARGE, **FOREVER)
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
            install_train_step(model, [noise])
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
        install_train_step(model, [noise])
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
