"""float64 and mixed precision outside K-FAC: optimizers, noise, diagnostics, train().

Reference: the same step in float32 from the same initial weights and data. A float64 step
agrees with it to float32 round-off, a mixed-precision step to the round-off of its compute
dtype (float16: 2⁻¹¹, bfloat16: 2⁻⁸ per operation, a few times that after a forward and a
backward pass). Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer: a step
that forgot to unscale the gradients would be 2¹⁵ times too large.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd import diagnostics, models, optimizers
from tfwd.noise import make_noise
from tfwd.train import TrainConfig, train
from tfwd.train.precision import dtype_policy
from tfwd.train.step import TrainStep

# Relative (l2) tolerance of a step against the float32 step, per policy.
TOLERANCE = {"float64": 1e-4, "mixed_float16": 1e-2, "mixed_bfloat16": 4e-2}
NOISE_KINDS = ("diag_fisher", "full_fisher", "trace", "kfac", "multiplicative")
SHAPE, CLASSES, BATCH = (4, 4, 1), 3, 8


@pytest.fixture(autouse=True)
def float32_afterwards():
    """Every test leaves Keras's global policy and floatx as it found them."""
    policy, floatx = keras.mixed_precision.global_policy(), keras.config.floatx()
    yield
    keras.config.set_floatx(floatx)
    keras.mixed_precision.set_global_policy(policy)


def tiny_model():
    # Batch norm (computed in float32 under mixed policies) between two Dense layers.
    return models.build("mlp", input_shape=SHAPE, num_classes=CLASSES, depth=1, width=5,
                        batch_norm=True, bn_affine=True, seed=0)


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, *SHAPE)).astype("float32"), rng.integers(0, CLASSES, BATCH)


INITIAL_WEIGHTS = [v.numpy() for v in tiny_model().weights]


def model_from_initial_weights():
    """``tiny_model`` under the current policy, with the float32 model's initial weights (the
    initializers draw other numbers in float64)."""
    model = tiny_model()
    for variable, value in zip(model.weights, INITIAL_WEIGHTS):
        variable.assign(value.astype(variable.dtype))
    return model


def one_step(policy, optimizer_name, noise_kind, loop):
    """The update θ₁ − θ₀ (float64 numpy) of one step from INITIAL_WEIGHTS under ``policy``."""
    x, y = batch()
    with dtype_policy(policy):
        model = model_from_initial_weights()
        before = [v.numpy().astype(np.float64) for v in model.trainable_weights]
        # Adam's first step is -η·g/(|g| + ε): with the default ε = 1e-7 it is a sign for every
        # entry, and one gradient entry that cancels to ~1e-5 flips sign under bfloat16
        # round-off (seen on a CPU with native bfloat16 dot products: 0.19 relative). With
        # ε = 1e-3 such an entry moves by ~η·1e-2 instead of 2η, the others still by ~η (large
        # enough for θ₁ − θ₀ of float32 weights to keep its digits), and a gradient left
        # loss-scaled by 2¹⁵ still changes the step beyond the tolerance.
        optimizer = (optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-2)
                     if optimizer_name == "sgd"
                     else optimizers.Adam(1e-2, weight_decay=1e-2, epsilon=1e-3))
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        consumers = [] if noise_kind == "none" else [make_noise(
            noise_kind, model, large_batch_size=BATCH, small_batch_size=2, steps_per_epoch=1,
            seed=1)]
        train_step = TrainStep(model, consumers)
        if loop == "fit":
            if consumers:
                train_step.install()
            model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        else:
            model.optimizer.build(model.trainable_variables)

            @tf.function
            def step(x, y):
                train_step.replica_step(x, y)

            step(tf.constant(x), tf.constant(y))
        assert model.trainable_weights[0].dtype == ("float64" if policy == "float64" else "float32")
        if policy == "mixed_float16":
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        return [v.numpy().astype(np.float64) - b for v, b in zip(model.trainable_weights, before)]


def relative_difference(update, reference):
    return np.sqrt(sum(np.sum((u - r) ** 2) for u, r in zip(update, reference))
                   / sum(np.sum(r ** 2) for r in reference))


PLAIN = [("sgd", "none"), ("adam", "none")]
CASES = ([("float64", optimizer, kind, "fit") for optimizer, kind in PLAIN]
         + [("float64", "sgd", kind, "fit") for kind in NOISE_KINDS]
         + [("mixed_bfloat16", optimizer, kind, "fit") for optimizer, kind in PLAIN]
         + [("mixed_bfloat16", "sgd", kind, "fit") for kind in NOISE_KINDS]
         + [("mixed_float16", optimizer, kind, "fit") for optimizer, kind in PLAIN]
         + [("mixed_float16", "sgd", kind, "fit") for kind in ("diag_fisher", "kfac")]
         + [("float64", "sgd", "diag_fisher", "custom"), ("mixed_float16", "adam", "trace", "custom"),
            ("mixed_bfloat16", "sgd", "full_fisher", "custom")])
_FLOAT32_STEPS = {}


def float32_step(optimizer_name, noise_kind, loop):
    """The float32 reference, computed once per (optimizer, noise, loop)."""
    key = (optimizer_name, noise_kind, loop)
    if key not in _FLOAT32_STEPS:
        _FLOAT32_STEPS[key] = one_step("float32", *key)
    return _FLOAT32_STEPS[key]


@pytest.mark.parametrize("policy, optimizer_name, noise_kind, loop", CASES,
                         ids=["-".join(case) for case in CASES])
def test_step_agrees_with_the_float32_step(policy, optimizer_name, noise_kind, loop):
    reference = float32_step(optimizer_name, noise_kind, loop)
    update = one_step(policy, optimizer_name, noise_kind, loop)
    assert relative_difference(update, reference) < TOLERANCE[policy]


def test_float64_diagnostics_agree_with_float32():
    x, y = batch(1)
    names = ("weight_norms", "jacobian_norm", "gauss_newton_norm", "kfac_gauss_newton_norm",
             "fisher_norms", "gradient_variance", "effective_damping", "generalization_gap")

    def measure(policy):
        with dtype_policy(policy):
            model = model_from_initial_weights()
            model.compile(optimizer=keras.optimizers.SGD(0.1),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            callbacks = diagnostics.build_callbacks(
                names, train_batch=(x, y), test_batch=batch(2), seed=0,
                gradient_variance_batch_size=2, gradient_variance_batches=3)
            values = {}
            for callback in callbacks:
                callback.set_model(model)
                values[callback.diagnostic_name] = callback.measure(model)
            values["hessian"] = diagnostics.largest_hessian_eigenvalue(
                model, x, y, num_iterations=5, seed=0)
            return values

    def leaves(value, prefix=""):
        if isinstance(value, dict):
            for key, item in value.items():
                yield from leaves(item, f"{prefix}/{key}")
        else:
            yield prefix, float(value)

    reference = dict(leaves(measure("float32")))
    got = dict(leaves(measure("float64")))
    assert got.keys() == reference.keys()
    for key, value in reference.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_dtype_policy_restores_the_previous_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    with dtype_policy("float64"):
        assert keras.config.floatx() == "float64"
        assert keras.mixed_precision.global_policy().name == "float64"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.config.floatx() == "float32"
    with pytest.raises(ValueError, match="dtype_policy='float8'"):
        with dtype_policy("float8"):
            pass


@pytest.mark.parametrize("policy, loop, noise", [("float64", "custom", "trace"),
                                                 ("mixed_float16", "custom", "diag_fisher"),
                                                 ("mixed_bfloat16", "fit", "none")])
def test_train_runs_under_the_policy_on_real_mnist(tmp_path, policy, loop, noise):
    config = TrainConfig.from_flat(dataset="mnist", model="mlp", model_kwargs={"depth": 1, "width": 32},
                                   optimizer="sgd", learning_rate=0.1, momentum=0.9, batch_size=512,
                                   small_batch_size=128, noise=noise, epochs=1, loop=loop,
                                   dtype_policy=policy, seed=0, verbose=0)
    results = train(config, str(tmp_path))
    assert results["final"]["test_accuracy"] > 0.85
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    with dtype_policy(policy):
        saved = keras.saving.load_model(tmp_path / "model.keras")
    assert saved.get_layer("top").kernel.dtype == ("float64" if policy == "float64" else "float32")
    assert saved.get_layer("top").compute_dtype == {"float64": "float64",
                                                   "mixed_float16": "float16",
                                                   "mixed_bfloat16": "bfloat16"}[policy]
