"""SGD, Adam and K-FAC with L2 or decoupled decay, and the schedules, against hand-written numpy.

The references implement docs/equations.md §2 literally, with step(·) the optimizer's direction:

    L2:        θ ← θ − η · step(∇L + γθ)
    decoupled: θ ← θ − η · (step(∇L) + γθ)

on a fixed separable quadratic L(θ) = Σ ½ h ⊙ (θ − c)² over the variables of a tiny Keras
model (layers "hidden" and "top"), in float64. Learning rates and γ are powers of two so that
Keras's float32 learning-rate variable holds them exactly and the trajectories agree to
round-off (tolerance 1e-10 relative over six steps).
"""
import copy
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd.optimizers import KFAC, SGD, Adam, EpochStepDecay, WeightDecay, scaled_learning_rate
from tfwd.train import TrainStep

LEARNING_RATE = 0.125
WEIGHT_DECAY = 0.0625
STEPS = 6
# ×0.5 every epoch of 2 steps: η_k = 0.25 · 0.5^⌊k/2⌋ (closed form used by the references).
SCHEDULE = dict(base_learning_rate=0.25, steps_per_epoch=2, decay_every_epochs=1, decay_factor=0.5)
TOLERANCE = dict(rtol=1e-10, atol=1e-12)
# Keras casts β through float32 (ops.cast of a Python float) even for float64 variables, so
# Adam's bias correction uses float32(β); 1 − 2⁻³ and 1 − 2⁻⁹ are exact in float32.
BETA_1, BETA_2 = 0.875, 0.998046875


def schedule_closed_form(step):
    return SCHEDULE["base_learning_rate"] * SCHEDULE["decay_factor"] ** (
        (step // SCHEDULE["steps_per_epoch"]) // SCHEDULE["decay_every_epochs"]
    )


LEARNING_RATES = {
    "constant": (lambda: LEARNING_RATE, [LEARNING_RATE] * STEPS),
    "schedule": (lambda: EpochStepDecay(**SCHEDULE), [schedule_closed_form(k) for k in range(STEPS)]),
}


def two_layer_model(dtype="float64"):
    def init(seed):
        return keras.initializers.RandomNormal(stddev=0.5, seed=seed)

    return keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, name="hidden", kernel_initializer=init(1), bias_initializer=init(2),
                           dtype=dtype),
        keras.layers.Dense(2, name="top", kernel_initializer=init(3), bias_initializer=init(4),
                           dtype=dtype),
    ])


class Quadratic:
    """L(θ) = Σ_v ½ Σ h_v ⊙ (θ_v − c_v)²,  ∇_v L = h_v ⊙ (θ_v − c_v),  h ∈ [0.5, 2]."""

    def __init__(self, variables, seed=0):
        rng = np.random.default_rng(seed)
        self.curvatures = [rng.uniform(0.5, 2.0, v.shape) for v in variables]
        self.centers = [rng.standard_normal(v.shape) for v in variables]

    def gradient(self, thetas):
        return [h * (t - c) for h, t, c in zip(self.curvatures, thetas, self.centers)]


class MomentumStep:
    """step(g): v ← μv + g; v (heavy ball) or g + μv (Nesterov)."""

    def __init__(self, momentum=0.0, nesterov=False):
        self.momentum, self.nesterov, self.velocity = momentum, nesterov, 0.0

    def __call__(self, gradient):
        self.velocity = self.momentum * self.velocity + gradient
        return gradient + self.momentum * self.velocity if self.nesterov else self.velocity


class AdamStep:
    """step(g) of Kingma & Ba (2015), in the form with "ε̂" before their §2.1, which is the ε
    Keras documents: α_t/η = √(1−β₂ᵗ)/(1−β₁ᵗ), step = α_t/η · m / (√v + ε̂)."""

    def __init__(self, beta_1, beta_2, epsilon=1e-7):
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.m, self.v, self.t = 0.0, 0.0, 0

    def __call__(self, gradient):
        self.t += 1
        self.m = self.beta_1 * self.m + (1 - self.beta_1) * gradient
        self.v = self.beta_2 * self.v + (1 - self.beta_2) * gradient**2
        correction = math.sqrt(1 - self.beta_2**self.t) / (1 - self.beta_1**self.t)
        return correction * self.m / (np.sqrt(self.v) + self.epsilon)


def reference_trajectory(make_step, theta0, quadratic, learning_rates, decay_type, in_group,
                         weight_decay=WEIGHT_DECAY):
    """docs/equations.md §2 written out: one step(·) state per variable, decay only on the group."""
    thetas = [np.array(t, np.float64) for t in theta0]
    steps = [make_step() for _ in thetas]
    trajectory = []
    for learning_rate in learning_rates:
        gradients = quadratic.gradient(thetas)
        new = []
        for theta, gradient, step, decays in zip(thetas, gradients, steps, in_group):
            penalty = weight_decay * theta if decays else 0.0 * theta
            if decay_type == "l2":
                new.append(theta - learning_rate * step(gradient + penalty))
            else:
                new.append(theta - learning_rate * (step(gradient) + penalty))
        thetas = new
        trajectory.append(thetas)
    return trajectory


def optimizer_trajectory(optimizer, model, quadratic, steps=STEPS):
    variables = model.trainable_variables
    trajectory = []
    for _ in range(steps):
        gradients = quadratic.gradient([v.numpy() for v in variables])
        optimizer.apply([tf.constant(g) for g in gradients], variables)
        trajectory.append([v.numpy().copy() for v in variables])
    return trajectory


def assert_trajectories_close(actual, expected, **tolerance):
    for step, (got, want) in enumerate(zip(actual, expected)):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, err_msg=f"step {step}", **(tolerance or TOLERANCE))


def max_difference(first, second):
    return max(np.max(np.abs(a - b)) for x, y in zip(first, second) for a, b in zip(x, y))


# name: (tfwd optimizer factory, numpy step(·) factory)
FIRST_ORDER = {
    "sgd": (lambda **kw: SGD(momentum=0.0, **kw), lambda: MomentumStep(0.0)),
    "momentum": (lambda **kw: SGD(momentum=0.9, **kw), lambda: MomentumStep(0.9)),
    "nesterov": (lambda **kw: SGD(momentum=0.9, nesterov=True, **kw),
                 lambda: MomentumStep(0.9, nesterov=True)),
    "adam": (lambda **kw: Adam(beta_1=BETA_1, beta_2=BETA_2, **kw),
             lambda: AdamStep(BETA_1, BETA_2)),
}


def run_both(name, decay_type, learning_rate_kind="constant", decay_group="all", in_group=None):
    make_optimizer, make_step = FIRST_ORDER[name]
    make_learning_rate, learning_rates = LEARNING_RATES[learning_rate_kind]
    model = two_layer_model()
    quadratic = Quadratic(model.trainable_variables)
    theta0 = [v.numpy().copy() for v in model.trainable_variables]
    if in_group is None:
        in_group = [True] * len(theta0)
    optimizer = make_optimizer(learning_rate=make_learning_rate(), weight_decay=WEIGHT_DECAY,
                               decay_type=decay_type, decay_group=decay_group)
    actual = optimizer_trajectory(optimizer, model, quadratic)
    expected = reference_trajectory(make_step, theta0, quadratic, learning_rates, decay_type,
                                    in_group)
    return actual, expected


# ------------------------------------------------------------------ updates vs numpy


@pytest.mark.parametrize("learning_rate_kind", sorted(LEARNING_RATES))
@pytest.mark.parametrize("decay_type", ["l2", "decoupled"])
@pytest.mark.parametrize("name", sorted(FIRST_ORDER))
def test_update_matches_numpy_reference(name, decay_type, learning_rate_kind):
    actual, expected = run_both(name, decay_type, learning_rate_kind)
    assert_trajectories_close(actual, expected)


def _kernels_only(variable):
    # Keras variables are named "kernel"; inside distributed updates "…/kernel:0".
    return variable.name.split("/")[-1].startswith("kernel")


DECAY_GROUPS = {
    "all": ("all", lambda layer, is_kernel: True),
    "top": ("top", lambda layer, is_kernel: layer == "top"),
    "rest": ("rest", lambda layer, is_kernel: layer != "top"),
    "predicate": (_kernels_only, lambda layer, is_kernel: is_kernel),
}


@pytest.mark.parametrize("group", sorted(DECAY_GROUPS))
@pytest.mark.parametrize("decay_type", ["l2", "decoupled"])
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_decay_group_selects_only_its_variables(name, decay_type, group):
    decay_group, expected_rule = DECAY_GROUPS[group]
    model = two_layer_model()
    in_group = [
        expected_rule(layer.name, variable is layer.kernel)
        for layer in model.layers for variable in layer.trainable_variables
    ]
    actual, expected = run_both(name, decay_type, decay_group=decay_group, in_group=in_group)
    assert_trajectories_close(actual, expected)
    if not all(in_group):
        # The check has teeth: decaying every variable gives a visibly different trajectory.
        _, all_decayed = run_both(name, decay_type)
        assert max_difference(actual, all_decayed) > 1e-4


# ------------------------------------------------------------ equivalence / difference


@pytest.mark.parametrize("learning_rate_kind", sorted(LEARNING_RATES))
def test_plain_sgd_decoupled_equals_l2_step_for_step(learning_rate_kind):
    decoupled, _ = run_both("sgd", "decoupled", learning_rate_kind)
    l2, _ = run_both("sgd", "l2", learning_rate_kind)
    assert_trajectories_close(decoupled, l2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
def test_decoupled_differs_from_l2_with_momentum_or_adam(name):
    decoupled, _ = run_both(name, "decoupled")
    l2, _ = run_both(name, "l2")
    assert max_difference(decoupled, l2) > 1e-4  # ≫ the 1e-10 agreement tolerance above


# ------------------------------------------------------------------ Keras agreement


def keras_trajectory(optimizer):
    model = two_layer_model()
    return optimizer_trajectory(optimizer, model, Quadratic(model.trainable_variables))


@pytest.mark.parametrize("nesterov", [False, True])
def test_decoupled_sgd_agrees_with_keras_sgd_at_constant_learning_rate(nesterov):
    # Keras folds η into the buffer (v ← μv − ηg, θ ← θ + v); at constant η that is −η times ours.
    # μ = 1 − 2⁻³ because Keras casts μ through float32 (see BETA_1).
    momentum = 0.875
    model = two_layer_model()
    ours = optimizer_trajectory(
        SGD(LEARNING_RATE, momentum=momentum, nesterov=nesterov, weight_decay=WEIGHT_DECAY),
        model, Quadratic(model.trainable_variables),
    )
    theirs = keras_trajectory(keras.optimizers.SGD(
        LEARNING_RATE, momentum=momentum, nesterov=nesterov, weight_decay=WEIGHT_DECAY))
    assert_trajectories_close(ours, theirs)


def test_decoupled_adam_agrees_with_keras_adamw():
    model = two_layer_model()
    ours = optimizer_trajectory(Adam(LEARNING_RATE, weight_decay=WEIGHT_DECAY), model,
                                Quadratic(model.trainable_variables))
    theirs = keras_trajectory(keras.optimizers.AdamW(LEARNING_RATE, weight_decay=WEIGHT_DECAY))
    assert_trajectories_close(ours, theirs)


def test_rest_group_agrees_with_keras_adamw_excluding_the_top_layer():
    model = two_layer_model()
    ours = optimizer_trajectory(Adam(LEARNING_RATE, weight_decay=WEIGHT_DECAY, decay_group="rest"),
                                model, Quadratic(model.trainable_variables))
    keras_model = two_layer_model()
    adamw = keras.optimizers.AdamW(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    adamw.exclude_from_weight_decay(var_list=keras_model.get_layer("top").trainable_variables)
    theirs = optimizer_trajectory(adamw, keras_model, Quadratic(keras_model.trainable_variables))
    assert_trajectories_close(ours, theirs)


# --------------------------------------------------------------------------- K-FAC


def classification_problem(examples=32, features=4, classes=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((examples, features)).astype("float32")
    y = np.argmax(x @ rng.standard_normal((features, classes)), axis=1)
    return x, y


def classifier(features=4, classes=3):
    return keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(8, activation="tanh", name="hidden",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=1),
                           bias_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=2)),
        keras.layers.Dense(classes, name="top",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=3),
                           bias_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=4)),
    ])


CROSS_ENTROPY = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def fit(optimizer, epochs, batch_size=16):
    x, y = classification_problem()
    model = classifier()
    model.compile(optimizer=optimizer, loss=CROSS_ENTROPY)
    if isinstance(optimizer, KFAC):
        optimizer.attach(model)
        TrainStep(model).install()
    before = float(CROSS_ENTROPY(y, model(x)))
    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    after = float(CROSS_ENTROPY(y, model(x)))
    return model, before, after


def test_kfac_decoupled_differs_from_l2():
    weights = {}
    for decay_type in ("decoupled", "l2"):
        optimizer = KFAC(0.1, curvature="gauss_newton", damping=0.03, momentum=0.9, cov_every=1,
                         inv_every=1, weight_decay=0.25, decay_type=decay_type)
        model, _, _ = fit(optimizer, epochs=1)
        weights[decay_type] = [w.copy() for w in model.get_weights()]
    difference = max(np.max(np.abs(a - b)) for a, b in zip(weights["decoupled"], weights["l2"]))
    assert difference > 1e-3  # float32 round-off of two identical runs would be ~1e-7


OPTIMIZER_TABLE = {
    "sgd": lambda: SGD(EpochStepDecay(0.2, steps_per_epoch=2, decay_every_epochs=2),
                       momentum=0.9, weight_decay=1e-3, decay_type="l2"),
    "adam": lambda: Adam(0.03, weight_decay=1e-3, decay_group="rest"),
    "kfac-g": lambda: KFAC(0.1, curvature="gauss_newton", damping=0.03, cov_every=1,
                           inv_every=2, kl_clip=1e-2, weight_decay=1e-3),
    "kfac-f": lambda: KFAC(0.1, curvature="fisher", damping=0.03, cov_every=1, inv_every=2,
                           kl_clip=1e-2, weight_decay=1e-3, decay_type="l2", decay_group="top"),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZER_TABLE))
def test_every_optimizer_decreases_loss_and_round_trips_its_config(name):
    optimizer = OPTIMIZER_TABLE[name]()
    _, before, after = fit(optimizer, epochs=3)
    assert after < 0.9 * before, (before, after)

    config = optimizer.get_config()
    # Keras's from_config deserializes a schedule in place, so hand it a copy.
    restored = type(optimizer).from_config(copy.deepcopy(config))
    assert restored.get_config() == config
    deserialized = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(deserialized) is type(optimizer)
    assert deserialized.get_config() == config
    if isinstance(optimizer, KFAC):
        assert config["layers"] == ["hidden", "top"]
        restored.attach(classifier())  # same layer names: accepted


def test_kfac_restored_for_another_model_refuses_to_attach():
    optimizer = KFAC(0.1, layers=["hidden", "top"])
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="top")])
    with pytest.raises(ValueError, match="covers layers"):
        optimizer.attach(other)


def test_predicate_group_cannot_be_serialized():
    with pytest.raises(ValueError, match="callable"):
        SGD(weight_decay=0.1, decay_group=_kernels_only).get_config()


def model_without_top():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="output")])


@pytest.mark.parametrize("make_optimizer", [
    lambda: SGD(weight_decay=0.1, decay_group="top"),
    lambda: Adam(weight_decay=0.1, decay_type="l2", decay_group="top"),
], ids=["sgd", "adam"])
def test_group_that_selects_nothing_raises(make_optimizer):
    model = model_without_top()
    with pytest.raises(ValueError, match="selects none"):
        make_optimizer().build(model.trainable_variables)


def test_kfac_group_that_selects_nothing_raises_at_attach():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="top")])
    optimizer = KFAC(weight_decay=0.1, decay_group="rest")
    with pytest.raises(ValueError, match="selects none"):
        optimizer.attach(model)


def test_group_is_not_checked_without_decay():
    model = model_without_top()
    SGD(weight_decay=0.0, decay_group="top").build(model.trainable_variables)


@pytest.mark.parametrize("make, match", [
    (lambda: SGD(momentum=1.0), "momentum"),
    (lambda: SGD(weight_decay=-1e-4), "weight_decay"),
    (lambda: SGD(weight_decay=1e-4, decay_type="wd"), "decay_type"),
    (lambda: Adam(weight_decay=1e-4, decay_group="conv"), "decay_group"),
    (lambda: WeightDecay(1e-4, decay_group=3), "decay_group"),
    (lambda: KFAC(curvature="hessian"), "curvature"),
    (lambda: KFAC(damping=0.0), "damping"),
    (lambda: KFAC(momentum=-0.1), "momentum"),
    (lambda: KFAC(cov_decay=1.0), "cov_decay"),
    (lambda: KFAC(cov_every=0), "cov_every"),
    (lambda: KFAC(kl_clip=0.0), "kl_clip"),
    (lambda: KFAC(gauss_newton_samples=0), "gauss_newton_samples"),
    (lambda: EpochStepDecay(0.1, steps_per_epoch=0), "steps_per_epoch"),
    (lambda: EpochStepDecay(0.1, steps_per_epoch=10, warmup_epochs=-1), "warmup_epochs"),
    (lambda: scaled_learning_rate(0.1, 256, 128, "cube"), "rule"),
    (lambda: scaled_learning_rate(0.1, 0, 128, "linear"), "positive"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_kfac_without_attach_says_so():
    model = two_layer_model("float32")
    with pytest.raises(ValueError, match="attach"):
        KFAC().build(model.trainable_variables)


# ------------------------------------------------------------------------ schedules


def test_epoch_step_decay_equals_closed_form():
    base, steps_per_epoch, every, factor = 0.1, 10, 3, 0.1
    schedule = EpochStepDecay(base, steps_per_epoch, decay_every_epochs=every, decay_factor=factor)
    for step in (0, 9, 10, 29, 30, 59, 60, 95, 120):
        expected = base * factor ** ((step // steps_per_epoch) // every)
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6, err_msg=str(step))


def test_no_decay_is_constant():
    schedule = EpochStepDecay(0.3, steps_per_epoch=5)
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 7, 1000)], 0.3, rtol=1e-7)


@pytest.mark.parametrize("warmup_epochs", [2.0, 0.5])
def test_warmup_ramps_linearly_then_decays(warmup_epochs):
    base, steps_per_epoch, every, factor = 0.4, 10, 3, 0.1
    schedule = EpochStepDecay(base, steps_per_epoch, every, factor, warmup_epochs=warmup_epochs)
    warmup_steps = warmup_epochs * steps_per_epoch
    for step in (0, 1, 4, 9, 19, 20, 29, 30, 45):
        ramp = min(1.0, (step + 1) / warmup_steps)
        expected = base * factor ** ((step // steps_per_epoch) // every) * ramp
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6, err_msg=str(step))
    # The ramp starts at η₀ / warmup_steps and reaches η₀ at the last warm-up step.
    np.testing.assert_allclose(float(schedule(0)), base / warmup_steps, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(int(warmup_steps) - 1)), base, rtol=1e-6)


def test_schedule_round_trips_its_config():
    schedule = EpochStepDecay(0.1, 391, decay_every_epochs=40, decay_factor=0.1, warmup_epochs=5)
    restored = EpochStepDecay.from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()


@pytest.mark.parametrize("batch_size", [64, 128, 640, 2000])
def test_scaled_learning_rate(batch_size):
    base, base_batch = 0.1, 128
    ratio = batch_size / base_batch
    assert scaled_learning_rate(base, batch_size, base_batch, "none") == base
    np.testing.assert_allclose(scaled_learning_rate(base, batch_size, base_batch, "linear"),
                               base * ratio, rtol=1e-15)
    np.testing.assert_allclose(scaled_learning_rate(base, batch_size, base_batch, "sqrt"),
                               base * math.sqrt(ratio), rtol=1e-15)
