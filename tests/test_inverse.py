"""Inverse methods of the damped factors (tfwd.curvature.inverse) against numpy's inverse, the
float64 retry of a failed Cholesky factorization, and K-FAC's non-finite-factor stop."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd.choices.kfac import INVERSE_METHODS
from tfwd.curvature.inverse import INVERSE_FLOPS_PER_CUBE, damped_inverses, inverse_via_cholesky


def random_psd(size, seed, rank=None, stack=()):
    """XᵀX/rank, low rank when rank < size (then only the damping makes it invertible)."""
    rank = rank or 2 * size
    x = np.random.default_rng(seed).standard_normal((*stack, rank, size))
    return np.swapaxes(x, -1, -2) @ x / rank


def numpy_damped_inverses(A, G, damping):
    """π = sqrt((tr A/dim A)/(tr G/dim G)); (A + π√λ I)⁻¹, (G + √λ/π I)⁻¹ (Martens & Grosse
    2015, §6.3), per stack entry."""
    mean_a = np.trace(A, axis1=-2, axis2=-1) / A.shape[-1]
    mean_g = np.trace(G, axis1=-2, axis2=-1) / G.shape[-1]
    pi, root = np.sqrt(mean_a / mean_g)[..., None, None], np.sqrt(damping)
    return (np.linalg.inv(A + pi * root * np.eye(A.shape[-1])),
            np.linalg.inv(G + root / pi * np.eye(G.shape[-1])))


@pytest.mark.parametrize("method", INVERSE_METHODS)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 2e-4)])
@pytest.mark.parametrize("stack", [(), (3,)])  # one factor; a depthwise stack of channels
def test_each_method_gives_numpys_damped_inverse(method, dtype, rtol, stack):
    # λ = 2⁻⁸ is exact in float32; A has rank 3 < 7, so the damping matters.
    A, G, damping = random_psd(7, 1, rank=3, stack=stack), random_psd(4, 2, stack=stack), 2.0**-8
    expected = numpy_damped_inverses(A, G, damping)
    actual = tf.function(lambda a, g: damped_inverses(a, g, damping, method))(
        tf.constant(A, dtype), tf.constant(G, dtype))
    for value, reference in zip(actual, expected):
        np.testing.assert_allclose(value.numpy(), reference, rtol=rtol,
                                   atol=rtol * np.abs(reference).max())


def ill_conditioned_float32_factor():
    """A 6 × 6 float32 matrix that is positive definite exactly (as a float64 matrix of its
    float32 entries, eigenvalues 1 … 1e-9) but whose float32 Cholesky factorization fails."""
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    matrix = ((q * np.logspace(0, -9, 6)) @ q.T).astype(np.float32)
    return (matrix + matrix.T) / 2


@pytest.mark.parametrize("compiled", [False, True])
def test_a_failed_float32_cholesky_is_redone_in_float64(compiled):
    matrix, shift = ill_conditioned_float32_factor(), np.float32(1e-8)
    shifted = matrix + shift * np.eye(6, dtype=np.float32)  # float32 arithmetic, as TF's
    assert np.linalg.eigvalsh(shifted.astype(np.float64)).min() > 0  # PD: float64 succeeds
    assert not np.isfinite(tf.linalg.cholesky(tf.constant(shifted)).numpy()).all()
    invert = tf.function(inverse_via_cholesky) if compiled else inverse_via_cholesky
    actual = invert(tf.constant(matrix), tf.constant(shift), "layer").numpy()
    assert actual.dtype == np.float32
    expected = np.linalg.inv(shifted.astype(np.float64))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_factor_no_precision_can_factor_raises_naming_the_layer():
    indefinite = tf.constant([[1.0, 2.0], [2.0, 1.0]], tf.float64)  # eigenvalues 3, −1
    with pytest.raises(tf.errors.InvalidArgumentError, match="layer 'dense_3' is not positive"):
        inverse_via_cholesky(indefinite, tf.constant(0.5, tf.float64), "dense_3")


def test_inverse_cost_follows_the_method():
    from tfwd.curvature import BlockOptions, block_for

    layer = keras.layers.Dense(5)
    layer.build((None, 9))
    for method in INVERSE_METHODS:
        block = block_for(layer, BlockOptions(inverse=method))
        assert block.inverse_cost() == int(INVERSE_FLOPS_PER_CUBE[method] * 10**3) + int(
            INVERSE_FLOPS_PER_CUBE[method] * 5**3)  # A: 9 inputs + bias; G: 5 outputs
    with pytest.raises(ValueError, match="inverse must be one of"):
        BlockOptions(inverse="lu")


# ------------------------------------------------------------------ the optimizer
def _tiny_model():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="tanh", name="hidden",
                                kernel_initializer=keras.initializers.GlorotUniform(1))(inputs)
    logits = keras.layers.Dense(2, name="top",
                                kernel_initializer=keras.initializers.GlorotUniform(2))(hidden)
    return keras.Model(inputs, logits)


def _kfac_model(**options):
    from tfwd.optimizers import KFAC
    from tfwd.train import TrainStep

    model = _tiny_model()
    optimizer = KFAC(0.1, gauss_newton_samples=None, **options)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    optimizer.attach(model)
    TrainStep(model).install()
    return model, optimizer


def _batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 2, 8)


def test_cholesky_and_eigh_train_to_the_same_weights():
    x, y = _batch()
    weights = {}
    for method in INVERSE_METHODS:
        model, optimizer = _kfac_model(inverse=method, cov_every=1, inv_every=1)
        assert optimizer.get_config()["inverse"] == method
        for _ in range(3):
            model.train_on_batch(x, y)
        weights[method] = [v.numpy() for v in model.trainable_weights]
    for cholesky, eigh in zip(weights["cholesky"], weights["eigh"]):
        np.testing.assert_allclose(cholesky, eigh, rtol=1e-4, atol=1e-5)


def test_kfac_inverse_option_round_trips_and_is_checked():
    from tfwd.optimizers import KFAC

    restored = KFAC.from_config(KFAC(0.1, inverse="eigh").get_config())
    assert restored.block_options.inverse == "eigh"
    assert KFAC(0.1).block_options.inverse == "cholesky"
    with pytest.raises(ValueError, match="inverse must be one of"):
        KFAC(0.1, inverse="svd")


def test_a_nonfinite_factor_between_inverse_steps_stops_the_next_statistics_step():
    x, y = _batch()
    model, optimizer = _kfac_model(cov_every=2, inv_every=100)
    model.train_on_batch(x, y)  # step 0: statistics and inverses
    hidden_a = optimizer.block_factors[optimizer.layer_names.index("hidden")][0]
    hidden_a.assign(tf.fill(hidden_a.shape, float("nan")))  # e.g. an overflow in an update
    model.train_on_batch(x, y)  # step 1: no statistics, no check, no host read
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="K-FAC factors of layer 'hidden' are not finite: training diverged"):
        model.train_on_batch(x, y)  # step 2: a statistics step, 98 steps before the next inverse


def test_nonfinite_statistics_stop_the_step_that_brings_them():
    from tfwd.train import divergence

    x, y = _batch()
    model, _ = _kfac_model(cov_every=2, inv_every=100)
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    x[0, 0] = np.inf  # reaches every layer's statistics
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.train_on_batch(x, y)
    assert divergence.is_kfac_factor_error(error.value)  # the training loop records a divergence
