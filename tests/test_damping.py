"""Adaptive (Levenberg–Marquardt) damping of K-FAC against reduction ratios computed by hand.

The references are numpy closed forms on linear models, where the Gauss-Newton matrix is
explicit: squared error (h quadratic, GN = Hessian, so ρ = 1 for any step) and softmax
regression (z = Wᵀx + b: Jδ = δWᵀx + δb, H_L = diag(p) − ppᵀ per example, mean over the
batch). Each step's δ is read off the weights before and after the step, ρ is computed in
numpy and the rule λ ← λ/ω (ρ < 1/4), λ·ω (ρ > 3/4) is applied by hand.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfwd.optimizers
from tfwd.optimizers.damping import DampingAdaptation, adapted_damping, reduction_ratio
from tfwd.train import TrainStep

INPUTS, CLASSES, BATCH = 4, 3, 16
DAMPING = 1e-2


def linear_model(loss, adaptation, learning_rate, outputs=CLASSES, seed=0, **kfac):
    model = keras.Sequential([keras.Input((INPUTS,)), keras.layers.Dense(
        outputs, name="top", kernel_initializer=keras.initializers.GlorotUniform(seed),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=seed + 1))])
    settings = dict(damping=DAMPING, momentum=0.5, cov_every=1, inv_every=1,
                    curvature="gauss_newton", gauss_newton_samples=None,
                    adaptive_damping=adaptation)
    settings.update(kfac)
    optimizer = tfwd.optimizers.KFAC(learning_rate, **settings)
    model.compile(optimizer=optimizer, loss=loss)
    optimizer.attach(model)
    TrainStep(model).install()
    return model, optimizer


def batch(seed=0, outputs=CLASSES, regression=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, INPUTS)).astype(np.float32)
    if regression:
        return x, rng.standard_normal((BATCH, outputs)).astype(np.float32)
    return x, (np.arange(BATCH) % CLASSES).astype(np.int32)


def squared_error_terms(x, y, before, after):
    """(actual, predicted) of Keras's MSE = 1/(B·K) Σ (z − y)², exactly quadratic."""
    (w0, b0), (w1, b1) = before, after
    x, y = x.astype(np.float64), y.astype(np.float64)

    def loss(w, b):
        return np.mean((x @ w + b - y) ** 2)

    residual = x @ w0 + b0 - y
    output_step = x @ (w1 - w0) + (b1 - b0)
    slope = 2 * np.mean(residual * output_step)
    curvature = 2 * np.mean(output_step**2)  # H_L = 2/(B·K)·I on the stacked outputs
    return loss(w1, b1) - loss(w0, b0), slope + 0.5 * curvature


def softmax_terms(x, y, before, after):
    """(actual, predicted) of the mean softmax cross-entropy of z = xW + b."""
    (w0, b0), (w1, b1) = before, after
    x = x.astype(np.float64)
    onehot = np.eye(CLASSES)[y]

    def loss_and_probabilities(w, b):
        z = x @ w + b
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -np.mean(np.sum(onehot * log_p, axis=1)), np.exp(log_p)

    loss0, p = loss_and_probabilities(w0, b0)
    loss1, _ = loss_and_probabilities(w1, b1)
    output_step = x @ (w1 - w0) + (b1 - b0)  # J δ, [B, K]
    slope = np.mean(np.sum((p - onehot) * output_step, axis=1))
    curvature = np.mean(np.sum(p * output_step**2, axis=1)
                        - np.sum(p * output_step, axis=1) ** 2)
    return loss1 - loss0, slope + 0.5 * curvature


def hand_rule(damping, ratio, adaptation):
    factor = adaptation.decay ** adaptation.interval
    if ratio < 0.25:
        return min(damping / factor, adaptation.maximum)
    if ratio > 0.75:
        return max(damping * factor, adaptation.minimum)
    return damping


def run_and_check(model, optimizer, x, y, terms, adaptation, steps):
    """Train ``steps`` steps; assert each damping step's ρ and λ equal the hand values."""
    damping = DAMPING
    ratios = []
    for step in range(steps):
        before = [w.astype(np.float64) for w in model.get_weights()]
        model.train_on_batch(x, y)
        after = [w.astype(np.float64) for w in model.get_weights()]
        if step % adaptation.interval:
            assert optimizer.damping_variable.numpy() == pytest.approx(damping, rel=1e-6)
            continue
        actual, predicted = terms(x, y, before, after)
        ratio = actual / predicted
        ratios.append(ratio)
        np.testing.assert_allclose(optimizer.reduction_ratio.numpy(), ratio,
                                   rtol=2e-3, atol=2e-4, err_msg=f"step {step}: {actual}, {predicted}")
        damping = hand_rule(damping, ratio, adaptation)
        np.testing.assert_allclose(optimizer.damping_variable.numpy(), damping, rtol=1e-5)
    return ratios


def test_quadratic_loss_has_ratio_one_and_lambda_shrinks_by_omega():
    """Linear least squares: GN is the Hessian, so ρ = 1 and λ_k = λ₀ ω^k on damping steps."""
    adaptation = DampingAdaptation(interval=2, decay=0.9)
    model, optimizer = linear_model(keras.losses.MeanSquaredError(), adaptation, 0.3,
                                    outputs=2)
    x, y = batch(outputs=2, regression=True)
    ratios = run_and_check(model, optimizer, x, y, squared_error_terms, adaptation, steps=6)
    np.testing.assert_allclose(ratios, 1.0, rtol=1e-9)  # the hand values themselves
    np.testing.assert_allclose(optimizer.damping_variable.numpy(),
                               DAMPING * adaptation.factor ** 3, rtol=1e-5)


@pytest.mark.parametrize("learning_rate", [0.05, 3.0, 30.0])
def test_softmax_regression_ratio_and_lambda_match_the_closed_form(learning_rate):
    adaptation = DampingAdaptation(interval=1, decay=0.8)
    model, optimizer = linear_model(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True), adaptation,
        learning_rate)
    x, y = batch()
    run_and_check(model, optimizer, x, y, softmax_terms, adaptation, steps=4)


def test_lambda_rises_when_the_model_is_too_optimistic_and_falls_when_it_is_accurate():
    """Small steps of softmax regression: M is accurate (ρ ≈ 1) and λ falls; huge steps
    overshoot, h falls far less than M predicts (or rises), and λ rises."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = batch()
    for learning_rate, moves in ((0.05, np.less), (300.0, np.greater)):
        model, optimizer = linear_model(loss, DampingAdaptation(interval=1), learning_rate)
        model.train_on_batch(x, y)
        ratio = float(optimizer.reduction_ratio.numpy())
        assert (ratio > 0.75) if moves is np.less else (ratio < 0.25)
        assert moves(optimizer.damping_variable.numpy(), DAMPING)


def test_the_rule_and_its_special_cases():
    adaptation = DampingAdaptation(interval=2, decay=0.5, minimum=1e-3, maximum=1.0)
    damping = tf.constant(0.1)
    ratios = tf.constant([-np.inf, 0.1, 0.25, 0.5, 0.75, 0.9, np.nan])
    expected = [0.4, 0.4, 0.1, 0.1, 0.1, 0.025, 0.1]  # ω = 0.5² = 0.25
    np.testing.assert_allclose(adapted_damping(damping, ratios, adaptation).numpy(), expected,
                               rtol=1e-6)
    # Bounds: λ/ω and λ·ω are clipped to [minimum, maximum].
    np.testing.assert_allclose(adapted_damping(tf.constant([0.5, 2e-3]), tf.constant([0.0, 1.0]),
                                               adaptation).numpy(), [1.0, 1e-3])
    # ρ: the plain ratio (also for a predicted increase); −∞ for a non-finite loss; NaN for
    # no predicted change.
    actual = tf.constant([-0.5, 0.3, 0.2, np.nan, np.inf, 0.0])
    predicted = tf.constant([-1.0, 0.3, -0.4, -1.0, -1.0, 0.0])
    ratio = reduction_ratio(actual, predicted).numpy()
    np.testing.assert_allclose(ratio[:3], [0.5, 1.0, -0.5], rtol=1e-6)
    assert ratio[3] == -np.inf and ratio[4] == -np.inf and np.isnan(ratio[5])


def test_inverses_use_the_current_lambda():
    """The inverse step of step k uses λ as it was before step k's own adaptation."""
    from tfwd.curvature.inverse import damped_inverses

    adaptation = DampingAdaptation(interval=1, decay=0.5)
    model, optimizer = linear_model(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True), adaptation, 0.05)
    x, y = batch()
    model.train_on_batch(x, y)
    damping_before = optimizer.damping_variable.numpy()
    assert damping_before != DAMPING
    model.train_on_batch(x, y)
    factors = [f.numpy() for f in optimizer.block_factors[0]]
    expected = damped_inverses(tf.constant(factors[0]), tf.constant(factors[1]), damping_before)
    for inverse, reference in zip(optimizer.block_inverses[0], expected):
        np.testing.assert_allclose(inverse.numpy(), reference.numpy(), rtol=1e-4, atol=1e-6)


def test_options_validate_and_round_trip_through_get_config():
    with pytest.raises(ValueError, match="interval"):
        DampingAdaptation(interval=0)
    with pytest.raises(ValueError, match="decay"):
        DampingAdaptation(decay=1.0)
    with pytest.raises(ValueError, match="bounds"):
        DampingAdaptation(minimum=1.0, maximum=0.1)
    with pytest.raises(ValueError, match="outside the adaptation bounds"):
        tfwd.optimizers.KFAC(damping=10.0, adaptive_damping=dict(maximum=1.0))
    optimizer = tfwd.optimizers.KFAC(damping=1e-3, adaptive_damping=DampingAdaptation(3, 0.9))
    config = optimizer.get_config()
    assert config["adaptive_damping"] == dict(interval=3, decay=0.9, minimum=1e-8, maximum=1e2)
    restored = tfwd.optimizers.KFAC.from_config(config)
    assert restored.damping_adaptation == optimizer.damping_adaptation
    assert tfwd.optimizers.KFAC().get_config()["adaptive_damping"] is None


def test_keras_file_resumes_with_the_current_lambda(tmp_path):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model, optimizer = linear_model(loss, DampingAdaptation(interval=1, decay=0.5), 0.05)
    x, y = batch()
    for _ in range(2):
        model.train_on_batch(x, y)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded.optimizer.attach(loaded)
    TrainStep(loaded).install()
    assert loaded.optimizer.damping_variable.numpy() == optimizer.damping_variable.numpy()
    assert loaded.optimizer.damping_variable.numpy() != DAMPING
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    assert loaded.optimizer.damping_variable.numpy() == optimizer.damping_variable.numpy()
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


def hidden_layer_model(seed=0):
    """4 → Dense(6, tanh) → Dense(3): a nonlinear model, so ρ varies from step to step."""
    return keras.Sequential([
        keras.Input((INPUTS,)),
        keras.layers.Dense(6, activation="tanh", name="hidden",
                           kernel_initializer=keras.initializers.GlorotUniform(seed)),
        keras.layers.Dense(CLASSES, name="top",
                           kernel_initializer=keras.initializers.GlorotUniform(seed + 1)),
    ])


def lambda_trajectory(strategy, steps=6):
    with strategy.scope():
        model = hidden_layer_model()
        optimizer = tfwd.optimizers.KFAC(0.5, damping=DAMPING, cov_every=1, inv_every=2,
                                         adaptive_damping=DampingAdaptation(interval=1),
                                         gauss_newton_samples=None)
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        optimizer.attach(model)
        TrainStep(model).install()
    x, y = batch()
    trajectory = []
    for _ in range(steps):
        model.train_on_batch(x, y)
        trajectory.append((float(optimizer.damping_variable.numpy()),
                           float(optimizer.reduction_ratio.numpy())))
    return trajectory, [w.numpy() for w in model.trainable_weights]


def test_two_replicas_follow_the_lambda_trajectory_of_one(two_replicas):
    single, single_weights = lambda_trajectory(tf.distribute.get_strategy())
    mirrored, mirrored_weights = lambda_trajectory(two_replicas)
    assert [d for d, _ in mirrored] == pytest.approx([d for d, _ in single], rel=1e-6)
    np.testing.assert_allclose([r for _, r in mirrored], [r for _, r in single],
                               rtol=1e-3, atol=1e-4)
    assert len({d for d, _ in single}) > 1  # λ did move
    for a, b in zip(single_weights, mirrored_weights):
        np.testing.assert_allclose(b, a, atol=1e-5 * max(np.abs(a).max(), 1.0))


def test_run_config_spells_the_adaptation_defaults_and_build_passes_them_on():
    """TrainConfig repeats DampingAdaptation's defaults (it validates flags before TensorFlow
    is imported); the K-FAC that tfwd.train builds gets the configured rule."""
    import dataclasses

    from tfwd.train.build import make_optimizer
    from tfwd.train.config import TrainConfig

    config = TrainConfig.from_flat(optimizer="kfac_g")
    defaults = DampingAdaptation()
    adaptation = config.optimizer.kfac.adaptive_damping
    assert (adaptation.interval, adaptation.decay, adaptation.min_damping,
            adaptation.max_damping) == dataclasses.astuple(defaults)
    assert make_optimizer(config, 0.01).damping_adaptation is None
    config = config.replace(adaptive_damping=True, damping_interval=3,
                            damping_decay=0.9, min_damping=1e-6, max_damping=1.0)
    assert make_optimizer(config.validate(), 0.01).damping_adaptation == \
        DampingAdaptation(3, 0.9, 1e-6, 1.0)


def test_effective_damping_diagnostic_reads_the_adapted_lambda():
    from tfwd.diagnostics.registry import _current_damping

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model, optimizer = linear_model(loss, DampingAdaptation(interval=1), 0.05)
    model.train_on_batch(*batch())
    assert _current_damping(model, DAMPING) == optimizer.damping_variable.numpy() != DAMPING
    fixed, _ = linear_model(loss, None, 0.05)
    assert _current_damping(fixed, 0.5) == 0.5


def test_a_run_records_lambda_and_rho_each_epoch(tmp_path):
    """results.json and TensorBoard get λ and ρ per epoch. The rule only multiplies λ by
    ω = decay**interval or 1/ω inside its bounds, so λ/λ₀ is an integer power of ω."""
    from tfwd.train import TrainConfig, train

    interval, decay = 5, 0.9
    config = TrainConfig.from_flat(
        dataset="mnist", model="mlp", model_kwargs={"depth": 1, "width": 16}, batch_size=1000,
        epochs=2, optimizer="kfac_g", learning_rate=0.05, damping=1e-2, adaptive_damping=True,
        damping_interval=interval, damping_decay=decay, kfac_init_batches=1, verbose=0, seed=0)
    records = train(config, str(tmp_path))["epochs"]
    omega = decay**interval
    powers = [np.log(r["damping"] / 1e-2) / np.log(omega) for r in records]
    np.testing.assert_allclose(powers, np.round(powers), atol=1e-3)
    assert round(powers[0]) != 0  # λ did move
    assert all(np.isfinite(r["reduction_ratio"]) for r in records)
    steps = 2 * 55  # 55,000 training examples in batches of 1000
    assert abs(round(powers[-1])) <= steps // interval
    summaries = tf.data.TFRecordDataset(tf.io.gfile.glob(str(tmp_path / "logs/epochs/*")))
    tags = {value.tag for record in summaries
            for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value}
    assert {"damping", "reduction_ratio"} <= tags
