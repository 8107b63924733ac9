"""Low-rank preconditioning of Dense gradients (tfwd.curvature.low_rank): a full K-FAC step
through the per-example factors equals the dense A_λ⁻¹ ∇W̃ G_λ⁻¹ step (itself checked against
numpy in tests/test_blocks.py), with biases, positions (rank-3 inputs), L2 decay, mixed
precision and a batch size known only at run time; KL clipping's ⟨∇W̃, P⟩ through the factors
equals the dense sum (numpy, float64); the step's graph keeps no dense kernel gradient of a
low-rank layer; the cost model picks the cheaper route."""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd.curvature import kronecker
from tfwd.curvature.block import BlockOptions
from tfwd.curvature.low_rank import (GradientFactors, factored_direction, gradient_inner_product,
                                     precondition_flops, prefers_low_rank)

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


def _spd(rng, size):
    root = rng.standard_normal((size, size))
    return root @ root.T / size + 0.5 * np.eye(size)


def test_the_inner_product_through_the_factors_equals_the_dense_one():
    # ⟨ÃᵀĜ, A⁻¹ÃᵀĜG⁻¹⟩ from the N × N products against numpy's dense sum, float64;
    # non-symmetric "inverses" too: the identity does not rely on symmetry.
    rng = np.random.default_rng(0)
    inputs, output_gradients = rng.standard_normal((6, 7)), rng.standard_normal((6, 5))
    for A_inverse, G_inverse in [(np.linalg.inv(_spd(rng, 7)), np.linalg.inv(_spd(rng, 5))),
                                 (rng.standard_normal((7, 7)), rng.standard_normal((5, 5)))]:
        factors = GradientFactors(tf.constant(inputs), tf.constant(output_gradients))
        direction = factored_direction(factors, tf.constant(A_inverse), tf.constant(G_inverse))
        gradient = inputs.T @ output_gradients
        np.testing.assert_allclose(direction.matrix().numpy(), A_inverse @ gradient @ G_inverse,
                                   rtol=1e-12)
        expected = np.sum(gradient * (A_inverse @ gradient @ G_inverse))
        np.testing.assert_allclose(float(gradient_inner_product(factors, direction)), expected,
                                   rtol=1e-12)


@pytest.mark.parametrize("decay", [0.0, 0.3])
@pytest.mark.parametrize("scale", [None, 0.7])
def test_a_dense_block_gives_scaled_p_and_the_kl_term_without_the_dense_gradient(decay, scale):
    # ν·P for P = A⁻¹(ÃᵀĜ + γW̃)G⁻¹ and ⟨ÃᵀĜ + γW̃, P⟩, numpy reference in float64; bias as
    # W̃'s last row; decay 0: no L2 term (P kept in halves), 0.3: with one (P formed).
    layer = keras.layers.Dense(5, dtype="float64")
    layer.build((None, 6))
    block = kronecker.DenseBlock(layer, BlockOptions())
    rng = np.random.default_rng(1)
    inputs = np.concatenate([rng.standard_normal((4, 6)), np.ones((4, 1))], axis=1)
    output_gradients = rng.standard_normal((4, 5))
    A_inverse, G_inverse = np.linalg.inv(_spd(rng, 7)), np.linalg.inv(_spd(rng, 5))
    kernel, bias = rng.standard_normal((6, 5)), rng.standard_normal(5)
    l2_matrix = decay * np.concatenate([kernel, bias[None]], axis=0)
    gradient = inputs.T @ output_gradients + l2_matrix
    expected = A_inverse @ gradient @ G_inverse
    factors = GradientFactors(tf.constant(inputs), tf.constant(output_gradients))
    l2_terms = [tf.constant(decay * kernel), tf.constant(decay * bias)] if decay else None
    direction = block.precondition_low_rank(
        factors, [tf.constant(A_inverse), tf.constant(G_inverse)], l2_terms)
    assert (direction.halves is None) == bool(decay)
    kernel_p, bias_p = block.low_rank_variables(
        direction, None if scale is None else tf.constant(scale, tf.float64))
    factor = 1.0 if scale is None else scale
    np.testing.assert_allclose(kernel_p.numpy(), factor * expected[:-1], rtol=1e-12)
    np.testing.assert_allclose(bias_p.numpy(), factor * expected[-1], rtol=1e-12)
    np.testing.assert_allclose(float(direction.inner_product), np.sum(gradient * expected),
                               rtol=1e-12)
    kernel_g, bias_g = block.gradients_from_factors(factors)
    np.testing.assert_allclose(kernel_g.numpy(), (inputs.T @ output_gradients)[:-1], rtol=1e-12)
    np.testing.assert_allclose(bias_g.numpy(), (inputs.T @ output_gradients)[-1], rtol=1e-12)


def _live_operations(graph) -> set:
    """Names of the operations the outputs and the stateful operations (control outputs)
    depend on: what TensorFlow keeps of a function body, the rest it prunes."""
    live, stack = set(), [t.op for t in graph.outputs] + list(graph.control_outputs)
    while stack:
        operation = stack.pop()
        if operation.name not in live:
            live.add(operation.name)
            stack.extend([t.op for t in operation.inputs] + list(operation.control_inputs))
    return live


def _kernel_gradient_products(low_rank, batch_dimension, decay):
    """The tape's kernel-gradient MatMuls of the traced training step, by layer: live or not."""
    from tfwd.optimizers import KFAC
    from tfwd.train import TrainStep

    model = _model("float32")
    optimizer = KFAC(0.1, kl_clip=1e-2, low_rank=low_rank, **decay)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    optimizer.attach(model)
    step = TrainStep(model)
    graph = tf.function(step.replica_step).get_concrete_function(
        tf.TensorSpec([batch_dimension, 3, 4]), tf.TensorSpec([batch_dimension], tf.int32)).graph
    live = _live_operations(graph)
    products = {}
    for operation in graph.get_operations():
        for name in ("tokens", "hidden", "top"):
            # ∂L/∂W = aᵀ·∂L/∂s is the MatMul with transpose_a in the layer's gradient scope
            # (Keras names the call's scope "hidden_1"); ∂L/∂a = ∂L/∂s·Wᵀ transposes b.
            if (operation.type == "MatMul" and operation.name.startswith("gradient_tape/")
                    and re.search(f"/{name}(_[0-9]+)?/", operation.name)
                    and operation.get_attr("transpose_a")):
                products[name] = operation.name in live
    return products


@pytest.mark.parametrize("low_rank, batch_dimension", [("always", 8), ("auto", None)])
@pytest.mark.parametrize("decay", [{}, {"weight_decay": 0.1, "decay_type": "l2"}])
def test_the_step_graph_drops_the_dense_kernel_gradients_of_low_rank_layers(
        low_rank, batch_dimension, decay):
    # KL clipping, L2 decay and the run-time route choice (batch unknown: a tf.cond) all
    # read the factors, never the tape's ∇W̃; on the dense route the products stay live.
    dense = _kernel_gradient_products("never", batch_dimension, decay)
    assert dense == {"tokens": True, "hidden": True, "top": True}
    if low_rank == "auto" and decay:  # "auto" keeps layers under L2 decay on the dense route
        assert _kernel_gradient_products(low_rank, batch_dimension, decay) == dense
    else:
        assert _kernel_gradient_products(low_rank, batch_dimension, decay) == {
            "tokens": False, "hidden": False, "top": False}


def _fit_weights(low_rank, monkeypatch):
    """Two epochs of batches 16 and 8 (a batch size known only when the step runs) in float64;
    returns the weights and how often the low-rank route ran."""
    from tfwd.optimizers import KFAC
    from tfwd.train import TrainStep

    ran = tf.Variable(0)
    original = kronecker.DenseBlock.precondition_low_rank

    def counted(self, *arguments):
        with tf.control_dependencies([ran.assign_add(1)]):
            direction = original(self, *arguments)
            direction.inner_product = tf.identity(direction.inner_product)
            return direction

    monkeypatch.setattr(kronecker.DenseBlock, "precondition_low_rank", counted)
    inputs = keras.Input((16,), dtype="float64")
    wide = keras.layers.Dense(32, activation="tanh", name="wide", dtype="float64",
                              kernel_initializer=keras.initializers.GlorotUniform(1))(inputs)
    logits = keras.layers.Dense(3, name="top", dtype="float64",
                                kernel_initializer=keras.initializers.GlorotUniform(2))(wide)
    model = keras.Model(inputs, logits)
    optimizer = KFAC(0.1, gauss_newton_samples=None, cov_every=1, inv_every=2, damping=1e-2,
                     kl_clip=1e-2, low_rank=low_rank)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    optimizer.attach(model)
    TrainStep(model).install()
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.standard_normal((24, 16)),
                                               rng.integers(0, 3, 24))).batch(16)
    model.fit(data, epochs=2, verbose=0, shuffle=False)
    return [v.numpy() for v in model.trainable_weights], int(ran.numpy())


def test_auto_at_a_batch_size_known_at_run_time_takes_both_routes_exactly(monkeypatch):
    # "wide" (17 × 32): low rank at N = 8 (29,712 < 53,312 FLOPs), dense at N = 16 (59,424),
    # where the dense branch forms ∇W̃ = ÃᵀĜ from the factors; "top" (33 × 3) is dense at both.
    dense, dense_ran = _fit_weights("never", monkeypatch)
    auto, auto_ran = _fit_weights("auto", monkeypatch)
    assert dense_ran == 0 and auto_ran == 2  # once per epoch: the batch of 8
    assert prefers_low_rank("auto", _factors(8, 17, 32), has_l2_term=False)
    assert not prefers_low_rank("auto", _factors(16, 17, 32), has_l2_term=False)
    for a, b in zip(dense, auto):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
