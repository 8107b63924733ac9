"""Low-rank preconditioning of Dense gradients (tfwd.curvature.low_rank): a full K-FAC step
through the per-example factors equals the dense A_λ⁻¹ ∇W̃ G_λ⁻¹ step (itself checked against
numpy in tests/test_blocks.py), with biases, positions (rank-3 inputs), L2 decay and mixed
precision; the cost model picks the cheaper route."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd.curvature import kronecker
from tfwd.curvature.low_rank import GradientFactors, precondition_flops, prefers_low_rank

STEPS = 3


def _model(dtype):
    """Dense on [B, T=3, 4] tokens (bias), tanh, flatten, Dense without bias (logits)."""
    inputs = keras.Input((3, 4), dtype=dtype)
    h = keras.layers.Dense(5, activation="tanh", name="tokens",
                           kernel_initializer=keras.initializers.GlorotUniform(1))(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(6, activation="relu", name="hidden",
                           kernel_initializer=keras.initializers.GlorotUniform(2))(h)
    logits = keras.layers.Dense(3, name="top", use_bias=False,
                                kernel_initializer=keras.initializers.GlorotUniform(3))(h)
    return keras.Model(inputs, logits)


def _weights_after_steps(low_rank, monkeypatch, dtype="float32", policy=None, **options):
    from tfwd.optimizers import KFAC
    from tfwd.train import TrainStep

    traced = []
    original = kronecker.DenseBlock.precondition_low_rank
    monkeypatch.setattr(kronecker.DenseBlock, "precondition_low_rank",
                        lambda self, *a: traced.append(self.name) or original(self, *a))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy or dtype)
    try:
        model = _model(dtype)
        optimizer = KFAC(0.1, gauss_newton_samples=None, cov_every=1, inv_every=2, damping=1e-2,
                         kl_clip=1e-2, low_rank=low_rank, **options)
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        optimizer.attach(model)
        TrainStep(model).install()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8, 3, 4)).astype(dtype)
        y = rng.integers(0, 3, 8)
        for _ in range(STEPS):
            model.train_on_batch(x, y)
        return [v.numpy().astype(np.float64) for v in model.trainable_weights], set(traced)
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("decay", [{"weight_decay": 0.1, "decay_type": "decoupled"},
                                   {"weight_decay": 0.1, "decay_type": "l2"}])
def test_low_rank_steps_equal_dense_steps(dtype, rtol, decay, monkeypatch):
    dense, dense_traced = _weights_after_steps("never", monkeypatch, dtype, **decay)
    low_rank, low_rank_traced = _weights_after_steps("always", monkeypatch, dtype, **decay)
    assert dense_traced == set() and low_rank_traced == {"tokens", "hidden", "top"}
    initial = [v.numpy() for v in _model(dtype).trainable_weights]
    for before, a, b in zip(initial, dense, low_rank):
        moved = np.abs(a - before).max()
        assert moved > 1e-3  # the steps move every variable
        np.testing.assert_allclose(b, a, rtol=0, atol=rtol * moved)


def test_low_rank_steps_equal_dense_steps_under_mixed_float16(monkeypatch):
    # The loss is scaled (LossScaleOptimizer); the factors carry the unscaled per-example g.
    dense, _ = _weights_after_steps("never", monkeypatch, policy="mixed_float16")
    low_rank, traced = _weights_after_steps("always", monkeypatch, policy="mixed_float16")
    assert traced == {"tokens", "hidden", "top"}
    initial = [v.numpy() for v in _model("float32").trainable_weights]
    for before, a, b in zip(initial, dense, low_rank):
        # float16 activations and dense weight gradients: ~1e-3 relative error on that side.
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-2 * np.abs(a - before).max())


def _factors(rows, input_dim, output_dim):
    return GradientFactors(tf.zeros([rows, input_dim]), tf.zeros([rows, output_dim]))


def test_the_cost_model_picks_the_cheaper_route():
    # 784-1000-1000-10 MLP at batch 128 (bias rows included).
    assert prefers_low_rank("auto", _factors(128, 785, 1000), has_l2_term=False)
    assert prefers_low_rank("auto", _factors(128, 1001, 1000), has_l2_term=False)
    assert not prefers_low_rank("auto", _factors(128, 1001, 10), has_l2_term=False)
    # An L2 term adds a dense product to the low-rank one: never cheaper.
    assert not prefers_low_rank("auto", _factors(128, 785, 1000), has_l2_term=True)
    assert prefers_low_rank("always", _factors(128, 1001, 10), has_l2_term=True)
    assert not prefers_low_rank("never", _factors(8, 785, 1000), has_l2_term=False)
    flops = precondition_flops(128, 1001, 1000)
    # Dense: A⁻¹X (2·d_in²·d_out) then ·G⁻¹ (2·d_in·d_out²); low rank: A⁻¹Ãᵀ, ĜG⁻¹, their product.
    assert flops["dense"] == 2 * 1001**2 * 1000 + 2 * 1001 * 1000**2
    assert flops["low_rank"] == 2 * 128 * (1001**2 + 1000**2 + 1001 * 1000)
    assert flops["dense"] / flops["low_rank"] > 5


def test_a_batch_known_only_at_run_time_decides_in_the_graph():
    decide = tf.function(
        lambda rows: prefers_low_rank(
            "auto", GradientFactors(rows, tf.zeros(tf.stack([tf.shape(rows)[0], 1000]))),
            has_l2_term=False),
        input_signature=[tf.TensorSpec([None, 785])])
    assert bool(decide(tf.zeros([128, 785])))
    assert not bool(decide(tf.zeros([4096, 785])))
