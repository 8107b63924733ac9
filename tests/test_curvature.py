"""Kronecker factors, damped inverses and one K-FAC step against independent references.

References are written in float64 numpy (or built from ``tape.jacobian`` of the logits, which
does not go through ``tfwd.curvature``). Identities are asserted exactly only where they hold
(STYLE rule 7):

* batch of one: the exact Gauss-Newton block JᵀJ of a Dense layer equals G ⊗ A;
* a layer whose back-propagated Jacobian ∂z/∂s is the same for every example (every layer of a
  linear network, the output layer of any network, under the identity output Hessian): the
  Kronecker block equals the exact block for any batch;
* otherwise the factors equal brute-force averages, and sampled factors (Fisher, Rademacher)
  converge to their expectations within a few standard errors over seeds.

vec(·) is column-major throughout: for W̃ of shape [d_in(+1), d_out], vec(W̃)[j·rows + i] = W̃[i, j],
so that the exact block is G ⊗ A (Martens & Grosse 2015, §3).
"""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.capture import LayerCapture, UnsupportedLayerError, split_layers
from tfwd.curvature.inverse import damped_inverses, kl_clip_scale, pi_split, precondition
from tfwd.curvature.statistics import kronecker_factors
from tfwd.optimizers import KFAC
from tfwd.train import TrainStep

EXACT = dict(rtol=1e-10, atol=1e-12)  # float64 end to end: round-off only


def seeded(seed):
    return keras.initializers.RandomNormal(stddev=0.7, seed=seed)


def dense_network(widths=(3, 4, 3), activation="tanh", bias=True, dtype="float64"):
    """Dense layers widths[0] → … → widths[-1]; the hidden ones apply ``activation``, the last
    one ("top") outputs logits."""
    names = [f"dense_{i}" for i in range(len(widths) - 2)] + ["top"]
    layers = [keras.Input((widths[0],), dtype=dtype)]
    for i, (units, name) in enumerate(zip(widths[1:], names)):
        layers.append(keras.layers.Dense(
            units, activation=activation if name != "top" else None, use_bias=bias, name=name,
            kernel_initializer=seeded(2 * i + 1), bias_initializer=seeded(2 * i + 2), dtype=dtype,
        ))
    return keras.Sequential(layers)


def inputs(batch, features, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, features))


def homogeneous(a, bias):
    """ã = [a, 1] when the layer has a bias."""
    return np.concatenate([a, np.ones(a.shape[:-1] + (1,))], axis=-1) if bias else a


class NumpyDense:
    """Forward pass of a Dense network in float64 numpy and, per layer, the inputs ã and the
    Jacobians J_b = ∂z_b/∂s_b of the logits with respect to the pre-activations, [B, K, d_out]:
    J_top = I, J_l = J_{l+1} · W_{l+1}ᵀ · diag(σ'(s_l))."""

    def __init__(self, model, x):
        self.names, self.rows, kernels, slopes = [], [], [], []
        a = np.asarray(x, np.float64)
        for layer in model.layers:
            kernel = layer.kernel.numpy().astype(np.float64)
            s = a @ kernel + (layer.bias.numpy() if layer.use_bias else 0.0)
            name = layer.activation.__name__
            if name == "tanh":
                h, slope = np.tanh(s), 1.0 - np.tanh(s) ** 2
            elif name == "linear":
                h, slope = s, np.ones_like(s)
            else:
                raise NotImplementedError(name)
            self.names.append(layer.name)
            self.rows.append(homogeneous(a, layer.use_bias))
            kernels.append(kernel)
            slopes.append(slope)
            a = h
        self.logits = a
        batch, classes = a.shape
        jacobians = [np.broadcast_to(np.eye(classes), (batch, classes, classes)) * slopes[-1][:, None, :]]
        for kernel, slope in zip(kernels[:0:-1], slopes[-2::-1]):
            jacobians.insert(0, (jacobians[0] @ kernel.T) * slope[:, None, :])
        self.jacobians = jacobians

    def input_factor(self, name):
        rows = self.rows[self.names.index(name)]
        return rows.T @ rows / rows.shape[0]

    def output_factor(self, name, output_covariances=None):
        """1/B Σ_b J_bᵀ C_b J_b; C_b = I (Gauss-Newton) unless given, [B, K, K]."""
        J = self.jacobians[self.names.index(name)]
        if output_covariances is None:
            return np.einsum("bki,bkj->ij", J, J) / J.shape[0]
        return np.einsum("bki,bkl,blj->ij", J, output_covariances, J) / J.shape[0]

    def gradient_matrix(self, name, logit_gradients):
        """∇W̃ = Σ_b ã_b δ_bᵀ with δ_b = J_bᵀ ∂L/∂z_b."""
        index = self.names.index(name)
        deltas = np.einsum("bkd,bk->bd", self.jacobians[index], logit_gradients)
        return self.rows[index].T @ deltas


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def exact_gauss_newton_blocks(model, x):
    """{layer: 1/B Σ_b J_bᵀ J_b} with J_b = ∂z_b/∂vec(W̃) from ``tape.jacobian`` of the logits."""
    with tf.GradientTape(persistent=True) as tape:
        logits = model(x)
    blocks = {}
    for layer in model.layers:
        parts = [tape.jacobian(logits, layer.kernel).numpy()]  # [B, K, d_in, d_out]
        if layer.use_bias:
            parts.append(tape.jacobian(logits, layer.bias).numpy()[:, :, None, :])
        jacobian = np.concatenate(parts, axis=2)  # [B, K, rows, d_out] over W̃ = [W; b]
        batch, classes, rows, columns = jacobian.shape
        # Column-major vec: put d_out first, then flatten C-order → index j·rows + i.
        vec = np.transpose(jacobian, (0, 1, 3, 2)).reshape(batch, classes, columns * rows)
        blocks[layer.name] = np.einsum("bkp,bkq->pq", vec, vec) / batch
    del tape
    return blocks


def relative_error(approximation, exact):
    return np.linalg.norm(approximation - exact) / np.linalg.norm(exact)


def factors(model, x, **kwargs):
    return {name: (a.numpy(), g.numpy()) for name, (a, g) in kronecker_factors(model, x, **kwargs).items()}


# ------------------------------------------------------------ Gauss-Newton, exact blocks


@pytest.mark.parametrize("bias", [True, False])
def test_batch_of_one_kronecker_block_equals_exact_gauss_newton_block(bias):
    model = dense_network((3, 4, 5, 3), activation="tanh", bias=bias)
    x = inputs(1, 3)
    exact = exact_gauss_newton_blocks(model, x)
    for name, (A, G) in factors(model, x, curvature="gauss_newton", gauss_newton_samples=None).items():
        np.testing.assert_allclose(np.kron(G, A), exact[name], err_msg=name, **EXACT)


def test_batch_kronecker_error_of_a_nonlinear_network():
    """Factors are the brute-force averages; the output layer's block is exact (J = I for every
    example); the hidden layers' blocks are only approximate, and the error is reported."""
    model = dense_network((3, 4, 5, 3), activation="tanh")
    x = inputs(6, 3)
    exact = exact_gauss_newton_blocks(model, x)
    reference = NumpyDense(model, x)
    errors = {}
    for name, (A, G) in factors(model, x, curvature="gauss_newton", gauss_newton_samples=None).items():
        np.testing.assert_allclose(A, reference.input_factor(name), err_msg=name, **EXACT)
        np.testing.assert_allclose(G, reference.output_factor(name), err_msg=name, **EXACT)
        errors[name] = relative_error(np.kron(G, A), exact[name])
    print("relative Kronecker error ‖G⊗A − GN‖_F/‖GN‖_F, tanh MLP, batch 6:", errors)
    assert errors["top"] < 1e-12
    # Here the factorisation is an approximation: the check above is not vacuous.
    assert all(errors[name] > 1e-3 for name in errors if name != "top")


def test_linear_network_kronecker_blocks_are_exact_for_any_batch():
    model = dense_network((3, 4, 5, 3), activation=None)
    x = inputs(7, 3)
    exact = exact_gauss_newton_blocks(model, x)
    for name, (A, G) in factors(model, x, curvature="gauss_newton", gauss_newton_samples=None).items():
        np.testing.assert_allclose(np.kron(G, A), exact[name], err_msg=name, **EXACT)


# ------------------------------------------------------------------------------ Conv2D

CONV_INPUT = (6, 5, 2)  # odd/even sizes: 'same' pads (0, 1) rows and (1, 1) columns at stride 2
KERNEL, STRIDE, CONV_CHANNELS, CLASSES = 3, 2, 3, 2


def conv_network(padding, bias):
    return keras.Sequential([
        keras.Input(CONV_INPUT, dtype="float64"),
        keras.layers.Conv2D(CONV_CHANNELS, KERNEL, strides=STRIDE, padding=padding, activation="relu",
                            use_bias=bias, name="conv", kernel_initializer=seeded(1),
                            bias_initializer=seeded(2), dtype="float64"),
        keras.layers.Flatten(dtype="float64"),
        keras.layers.Dense(CLASSES, name="top", kernel_initializer=seeded(3),
                           bias_initializer=seeded(4), dtype="float64"),
    ])


def numpy_patches(x, size, stride, padding):
    """[B, T, size·size·C] input patches, locations row-major, each patch in (row, col, channel)
    order, with TensorFlow's 'same' padding: total max((out−1)·stride + size − in, 0), the
    smaller half before."""
    batch, height, width, channels = x.shape
    if padding == "same":
        out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
        pad_h = max((out_h - 1) * stride + size - height, 0)
        pad_w = max((out_w - 1) * stride + size - width, 0)
    else:
        out_h, out_w = (height - size) // stride + 1, (width - size) // stride + 1
        pad_h = pad_w = 0
    padded = np.zeros((batch, height + pad_h, width + pad_w, channels))
    padded[:, pad_h // 2:pad_h // 2 + height, pad_w // 2:pad_w // 2 + width] = x
    patches = []
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, i * stride:i * stride + size, j * stride:j * stride + size, :]
            patches.append(window.reshape(batch, -1))
    return np.stack(patches, axis=1), (out_h, out_w)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_factors_equal_explicit_patch_computation(padding, bias):
    model = conv_network(padding, bias)
    conv, top = model.get_layer("conv"), model.get_layer("top")
    x = np.random.default_rng(0).standard_normal((3, *CONV_INPUT))
    batch = x.shape[0]
    patches, (out_h, out_w) = numpy_patches(x, KERNEL, STRIDE, padding)
    locations = out_h * out_w
    kernel = conv.kernel.numpy().reshape(-1, CONV_CHANNELS)  # rows in (row, col, channel) order
    preactivations = patches @ kernel + (conv.bias.numpy() if bias else 0.0)  # [B, T, C]

    # The layout is right: patches · kernel matrix is TensorFlow's convolution.
    convolution = tf.nn.conv2d(x, conv.kernel, STRIDE, padding.upper()).numpy()
    if bias:
        convolution = convolution + conv.bias.numpy()
    np.testing.assert_allclose(preactivations, convolution.reshape(batch, locations, CONV_CHANNELS),
                               **EXACT)

    rows = homogeneous(patches, bias).reshape(batch * locations, -1)
    A_expected = rows.T @ rows / (batch * locations)
    # z_k = Σ_{t,c} relu(s_tc) · W_top[t·C + c, k] + b_k (Flatten is row-major over t, c), so
    # ∂z_k/∂s_tc = 1[s_tc > 0] · W_top[t·C + c, k].
    top_kernel = top.kernel.numpy().reshape(locations, CONV_CHANNELS, CLASSES)
    jacobian = (preactivations > 0)[:, None, :, :] * np.transpose(top_kernel, (2, 0, 1))[None]
    G_expected = np.zeros((CONV_CHANNELS, CONV_CHANNELS))
    for b in range(batch):
        for k in range(CLASSES):
            for t in range(locations):
                G_expected += np.outer(jacobian[b, k, t], jacobian[b, k, t])
    G_expected /= batch

    A, G = factors(model, x, curvature="gauss_newton", gauss_newton_samples=None)["conv"]
    np.testing.assert_allclose(A, A_expected, **EXACT)
    np.testing.assert_allclose(G, G_expected, **EXACT)


# ------------------------------------------------------------------- sampled curvatures

SEEDS = 200


def sample_output_factors(model, x, **kwargs):
    samples = [factors(model, x, seed=seed, **kwargs) for seed in range(SEEDS)]
    return {name: np.stack([s[name][1] for s in samples]) for name in samples[0]}, samples[0]


def assert_converges(samples, expected, name):
    """|mean − expected| ≤ 5 standard errors (per entry, from the per-seed samples)."""
    mean = samples.mean(axis=0)
    standard_error = samples.std(axis=0, ddof=1) / math.sqrt(len(samples))
    assert np.all(np.abs(mean - expected) <= 5 * standard_error + 1e-12), name
    # The bound has power: it is tight compared with the size of the expected factor.
    assert 5 * standard_error.max() < 0.25 * np.abs(expected).max(), name
    assert standard_error.max() > 0, name  # the factors are really sampled


def test_fisher_output_factor_converges_to_its_expectation():
    """u = p − e_ŷ with ŷ ~ softmax(z): E[uuᵀ] = diag(p) − ppᵀ, so E[G] = 1/B Σ J_bᵀ(diag p_b − p_b p_bᵀ)J_b."""
    model = dense_network((3, 4, 3))
    x = inputs(4, 3)
    reference = NumpyDense(model, x)
    p = softmax(reference.logits)
    covariances = np.stack([np.diag(q) - np.outer(q, q) for q in p])
    samples, first = sample_output_factors(model, x, curvature="fisher")
    for name in samples:
        assert_converges(samples[name], reference.output_factor(name, covariances), name)
        np.testing.assert_allclose(first[name][0], reference.input_factor(name), **EXACT)


def test_rademacher_gauss_newton_converges_to_the_exact_gauss_newton():
    model = dense_network((3, 4, 3))
    x = inputs(4, 3)
    reference = NumpyDense(model, x)
    samples, _ = sample_output_factors(model, x, curvature="gauss_newton", gauss_newton_samples=1)
    for name in samples:
        assert_converges(samples[name], reference.output_factor(name), name)


def test_empirical_output_factor_uses_the_true_label_gradients():
    model = dense_network((3, 4, 3))
    x = inputs(5, 3)
    labels = np.array([0, 2, 1, 1, 0])
    with tf.GradientTape(persistent=True) as tape:
        a, preactivations = tf.constant(x), []
        for layer in model.layers:
            s = tf.matmul(a, layer.kernel) + layer.bias
            preactivations.append(s)
            a = layer.activation(s)
        losses = keras.losses.sparse_categorical_crossentropy(labels, a, from_logits=True)
    actual = factors(model, x, y=labels, curvature="empirical")
    for layer, s in zip(model.layers, preactivations):
        jacobian = tape.jacobian(losses, s).numpy()  # [B, B, d]: ∂ℓ_b/∂s_b' is 0 for b' ≠ b
        per_example = np.stack([jacobian[b, b] for b in range(len(x))])
        expected = per_example.T @ per_example / len(x)
        np.testing.assert_allclose(actual[layer.name][1], expected, **EXACT)
    del tape


def test_empirical_needs_labels():
    with pytest.raises(ValueError, match="labels"):
        kronecker_factors(dense_network(), inputs(2, 3), curvature="empirical")


# ------------------------------------------------------------------------------ inverses


def random_spd(dimension, seed, scale=1.0):
    factor = np.random.default_rng(seed).standard_normal((dimension, dimension))
    return scale * factor @ factor.T / dimension


def numpy_damped_inverses(A, G, damping):
    """π = sqrt((tr A / dim A) / (tr G / dim G)); (A + π√λ I)⁻¹, (G + √λ/π I)⁻¹."""
    pi = math.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G)))
    root = math.sqrt(damping)
    return (np.linalg.inv(A + pi * root * np.eye(len(A))),
            np.linalg.inv(G + root / pi * np.eye(len(G))), pi)


def test_damped_inverses_and_preconditioned_gradient():
    # λ = 2⁻⁶: tf.cast of a Python float goes through float32, so keep λ exact in float32.
    A, G, damping = random_spd(5, seed=1, scale=3.0), random_spd(3, seed=2, scale=0.2), 2.0**-6
    gradient = np.random.default_rng(3).standard_normal((5, 3))
    A_inverse, G_inverse, pi = numpy_damped_inverses(A, G, damping)
    actual_a, actual_g = (t.numpy() for t in damped_inverses(tf.constant(A), tf.constant(G), damping))
    np.testing.assert_allclose(actual_a, A_inverse, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(actual_g, G_inverse, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(pi_split(tf.constant(A), tf.constant(G))), pi, rtol=1e-12)

    P = precondition(tf.constant(gradient), tf.constant(A_inverse), tf.constant(G_inverse)).numpy()
    np.testing.assert_allclose(P, A_inverse @ gradient @ G_inverse, rtol=1e-12)
    # The same as solving with the damped Kronecker block: vec(P) = (G_λ ⊗ A_λ)⁻¹ vec(∇W̃).
    block = np.kron(np.linalg.inv(G_inverse), np.linalg.inv(A_inverse))
    vec = lambda m: m.reshape(-1, order="F")  # noqa: E731 — column-major vec
    np.testing.assert_allclose(vec(P), np.linalg.solve(block, vec(gradient)), rtol=1e-9)


def test_pi_is_one_when_a_factor_vanishes():
    A = tf.constant(random_spd(4, seed=1))
    assert float(pi_split(A, tf.zeros([3, 3], tf.float64))) == 1.0


def test_kl_clip_scales_to_the_bound_and_is_one_when_slack():
    rng = np.random.default_rng(0)
    gradients = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    directions = [2.0 * g + 0.1 * rng.standard_normal(g.shape) for g in gradients]  # Σ∇ᵀP > 0
    inner = sum(np.sum(g * p) for g, p in zip(gradients, directions))
    learning_rate = 0.125  # exact in float32, like λ above
    as_tensors = lambda arrays: [tf.constant(a) for a in arrays]  # noqa: E731
    tight = learning_rate**2 * inner / 10  # the bound is 10× below the unclipped value
    scale = float(kl_clip_scale(as_tensors(gradients), as_tensors(directions), learning_rate, tight))
    np.testing.assert_allclose(scale, math.sqrt(tight / (learning_rate**2 * inner)), rtol=1e-12)
    assert learning_rate**2 * scale**2 * inner <= tight * (1 + 1e-12)
    slack = learning_rate**2 * inner * 10
    assert float(kl_clip_scale(as_tensors(gradients), as_tensors(directions), learning_rate, slack)) == 1.0


# ------------------------------------------------------------------- one K-FAC step

LEARNING_RATE, DAMPING, WEIGHT_DECAY = 0.1, 1e-2, 0.5


def expected_kfac_step(model, x, y, decay_type, kl_clip):
    """Δθ per layer for one K-FAC step from zero momentum, written from the update equations:
    g̃ = ∇W̃ (+ γW̃ for L2), P = A_λ⁻¹ g̃ G_λ⁻¹, ν = min(1, sqrt(c / (η² Σ g̃ᵀP))),
    Δ = −η ν P (− η γ W̃ for decoupled). Factors: exact Gauss-Newton of this batch."""
    reference = NumpyDense(model, x)
    batch, classes = reference.logits.shape
    logit_gradients = 2.0 * (reference.logits - y) / (batch * classes)  # mean squared error
    weights, directions, gradients = {}, {}, {}
    for layer in model.layers:
        name = layer.name
        weights[name] = np.concatenate([layer.kernel.numpy(), layer.bias.numpy()[None]]).astype(np.float64)
        gradient = reference.gradient_matrix(name, logit_gradients)
        if decay_type == "l2":
            gradient = gradient + WEIGHT_DECAY * weights[name]
        A_inverse, G_inverse, _ = numpy_damped_inverses(
            reference.input_factor(name), reference.output_factor(name), DAMPING)
        gradients[name], directions[name] = gradient, A_inverse @ gradient @ G_inverse
    inner = sum(np.sum(gradients[n] * directions[n]) for n in gradients)
    scale = 1.0 if kl_clip is None else min(1.0, math.sqrt(kl_clip / (LEARNING_RATE**2 * inner)))
    steps = {}
    for name in weights:
        steps[name] = -LEARNING_RATE * scale * directions[name]
        if decay_type == "decoupled":
            steps[name] -= LEARNING_RATE * WEIGHT_DECAY * weights[name]
    return steps, scale


def kfac_one_step(decay_type, kl_clip):
    model = dense_network((4, 5, 3), activation="tanh", dtype="float32")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 3)).astype(np.float32)
    optimizer = KFAC(LEARNING_RATE, curvature="gauss_newton", gauss_newton_samples=None,
                     damping=DAMPING, momentum=0.0, cov_every=1, inv_every=1, kl_clip=kl_clip,
                     weight_decay=WEIGHT_DECAY, decay_type=decay_type)
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.attach(model)
    TrainStep(model).install()
    before = {layer.name: np.concatenate([layer.kernel.numpy(), layer.bias.numpy()[None]])
              for layer in model.layers}
    expected = {t: expected_kfac_step(model, x, y, t, kl_clip) for t in ("decoupled", "l2")}
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    actual = {layer.name: np.concatenate([layer.kernel.numpy(), layer.bias.numpy()[None]])
              - before[layer.name] for layer in model.layers}
    return actual, expected


@pytest.mark.parametrize("decay_type, kl_clip", [
    ("decoupled", None), ("l2", None), ("decoupled", 1e-6), ("l2", 1e-6),
])
def test_one_kfac_step_matches_the_update_equations(decay_type, kl_clip):
    actual, expected = kfac_one_step(decay_type, kl_clip)
    steps, scale = expected[decay_type]
    if kl_clip is not None:
        assert scale < 0.5  # the clip is active
    other_type = "l2" if decay_type == "decoupled" else "decoupled"
    for name, step in steps.items():
        # float32 weights (ulp ≈ 6e-8 at |θ| ≈ 0.7) and float32 eigendecompositions: measured
        # errors are ~1e-6 of the step's largest entry (~5e-5 when the KL clip shrinks the
        # step 10³×); 1e-3 leaves a wide margin and is still far below the next check.
        tolerance = 1e-3 * np.abs(step).max()
        np.testing.assert_allclose(actual[name], step, rtol=0, atol=tolerance, err_msg=name)
        # The other placement of the decay term is far outside that tolerance.
        assert np.abs(actual[name] - expected[other_type][0][name]).max() > 20 * tolerance, name


# --------------------------------------------------------------- unsupported layers


def test_channels_first_conv_is_rejected_by_capture_and_left_out_by_kfac():
    layer = keras.layers.Conv2D(2, 3, data_format="channels_first", name="conv")
    with pytest.raises(UnsupportedLayerError, match="channels_last"):
        LayerCapture([layer])
    model = keras.Sequential([keras.Input((2, 6, 6)), layer, keras.layers.Flatten(),
                              keras.layers.Dense(2, name="top")])
    supported, others = split_layers(model)
    assert [l.name for l in supported] == ["top"] and [l.name for l in others] == ["conv"]
    model.compile(optimizer=KFAC(), loss="mse")
    with pytest.warns(UserWarning, match="conv/kernel"):
        model.optimizer.attach(model)


def test_lstm_variables_are_reported_and_not_preconditioned():
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.LSTM(3, name="lstm"),
                              keras.layers.Dense(2, name="top")])
    model.compile(optimizer=KFAC(), loss="mse")
    with pytest.warns(UserWarning, match="lstm"):
        model.optimizer.attach(model)
    assert model.optimizer.layer_names == ["top"]


def test_model_without_supported_layers_raises():
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.LSTM(3, name="lstm")])
    model.compile(optimizer=KFAC(), loss="mse")
    with pytest.raises(ValueError, match="no Dense or Conv2D"):
        model.optimizer.attach(model)
    with pytest.raises(ValueError, match="no Dense or Conv2D"):
        kronecker_factors(model, np.zeros((1, 5, 2), np.float32))


def test_softmax_output_is_rejected_at_attach():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2, activation="softmax", name="top")])
    model.compile(optimizer=KFAC(), loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="logits"):
        model.optimizer.attach(model)


def test_shared_layer_is_rejected():
    inputs_ = keras.Input((3,))
    shared = keras.layers.Dense(3, name="shared")
    model = keras.Model(inputs_, keras.layers.Dense(2, name="top")(shared(shared(inputs_))))
    with pytest.raises(UnsupportedLayerError, match="twice"):
        kronecker_factors(model, np.zeros((1, 3), np.float32))


@pytest.mark.parametrize("padding, strides, use_bias", [("same", 1, True), ("valid", 2, False),
                                                         ("same", 2, True)])
def test_conv_diagonal_fisher_equals_the_per_location_patch_formula(padding, strides, use_bias):
    # diag F ≈ 1/B Σ_{b,t} (ã_bt∘ã_bt)(g_bt∘g_bt)ᵀ from explicit patches (their layout is
    # checked against numpy loops above) vs. the Conv2DBackpropFilter shortcut.
    from tfwd.curvature.diagonal import diagonal_fisher

    layer = keras.layers.Conv2D(4, 3, strides=strides, padding=padding, use_bias=use_bias)
    x = tf.random.stateless_normal([5, 9, 8, 3], seed=[1, 2], dtype=tf.float32)
    s = layer(x)
    g = tf.random.stateless_normal(s.shape, seed=[3, 4], dtype=tf.float32)
    block = KroneckerBlock.for_layer(layer)
    rows = block.input_rows(x).numpy().astype(np.float64)
    squared_g = (g.numpy().astype(np.float64) ** 2).reshape(5, -1, 4)
    expected = np.einsum("btj,btk->jk", rows**2, squared_g) / 5
    np.testing.assert_allclose(diagonal_fisher(block, x, g).numpy(), expected, rtol=1e-5)
