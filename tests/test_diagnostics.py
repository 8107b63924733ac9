"""Diagnostics against closed forms (paper 000 lemmas 1-2, theorem 1, eq. 13) and brute force.

Dense references: ``tape.jacobian`` of tiny models, per-example gradients one example at a
time, the full Hessian with numpy ``eigvalsh``. Stochastic estimators are checked for
unbiasedness within 4 of their own standard errors (seeded, so deterministic).
"""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfwd.diagnostics as diagnostics
from tfwd.diagnostics.common import mean_loss, per_example_loss
from tfwd.diagnostics.effective_damping import kronecker_norm
from tfwd.diagnostics.temperature import temperature_nll, temperature_nll_derivative
from tfwd.models import GhostBatchNormalization

NUM_CLASSES = 3


def _glorot(seed):
    return keras.initializers.GlorotUniform(seed=seed)


def _bias(seed):
    return keras.initializers.RandomNormal(stddev=0.3, seed=seed)


def relu_network(use_bias=False, activation="relu"):
    """Conv2D -> act -> Flatten -> Dense -> act -> Dense: n = 3 weight layers."""
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(2, 3, use_bias=use_bias, kernel_initializer=_glorot(1),
                            bias_initializer=_bias(11), name="conv_1")(inputs)
    h = keras.layers.Activation(activation)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(5, use_bias=use_bias, kernel_initializer=_glorot(2),
                           bias_initializer=_bias(12), name="dense_1")(h)
    h = keras.layers.Activation(activation)(h)
    outputs = keras.layers.Dense(NUM_CLASSES, use_bias=use_bias, kernel_initializer=_glorot(3),
                                 bias_initializer=_bias(13), name="top")(h)
    return keras.Model(inputs, outputs)


def mlp(sizes=(4, 5), activation="tanh", use_bias=True):
    layers = [keras.Input((sizes[0],))]
    for k, width in enumerate(sizes[1:]):
        layers += [keras.layers.Dense(width, use_bias=use_bias, kernel_initializer=_glorot(k),
                                      bias_initializer=_bias(10 + k), name=f"dense_{k + 1}"),
                   keras.layers.Activation(activation)]
    layers.append(keras.layers.Dense(NUM_CLASSES, use_bias=use_bias, kernel_initializer=_glorot(9),
                                     bias_initializer=_bias(19), name="top"))
    return keras.Sequential(layers)


def linear_network(widths=(4, 6, 5)):
    """Bias-free, activation-free: n = len(widths) weight layers."""
    layers = [keras.Input((widths[0],))]
    for k, width in enumerate(widths[1:] + (NUM_CLASSES,)):
        layers.append(keras.layers.Dense(width, use_bias=False, kernel_initializer=_glorot(k)))
    return keras.Sequential(layers)


def bn_network(ghost=False):
    """Conv -> BN(affine) -> ReLU -> Dense -> BN -> ReLU -> top, with random BN statistics."""
    inputs = keras.Input((5, 5, 2))
    h = keras.layers.Conv2D(3, 3, use_bias=False, kernel_initializer=_glorot(1),
                            name="conv_1")(inputs)
    h = keras.layers.BatchNormalization(center=True, scale=True, name="bn_1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(4, use_bias=True, kernel_initializer=_glorot(2),
                           bias_initializer=_bias(3), name="dense_1")(h)
    h = (GhostBatchNormalization(2, name="bn_2") if ghost
         else keras.layers.BatchNormalization(center=False, scale=False, name="bn_2"))(h)
    h = keras.layers.ReLU()(h)
    outputs = keras.layers.Dense(NUM_CLASSES, kernel_initializer=_glorot(4), name="top")(h)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if hasattr(layer, "moving_mean"):
            size = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(size=size).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=size).astype("float32"))
            if getattr(layer, "gamma", None) is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, size=size).astype("float32"))
                layer.beta.assign(rng.normal(size=size).astype("float32"))
    return model


def images(count, shape=(4, 4, 1), seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(count, *shape)), tf.float32)


def labels(count, seed=1):
    return tf.constant(np.random.default_rng(seed).integers(0, NUM_CLASSES, count), tf.int32)


def dense_per_example_gradients(model, x, y):
    """[B, d] by one backward pass per example (independent of the vectorized code)."""
    rows = []
    for i in range(x.shape[0]):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(per_example_loss(model(x[i:i + 1], training=False), y[i:i + 1]))
        rows.append(np.concatenate([g.numpy().ravel() for g in
                                    tape.gradient(loss, model.trainable_variables)]))
    return np.stack(rows).astype(np.float64)


# --- Lemma 1, lemma 2, theorem 1 (paper 000 §4.2) -------------------------------------------

def test_lemma1_bias_free_relu_network():
    model, x = relu_network(), images(6)
    f = model(x, training=False).numpy()
    jacobians = diagnostics.input_jacobians(model, x).numpy()  # [B, K, D]
    np.testing.assert_allclose(
        np.einsum("bkd,bd->bk", jacobians, x.numpy().reshape(6, -1)), f, rtol=1e-4, atol=1e-5)
    n = 3
    np.testing.assert_allclose(
        diagnostics.parameter_output_jvp(model, x).numpy(), n * f, rtol=1e-4, atol=1e-5)


def test_lemma2_kfac_gauss_newton_norm_of_linear_network():
    model = linear_network()
    x = tf.constant(np.random.default_rng(2).normal(size=(16, 4)), tf.float32)
    mean_output_norm = np.mean(np.sum(model(x).numpy() ** 2, axis=1))
    norms = diagnostics.kfac_gauss_newton_norms(model, x)
    n = 3
    np.testing.assert_allclose(norms["total"], n * mean_output_norm, rtol=1e-4)
    for value in norms["layers"].values():  # every layer contributes E‖f(x)‖²
        np.testing.assert_allclose(value, mean_output_norm, rtol=1e-4)


def test_theorem1_whitened_inputs_give_n_times_jacobian_norm():
    raw = np.random.default_rng(3).normal(size=(32, 4)) @ np.array(
        [[2.0, 0.3, 0, 0], [0, 1.0, 0.5, 0], [0, 0, 0.7, 0.2], [0.1, 0, 0, 1.5]])
    centered = raw - raw.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centered.T @ centered / len(raw))
    whitened = centered @ eigenvectors @ np.diag(eigenvalues**-0.5) @ eigenvectors.T
    np.testing.assert_allclose(whitened.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(whitened.T @ whitened / len(raw), np.eye(4), atol=1e-12)
    model, x = linear_network(), tf.constant(whitened, tf.float32)
    n = 3
    jacobian = diagnostics.jacobian_norm(model, x)  # ‖J_x‖ is the same for every x
    np.testing.assert_allclose(
        diagnostics.kfac_gauss_newton_norms(model, x)["total"], n * jacobian.mean_squared,
        rtol=1e-4)


# --- Jacobian and Gauss-Newton norms against dense Jacobians -----------------------------------

def test_jacobian_norm_exact_matches_dense_jacobian():
    model, x = relu_network(use_bias=True), images(5)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = model(x, training=False)
    full = tape.jacobian(z, x).numpy().reshape(5, NUM_CLASSES, 5, -1)  # [B, K, B, D]
    per_example = np.array([np.sum(full[i, :, i] ** 2) for i in range(5)])
    result = diagnostics.jacobian_norm(model, x)
    np.testing.assert_allclose(result.mean_squared, per_example.mean(), rtol=1e-5)
    assert result.standard_error == 0.0
    assert result.as_dict()["jacobian_norm"] == pytest.approx(np.sqrt(per_example.mean()))


@pytest.mark.parametrize("projection", ["rademacher", "normal"])
def test_jacobian_projection_estimate_is_unbiased(projection):
    model, x = relu_network(use_bias=True), images(8)
    exact = diagnostics.jacobian_norm(model, x).mean_squared
    estimate = diagnostics.jacobian_norm(
        model, x, num_projections=32, seed=5, projection=projection)
    assert 0 < estimate.standard_error < 0.5 * exact
    assert abs(estimate.mean_squared - exact) <= 4 * estimate.standard_error


def test_gauss_newton_norm_matches_dense_parameter_jacobian():
    model, x = relu_network(use_bias=True, activation="tanh"), images(4)
    with tf.GradientTape() as tape:
        z = model(x, training=False)
    blocks = tape.jacobian(z, model.trainable_variables)
    jacobian = np.concatenate([b.numpy().reshape(4, NUM_CLASSES, -1) for b in blocks], axis=2)
    gauss_newton = np.einsum("bkp,bkq->pq", jacobian, jacobian) / 4
    theta = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    np.testing.assert_allclose(
        diagnostics.gauss_newton_norm(model, x), theta @ gauss_newton @ theta, rtol=1e-4)


# --- Fisher norms, gradient variance (paper 002 §4.1) ------------------------------------------

def test_fisher_norms_match_dense_empirical_fisher():
    model, x, y = mlp((4, 5)), images(10, (4,)), labels(10)
    gradients = dense_per_example_gradients(model, x, y)
    fisher = gradients.T @ gradients / len(gradients)  # d×d, fine for d = 43
    full, diagonal = np.linalg.norm(fisher), np.linalg.norm(np.diag(fisher))
    exact = diagnostics.empirical_fisher_norms_exact(model, x, y)
    np.testing.assert_allclose([exact.full, exact.diagonal], [full, diagonal], rtol=1e-4)
    assert full > diagonal
    every_column = diagnostics.empirical_fisher_norms_estimate(
        model, x, y, num_columns=10, chunk_size=3)
    np.testing.assert_allclose(
        [every_column.full, every_column.diagonal], [full, diagonal], rtol=1e-4)
    assert every_column.full_squared_standard_error == pytest.approx(0.0, abs=1e-12)
    sampled = diagnostics.empirical_fisher_norms_estimate(model, x, y, num_columns=4, seed=3)
    assert sampled.full_squared_standard_error > 0
    assert abs(sampled.full_squared - full**2) <= 4 * sampled.full_squared_standard_error
    np.testing.assert_allclose(sampled.diagonal, diagonal, rtol=1e-4)


def test_fisher_norm_estimate_survives_heavy_tailed_gradients():
    # As on a trained network: two examples (large inputs, labels the model gets wrong) carry
    # almost all of ‖F‖_F. Uniformly drawn columns miss both in most seeds; norm-weighted
    # columns must stay unbiased and close in every seed.
    model, count, columns = mlp((4, 5), activation="relu"), 40, 8
    x = images(count, (4,)).numpy()
    x[:2] *= 25.0
    y = labels(count).numpy()
    y[:2] = (np.argmax(model(x[:2], training=False), axis=1) + 1) % NUM_CLASSES
    x, y = tf.constant(x), tf.constant(y)
    gradients = dense_per_example_gradients(model, x, y)
    fisher = gradients.T @ gradients / count
    full_squared = np.linalg.norm(fisher) ** 2
    gram = gradients @ gradients.T
    heavy_share = (np.sum(gram[:, :2] ** 2) / np.sum(gram**2))
    assert heavy_share > 0.9  # the setting is as heavy-tailed as intended
    estimates = np.array([diagnostics.empirical_fisher_norms_estimate(
        model, x, y, num_columns=columns, seed=seed).full_squared for seed in range(20)])
    assert np.all(np.abs(estimates / full_squared - 1) < 0.5)
    assert abs(estimates.mean() - full_squared) <= 4 * estimates.std(ddof=1) / np.sqrt(20)


def test_gradient_variance_matches_sampling_formula():
    model, pool, minibatch, draws = mlp((4, 5)), 24, 6, 300
    x, y = images(pool, (4,)), labels(pool)
    gradients = dense_per_example_gradients(model, x, y)
    # Var of the mean of M draws without replacement from N: (N − M)/(N − 1) · σ²/M.
    expected_per_parameter = (pool - minibatch) / (pool - 1) * gradients.var(axis=0) / minibatch
    sizes = [v.numpy().size for v in model.trainable_variables]
    bounds = np.cumsum([0] + sizes)
    expected = {name: expected_per_parameter[bounds[2 * k]:bounds[2 * k + 2]].mean()
                for k, name in enumerate(["dense_1", "top"])}
    measured = diagnostics.gradient_variance(
        model, x, y, minibatch_size=minibatch, num_batches=draws, seed=4)
    tolerance = 4 * np.sqrt(2 / (draws - 1))  # relative sd of a sample variance (Gaussian)
    for name in expected:
        assert measured[name] == pytest.approx(expected[name], rel=tolerance)


# --- Hessian eigenvalue, BN folding, temperature (paper 002 §4.2) -----------------------------

def dense_hessian(model, x, y, temperature):
    variables = model.trainable_variables
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = mean_loss(model, x, y, temperature)
        gradient = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, variables)], 0)
    hessian = np.concatenate(
        [h.numpy().reshape(gradient.shape[0], -1) for h in outer.jacobian(gradient, variables)], 1)
    return np.linalg.eigvalsh(0.5 * (hessian + hessian.T))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_largest_hessian_eigenvalue_matches_eigvalsh(temperature):
    model, x, y = mlp((4, 4), activation="tanh"), images(12, (4,)), labels(12)
    eigenvalues = dense_hessian(model, x, y, temperature)
    report = diagnostics.hessian_eigenvalue_report(
        model, x, y, temperature=temperature, num_iterations=300, tolerance=1e-7)
    assert report["eigenvalue"] == pytest.approx(eigenvalues.max(), rel=1e-3)
    assert report["relative_change"] <= 1e-7


def test_largest_hessian_eigenvalue_is_the_maximum_when_a_negative_one_dominates():
    # z = V x + [−(wᵀx)², 0] at w = 0 with every label 1: the w-block of H is −2·E[p₀ x xᵀ]
    # (negative, dominant), the V-block the positive Gauss-Newton term (smaller). Plain power
    # iteration would return the negative eigenvalue instead of λ_max.
    inputs = keras.Input((3,))
    linear = keras.layers.Dense(2, kernel_initializer=_glorot(4), name="linear")(inputs)
    h = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="w")(inputs)
    square = keras.layers.Lambda(lambda t: keras.ops.concatenate([-t * t, 0 * t], -1))(h)
    model = keras.Model(inputs, keras.layers.Add()([linear, square]))
    x, y = images(10, (3,)), tf.ones([10], tf.int32)
    eigenvalues = dense_hessian(model, x, y, 1.0)
    assert -eigenvalues.min() > 1.2 * eigenvalues.max() > 0  # the case this test is about
    estimate = diagnostics.largest_hessian_eigenvalue(
        model, x, y, num_iterations=2000, tolerance=1e-9)
    assert estimate == pytest.approx(eigenvalues.max(), rel=1e-3)


@pytest.mark.parametrize("ghost", [False, True])
def test_fold_batch_norm_keeps_inference_predictions(ghost):
    model, x = bn_network(ghost), images(6, (5, 5, 2))
    folded = diagnostics.fold_batch_norm(model)
    np.testing.assert_allclose(folded(x, training=False), model(x, training=False),
                               rtol=1e-4, atol=1e-5)
    assert not any(hasattr(layer, "moving_mean") for layer in folded.layers)
    assert sorted(diagnostics.batch_normalized_layers(model)) == ["conv_1", "dense_1"]


def test_fit_temperature_zeroes_the_nll_derivative():
    rng = np.random.default_rng(6)
    logits = 4.0 * rng.normal(size=(200, 5))  # over-confident random logits
    y = rng.integers(0, 5, 200)
    temperature = diagnostics.fit_temperature(logits, y)
    assert temperature > 1.0
    assert abs(temperature_nll_derivative(logits, y, 1 / temperature)) < 1e-8
    for other in (0.9 * temperature, 1.1 * temperature):
        assert temperature_nll(logits, y, temperature) < temperature_nll(logits, y, other)


# --- Mechanisms I and III: weight norms of batch-normalized layers ----------------------------

def test_fit_temperature_refuses_when_no_temperature_minimizes_the_nll():
    logits = np.array([[4.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
    with pytest.raises(diagnostics.UndefinedDiagnostic, match="0 of 2 .* misclassified"):
        diagnostics.fit_temperature(logits, [0, 1])  # all right: NLL → 0 as T → 0
    with pytest.raises(diagnostics.UndefinedDiagnostic, match="below the mean class"):
        diagnostics.fit_temperature(logits, [2, 0])  # worse than uniform: T* = ∞


def test_undefined_diagnostic_is_recorded_without_stopping_training(tmp_path):
    def measure(model):
        raise diagnostics.UndefinedDiagnostic("no temperature")

    callback = diagnostics.DiagnosticCallback("hessian_eigenvalue", measure,
                                              log_dir=str(tmp_path))
    x, y = images(8, (4,)), labels(8)
    with pytest.warns(UserWarning, match="no temperature"):
        compiled(mlp((4, 5))).fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert callback.history == {1: {"undefined": "no temperature"},
                                2: {"undefined": "no temperature"}}


def test_rescaling_a_normalized_layer_keeps_predictions():
    model, x = bn_network(), images(6, (5, 5, 2))
    before = model(x, training=False).numpy()
    pairs = diagnostics.batch_normalized_layers(model)
    for name, target in (("conv_1", 3.7), ("dense_1", 0.2)):
        diagnostics.rescale_normalized_layer(pairs[name], target)
        assert diagnostics.weight_norms(model, [name])[name] == pytest.approx(target, rel=1e-5)
    np.testing.assert_allclose(model(x, training=False), before, rtol=1e-4, atol=1e-5)


def test_normalized_curvature_is_scale_invariant_and_damping_scales():
    """Eq. 13: C_ŵ = ‖w‖²·C_w does not change when w is rescaled; λ‖w‖² grows as ‖w‖²."""
    model, x = bn_network(), images(8, (5, 5, 2))
    pair = diagnostics.batch_normalized_layers(model)["conv_1"]
    curvature = {c: diagnostics.normalized_curvature_norms(model, x, curvature=c, seed=2)
                 for c in ("fisher", "gauss_newton")}
    damping = diagnostics.effective_damping(model, 1e-3)
    factor = diagnostics.rescale_normalized_layer(pair, 5.0 * float(tf.norm(pair.linear.kernel)))
    for c, before in curvature.items():
        after = diagnostics.normalized_curvature_norms(model, x, curvature=c, seed=2)
        np.testing.assert_allclose(after["conv_1"], before["conv_1"], rtol=1e-3)
    assert diagnostics.effective_damping(model, 1e-3)["conv_1"] == pytest.approx(
        factor**2 * damping["conv_1"], rel=1e-5)


def test_kronecker_norm_matches_dense_kronecker_product():
    rng = np.random.default_rng(7)
    a, g = rng.normal(size=(4, 4)), rng.normal(size=(3, 3))
    A, G = a @ a.T, g @ g.T
    dense = np.kron(G, A)
    assert kronecker_norm(tf.constant(A), tf.constant(G)) == pytest.approx(np.linalg.norm(dense))
    assert kronecker_norm(tf.constant(A), tf.constant(G), "spectral") == pytest.approx(
        np.linalg.norm(dense, 2))


# --- Callbacks ---------------------------------------------------------------------------------

def compiled(model, learning_rate=0.05):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_every_diagnostic_callback_fills_its_history(tmp_path):
    keras.utils.set_random_seed(0)
    model = compiled(bn_network())
    x, y = images(16, (5, 5, 2)), labels(16)
    callbacks = diagnostics.build_callbacks(
        diagnostics.DIAGNOSTICS, train_batch=(x, y),
        test_batch=(images(8, (5, 5, 2), 9), labels(8, 9)),
        log_dir=str(tmp_path / "logs"), seed=0, json_dir=str(tmp_path / "json"),
        gradient_variance_batch_size=4, gradient_variance_batches=3, hessian_iterations=3)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
    for callback in callbacks:
        assert sorted(callback.history) == [1, 2], callback.diagnostic_name
        json.dumps(callback.history)
        assert os.path.exists(tmp_path / "json" / f"{callback.diagnostic_name}.json")
    history = {cb.diagnostic_name: cb.history[2] for cb in callbacks}
    assert sorted(history["effective_lr"]) == ["conv_1", "dense_1"]
    kernel = model.get_layer("conv_1").kernel.numpy()
    assert history["effective_lr"]["conv_1"] == pytest.approx(0.05 / np.sum(kernel**2), rel=1e-5)
    assert history["weight_norms"]["top"] == pytest.approx(
        np.linalg.norm(model.get_layer("top").kernel.numpy()), rel=1e-5)
    assert history["jacobian_norm"]["standard_error"] == 0.0  # "auto" is exact at this size
    assert set(history["effective_damping"]["conv_1"]) == {
        "weight_norm", "effective_damping", "fisher_norm", "gauss_newton_norm"}
    assert os.listdir(tmp_path / "logs" / "diagnostics")


def test_build_callbacks_rejects_unknown_names_and_unsupported_models():
    batch = (images(4, (4,)), labels(4))
    with pytest.raises(ValueError, match="effective_lr"):
        diagnostics.build_callbacks(["effective_learning_rate"], train_batch=batch)
    with pytest.raises(ValueError, match="test_batch"):
        diagnostics.build_callbacks(["generalization_gap"], train_batch=batch)
    (callback,) = diagnostics.build_callbacks(["effective_lr"], train_batch=batch)
    with pytest.raises(ValueError, match="batch norm"):
        callback.set_model(compiled(mlp((4, 5))))


def test_weight_norm_transfer_reproduces_the_reference_norms(tmp_path):
    x, y = images(16, (5, 5, 2)), labels(16)
    keras.utils.set_random_seed(1)
    (recorder,) = diagnostics.build_callbacks(
        ["weight_norms"], train_batch=(x, y), json_dir=str(tmp_path))
    compiled(bn_network(), learning_rate=0.2).fit(
        x, y, batch_size=8, epochs=2, verbose=0, callbacks=[recorder])
    transfer = diagnostics.WeightNormTransfer(str(tmp_path / "weight_norms.json"), layers="conv")
    norms = diagnostics.build_callbacks(["weight_norms"], train_batch=(x, y))[0]
    compiled(bn_network(), learning_rate=0.01).fit(
        x, y, batch_size=8, epochs=2, verbose=0, callbacks=[transfer, norms])
    for epoch in (1, 2):
        assert norms.history[epoch]["conv_1"] == pytest.approx(
            recorder.history[epoch]["conv_1"], rel=1e-5)
        assert norms.history[epoch]["dense_1"] != pytest.approx(
            recorder.history[epoch]["dense_1"], rel=1e-5)
    with pytest.raises(ValueError, match="not followed by batch norm"):
        diagnostics.WeightNormTransfer(recorder.history, layers=["top"]).set_model(bn_network())


def test_train_config_sets_the_diagnostic_period_and_fits_the_temperature_on_the_test_set(
        tmp_path):
    import tfwd.data
    from tfwd.train import TrainConfig

    config = TrainConfig.from_flat(dataset="mnist", model="mlp", model_kwargs={"depth": 1, "width": 32},
                                   learning_rate=0.1, epochs=3, batch_size=512, seed=0, verbose=0,
                                   diagnostics=["weight_norms", "hessian_eigenvalue"],
                                   diagnostics_every_epochs=2, diagnostics_sample_size=64)
    recorded = json.loads(json.dumps(
        diagnostics.train_with_diagnostics(config, str(tmp_path))["diagnostics"]))
    assert all(sorted(history) == ["2", "3"] for history in recorded.values())
    # Independently: the final model's logits on all 10,000 test examples.
    model = keras.models.load_model(str(tmp_path / "model.keras"))
    test = tfwd.data.input_pipeline("mnist", "test", batch_size=1000, seed=0, training=False)
    logits, labels_ = zip(*[(model(x, training=False).numpy(), y.numpy())
                            for x, y in test.epoch(0)])
    expected = diagnostics.fit_temperature(np.concatenate(logits), np.concatenate(labels_))
    final = recorded["hessian_eigenvalue"]["3"]
    assert final["temperature"] == pytest.approx(expected, rel=1e-4)
    assert final["eigenvalue"] > 0
