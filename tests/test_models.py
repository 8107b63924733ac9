"""Tests of the model zoo (tfwd.models) and of ghost batch normalization.

Parameter counts are written as architecture arithmetic (weights of each layer), never copied
from model.summary(); ghost batch norm is checked against a numpy implementation.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd import models
from tfwd.models import GhostBatchNormalization

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)
EPSILON = 1e-3  # Keras BatchNormalization's default, shared by GhostBatchNormalization.
MOMENTUM = 0.99


def conv(kernel_size, channels_in, channels_out, bias):
    return kernel_size * kernel_size * channels_in * channels_out + (channels_out if bias else 0)


def dense(units_in, units_out, bias):
    return units_in * units_out + (units_out if bias else 0)


def resnet_params(blocks_per_stage, k, bias):
    """Stem, 3 stages of basic blocks (projection at the two stride-2 stage starts), top."""
    n = blocks_per_stage
    return (
        conv(3, 3, 16 * k, bias)
        + 2 * n * conv(3, 16 * k, 16 * k, bias)
        + conv(3, 16 * k, 32 * k, bias) + conv(1, 16 * k, 32 * k, bias)
        + (2 * n - 1) * conv(3, 32 * k, 32 * k, bias)
        + conv(3, 32 * k, 64 * k, bias) + conv(1, 32 * k, 64 * k, bias)
        + (2 * n - 1) * conv(3, 64 * k, 64 * k, bias)
        + dense(64 * k, 10, bias=True)
    )


def resnet_bn_channels(blocks_per_stage, k):
    """Stem + two normalized convs per block + the two projections."""
    n = blocks_per_stage
    return 16 * k + 2 * n * (16 * k + 32 * k + 64 * k) + 32 * k + 64 * k


# Conv channels of the VGG blocks, written out per configuration.
VGG_CONVS = {
    "vgg11": [64, 128, 256, 256, 512, 512, 512, 512],
    "vgg13": [64, 64, 128, 128, 256, 256, 512, 512, 512, 512],
    "vgg16": [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
    "vgg19": [64, 64, 128, 128] + [256] * 4 + [512] * 8,
}


def vgg_params(name, bias):
    channels = [3] + VGG_CONVS[name]
    convs = sum(conv(3, c_in, c_out, bias) for c_in, c_out in zip(channels, channels[1:]))
    return convs + dense(512 * 1 * 1, 10, bias=True)  # 32x32 pooled five times -> 1x1x512


def transformer_params(tokens, row_size, depth, width, mlp_width, classes=10):
    """Patch Dense, position table, per block 2 layer norms (γ, β), the query/key/value/output
    projections (d x d kernels with biases; the heads split d) and the MLP; final norm, top."""
    block = (2 * 2 * width + 4 * dense(width, width, True)
             + dense(width, mlp_width, True) + dense(mlp_width, width, True))
    return (dense(row_size, width, True) + tokens * width + depth * block + 2 * width
            + dense(width, classes, True))


# (name, input_shape, architecture kwargs, batch_norm, trainable params, batch-norm channels)
PARAMETER_COUNTS = [
    ("mlp", MNIST, {}, False,
     dense(784, 1000, True) + dense(1000, 1000, True) + dense(1000, 10, True), 0),
    ("mlp", MNIST, {}, True,
     dense(784, 1000, False) + dense(1000, 1000, False) + dense(1000, 10, True), 1000 + 1000),
    ("mlp", (784,), {"depth": 3, "width": 50}, True,
     dense(784, 50, False) + 2 * dense(50, 50, False) + dense(50, 10, True), 3 * 50),
    ("mlp", MNIST, {"depth": 0}, True, dense(784, 10, True), 0),
    ("lenet", MNIST, {}, False,
     conv(5, 1, 6, True) + conv(5, 6, 16, True) + dense(5 * 5 * 16, 120, True)
     + dense(120, 84, True) + dense(84, 10, True), 0),
    ("lenet", MNIST, {}, True,
     conv(5, 1, 6, False) + conv(5, 6, 16, False) + dense(5 * 5 * 16, 120, False)
     + dense(120, 84, False) + dense(84, 10, True), 6 + 16 + 120 + 84),
    ("alexnet", CIFAR, {}, False,
     conv(5, 3, 64, True) + conv(5, 64, 64, True) + dense(8 * 8 * 64, 384, True)
     + dense(384, 192, True) + dense(192, 10, True), 0),
    ("alexnet", CIFAR, {}, True,
     conv(5, 3, 64, False) + conv(5, 64, 64, False) + dense(8 * 8 * 64, 384, False)
     + dense(384, 192, False) + dense(192, 10, True), 64 + 64 + 384 + 192),
    *[(name, CIFAR, {}, bn, vgg_params(name, bias=not bn), sum(VGG_CONVS[name]) if bn else 0)
      for name in VGG_CONVS for bn in (False, True)],
    ("resnet32", CIFAR, {}, True, resnet_params(5, 4, bias=False), resnet_bn_channels(5, 4)),
    ("resnet32", CIFAR, {}, False, resnet_params(5, 4, bias=True), 0),
    ("resnet32", CIFAR, {"width_factor": 1}, True,
     resnet_params(5, 1, bias=False), resnet_bn_channels(5, 1)),
    ("resnet44", CIFAR, {}, True, resnet_params(7, 1, bias=False), resnet_bn_channels(7, 1)),
    ("resnet44", CIFAR, {}, False, resnet_params(7, 1, bias=True), 0),
    ("resnet44", CIFAR, {"width_factor": 2}, True,
     resnet_params(7, 2, bias=False), resnet_bn_channels(7, 2)),
    ("transformer", MNIST, {}, False, transformer_params(28, 28, 2, 64, 128), 0),
    ("transformer", CIFAR, {"depth": 3, "width": 32, "num_heads": 2, "mlp_width": 48}, False,
     transformer_params(32, 32 * 3, 3, 32, 48), 0),
]


def count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def input_shape_of(name):
    return MNIST if name in ("mlp", "lenet", "transformer") else CIFAR


@pytest.mark.parametrize(
    "name, input_shape, kwargs, batch_norm, trainable, bn_channels", PARAMETER_COUNTS,
    ids=[f"{c[0]}-{c[2]}-{'bn' if c[3] else 'nobn'}" for c in PARAMETER_COUNTS],
)
def test_parameter_count(name, input_shape, kwargs, batch_norm, trainable, bn_channels):
    model = models.build(
        name, input_shape=input_shape, num_classes=10, batch_norm=batch_norm, **kwargs
    )
    assert count(model.trainable_weights) == trainable
    # Batch norm without gamma/beta keeps only its moving mean and variance.
    assert count(model.non_trainable_weights) == 2 * bn_channels


def test_paper_parameter_counts():
    """The numbers quoted for the paper's MNIST MLP, VGG16 and ResNet32 x4 (both with BN)."""
    assert dense(784, 1000, True) + dense(1000, 1000, True) + dense(1000, 10, True) == 1_796_010
    assert vgg_params("vgg16", bias=False) == 14_715_594
    assert resnet_params(5, 4, bias=False) == 7_418_058


def test_bn_affine_adds_gamma_and_beta():
    plain = models.build("lenet", input_shape=MNIST, num_classes=10, batch_norm=True)
    affine = models.build("lenet", input_shape=MNIST, num_classes=10, batch_norm=True,
                          bn_affine=True)
    assert count(affine.trainable_weights) - count(plain.trainable_weights) == 2 * (
        6 + 16 + 120 + 84
    )


@pytest.mark.parametrize("name", [name for name in models.available() if name != "transformer"])
def test_logits_shape_and_layer_names(name):
    model = models.build(name, input_shape=input_shape_of(name), num_classes=7, batch_norm=True)
    assert model.name == name
    logits = model(np.ones((2, *input_shape_of(name)), "float32"), training=False)
    assert logits.shape == (2, 7)

    weight_layers = [
        layer for layer in model.layers
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))
    ]
    assert weight_layers[-1].name == "top" and isinstance(weight_layers[-1], keras.layers.Dense)
    convs = [layer.name for layer in weight_layers if isinstance(layer, keras.layers.Conv2D)]
    hidden = [layer.name for layer in weight_layers[:-1] if isinstance(layer, keras.layers.Dense)]
    bns = [
        layer.name for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert convs == [f"conv_{i}" for i in range(1, len(convs) + 1)]
    assert hidden == [f"dense_{i}" for i in range(1, len(hidden) + 1)]
    # Every hidden weight layer is followed by batch norm.
    assert bns == [f"bn_{i}" for i in range(1, len(weight_layers))]
    # K-FAC needs linear weight layers; batch norm makes their bias redundant.
    for layer in weight_layers:
        assert layer.activation is keras.activations.linear
        assert layer.use_bias == (layer.name == "top")
    paths = [variable.path for variable in model.weights]
    assert "top/kernel" in paths and "top/bias" in paths
    assert all(path.split("/")[0] in {layer.name for layer in model.layers} for path in paths)


@pytest.mark.parametrize(
    "name, convs", [("mlp", 0), ("lenet", 2), ("alexnet", 2), ("vgg11", 8), ("vgg13", 10),
                    ("vgg16", 13), ("vgg19", 16),
                    ("resnet32", 1 + 3 * 5 * 2 + 2), ("resnet44", 1 + 3 * 7 * 2 + 2)],
)
def test_conv_count_and_biases_without_batch_norm(name, convs):
    model = models.build(name, input_shape=input_shape_of(name), num_classes=10, batch_norm=False)
    conv_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(conv_layers) == convs
    assert all(layer.use_bias for layer in model.layers if hasattr(layer, "use_bias"))
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_default_is_without_batch_norm_as_a_default_run():
    from tfwd.train import TrainConfig

    model = models.build("lenet", input_shape=MNIST, num_classes=10)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert TrainConfig().model.batch_norm is False


def weights_by_path(model):
    return {variable.path: variable.numpy() for variable in model.weights}


def test_same_seed_same_weights_regardless_of_global_state():
    keras.utils.set_random_seed(1)
    first = weights_by_path(models.build("lenet", input_shape=MNIST, num_classes=10, seed=3))
    keras.utils.set_random_seed(2)
    second = weights_by_path(models.build("lenet", input_shape=MNIST, num_classes=10, seed=3))
    assert first.keys() == second.keys()
    for path in first:
        np.testing.assert_array_equal(first[path], second[path])


def test_different_seed_or_layer_gives_different_weights():
    def mlp(seed):
        model = models.build(
            "mlp", input_shape=(8,), num_classes=8, depth=2, width=8, seed=seed
        )
        return weights_by_path(model)

    seed0, seed1 = mlp(0), mlp(1)
    for path in ("dense_1/kernel", "dense_2/kernel", "top/kernel"):
        assert not np.allclose(seed0[path], seed1[path])
    # Layers of equal shape in one model are initialized from different seeds.
    assert not np.allclose(seed0["dense_1/kernel"], seed0["dense_2/kernel"])
    assert not np.allclose(seed0["dense_2/kernel"], seed0["top/kernel"])


def test_glorot_uniform_kernels_and_zero_biases():
    model = models.build("lenet", input_shape=MNIST, num_classes=10, batch_norm=False)
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        kernel = layer.kernel.numpy()
        receptive_field = int(np.prod(kernel.shape[:-2]))  # 1 for Dense
        fan_in, fan_out = receptive_field * kernel.shape[-2], receptive_field * kernel.shape[-1]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(kernel).max() <= limit
        # Uniform on [-limit, limit] has standard deviation limit / sqrt(3).
        np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3), rtol=0.25)
        np.testing.assert_array_equal(layer.bias.numpy(), 0.0)


def test_unknown_name_or_keyword_raises():
    with pytest.raises(ValueError, match="vgg16"):
        models.build("vgg17", input_shape=CIFAR, num_classes=10)
    with pytest.raises(ValueError, match="width_factor"):
        models.build("resnet32", input_shape=CIFAR, num_classes=10, depth=3)
    with pytest.raises(ValueError, match="none"):
        models.build("vgg16", input_shape=CIFAR, num_classes=10, width_factor=2)
    with pytest.raises(ValueError, match="depth"):
        models.build("mlp", input_shape=MNIST, num_classes=10, depth=-1)
    with pytest.raises(ValueError, match="batch_norm=True"):
        models.build("mlp", input_shape=MNIST, num_classes=10, batch_norm=False,
                     ghost_batch_size=4)


# --- transformer -----------------------------------------------------------------------------


def numpy_layer_norm(x, gamma, beta, epsilon=1e-6):
    mean, variance = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def numpy_transformer(x, weights, depth):
    """The module docstring's equations, written from scratch in float64 numpy."""
    w = {path: value.astype(np.float64) for path, value in weights.items()}
    batch, tokens = x.shape[:2]
    z = x.reshape(batch, tokens, -1) @ w["dense_1/kernel"] + w["dense_1/bias"]
    z = z + w["embedding_1/embeddings"][np.arange(tokens)]
    for block in range(depth):
        attention, norm, dense = f"attention_{block + 1}", 2 * block + 1, 2 * block + 2
        y = numpy_layer_norm(z, w[f"norm_{norm}/gamma"], w[f"norm_{norm}/beta"])
        q, k, v = (np.einsum("btd,dhk->bthk", y, w[f"{attention}/{name}/kernel"])
                   + w[f"{attention}/{name}/bias"] for name in ("query", "key", "value"))
        scores = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1])
        probabilities = np.exp(scores - scores.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        heads = np.einsum("bhts,bshk->bthk", probabilities, v)
        z = z + np.einsum("bthk,hkd->btd", heads, w[f"{attention}/attention_output/kernel"])
        z = z + w[f"{attention}/attention_output/bias"]
        y = numpy_layer_norm(z, w[f"norm_{norm + 1}/gamma"], w[f"norm_{norm + 1}/beta"])
        hidden = np.maximum(y @ w[f"dense_{dense}/kernel"] + w[f"dense_{dense}/bias"], 0.0)
        z = z + hidden @ w[f"dense_{dense + 1}/kernel"] + w[f"dense_{dense + 1}/bias"]
    final = 2 * depth + 1
    pooled = numpy_layer_norm(z, w[f"norm_{final}/gamma"], w[f"norm_{final}/beta"]).mean(1)
    return pooled @ w["top/kernel"] + w["top/bias"]


def randomized_weights(model, seed):
    """Every weight (biases, γ, β too) random, so each term of the forward pass matters."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape))
    return weights_by_path(model)


def test_transformer_forward_pass_matches_numpy():
    depth, shape = 2, (5, 4, 2)  # 5 row tokens of 4 x 2 values
    model = models.build("transformer", input_shape=shape, num_classes=3, depth=depth,
                         width=8, num_heads=2, mlp_width=6)
    weights = randomized_weights(model, seed=4)
    x = np.random.default_rng(5).normal(size=(3, *shape)).astype("float32")
    np.testing.assert_allclose(
        model(x, training=True), numpy_transformer(x, weights, depth), rtol=1e-4, atol=1e-4
    )


def test_transformer_layers_and_initialization():
    model = models.build("transformer", input_shape=MNIST, num_classes=10, seed=2)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("MultiHeadAttention") == 2 and kinds.count("LayerNormalization") == 5
    assert kinds.count("Embedding") == 1 and "BatchNormalization" not in kinds
    # Only layers K-FAC has blocks for own weights.
    owners = {type(layer).__name__ for layer in model.layers if layer.weights}
    assert owners == {"Dense", "Embedding", "LayerNormalization", "MultiHeadAttention"}
    weights = weights_by_path(model)
    projections = [weights[f"attention_1/{name}/kernel"] for name in ("query", "key", "value")]
    for i, kernel in enumerate(projections):  # each projection drawn from its own seed
        assert np.abs(kernel).max() > 0
        for other in projections[i + 1:]:
            assert not np.allclose(kernel, other)
    np.testing.assert_allclose(weights["embedding_1/embeddings"].std(), 0.02, rtol=0.1)
    assert not np.allclose(weights["attention_1/query/kernel"], weights["attention_2/query/kernel"])


def test_transformer_weights_depend_on_the_seed_only():
    keras.utils.set_random_seed(1)
    first = weights_by_path(models.build("transformer", input_shape=MNIST, num_classes=10, seed=3))
    keras.utils.set_random_seed(2)
    second = weights_by_path(models.build("transformer", input_shape=MNIST, num_classes=10, seed=3))
    other = weights_by_path(models.build("transformer", input_shape=MNIST, num_classes=10, seed=4))
    for path in first:
        np.testing.assert_array_equal(first[path], second[path])
    assert not np.allclose(first["attention_1/key/kernel"], other["attention_1/key/kernel"])


def test_transformer_rejects_batch_norm_options_and_bad_shapes():
    for options in ({"batch_norm": True}, {"bn_affine": True}, {"ghost_batch_size": 4}):
        with pytest.raises(ValueError, match="LayerNormalization"):
            models.build("transformer", input_shape=MNIST, num_classes=10, **options)
    with pytest.raises(ValueError, match="row by row"):
        models.build("transformer", input_shape=(784,), num_classes=10)
    with pytest.raises(ValueError, match="num_heads=3"):
        models.build("transformer", input_shape=MNIST, num_classes=10, num_heads=3)


def test_transformer_fits_one_epoch_and_round_trips_keras_file(tmp_path):
    model = models.build("transformer", input_shape=MNIST, num_classes=10, depth=1, width=16,
                         num_heads=2)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(32, *MNIST)).astype("float32")
    y = rng.integers(0, 10, size=32)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before

    path = tmp_path / "transformer.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(model(x[:4]), reloaded(x[:4]))


# --- ghost batch normalization ---------------------------------------------------------------


def numpy_ghost_normalize(x, virtual_batch_size, gamma=1.0, beta=0.0):
    """Plain batch norm applied separately to each consecutive virtual batch."""
    outputs, means, variances = [], [], []
    axes = tuple(range(x.ndim - 1))
    for start in range(0, len(x), virtual_batch_size):
        ghost = x[start:start + virtual_batch_size].astype(np.float64)
        mean, variance = ghost.mean(axis=axes), ghost.var(axis=axes)
        outputs.append(gamma * (ghost - mean) / np.sqrt(variance + EPSILON) + beta)
        means.append(mean)
        variances.append(variance)
    return np.concatenate(outputs), np.mean(means, axis=0), np.mean(variances, axis=0)


@pytest.mark.parametrize("shape, virtual_batch_size", [((12, 5), 4), ((8, 3, 3, 4), 2)])
def test_ghost_batch_norm_training_matches_numpy(shape, virtual_batch_size):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 3 + 1).astype("float32")
    layer = GhostBatchNormalization(virtual_batch_size, center=True, scale=True)
    layer.build(shape)
    gamma, beta = rng.normal(size=shape[-1:]), rng.normal(size=shape[-1:])
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)

    outputs = layer(x, training=True)

    expected, ghost_mean, ghost_variance = numpy_ghost_normalize(
        x, virtual_batch_size, gamma, beta
    )
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    # Moving statistics start at 0 and 1 and move towards the mean of the ghost statistics.
    np.testing.assert_allclose(layer.moving_mean.numpy(), (1 - MOMENTUM) * ghost_mean, atol=1e-6)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), MOMENTUM + (1 - MOMENTUM) * ghost_variance, atol=1e-6
    )


def test_ghost_batch_norm_inference_uses_moving_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3)).astype("float32")  # 6 is not a multiple of 4: no ghosts here
    layer = GhostBatchNormalization(4)
    layer.build(x.shape)
    moving_mean, moving_variance = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.0])
    layer.moving_mean.assign(moving_mean)
    layer.moving_variance.assign(moving_variance)

    outputs = layer(x, training=False)

    np.testing.assert_allclose(
        outputs, (x - moving_mean) / np.sqrt(moving_variance + EPSILON), atol=1e-6
    )
    # Inference leaves the moving statistics alone.
    np.testing.assert_array_equal(layer.moving_mean.numpy(), moving_mean)


def test_ghost_batch_norm_indivisible_batch_raises():
    layer = GhostBatchNormalization(4)
    with pytest.raises(ValueError, match="divisible by virtual_batch_size=4"):
        layer(np.zeros((6, 3), "float32"), training=True)  # batch size known: at trace time

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def training_step(x):
        return layer(x, training=True)

    training_step(tf.zeros((8, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="divisible"):
        training_step(tf.zeros((6, 3)))  # batch size unknown when traced: when run


def test_ghost_batch_norm_model_fits_and_round_trips_keras_file(tmp_path):
    model = models.build(
        "lenet", input_shape=MNIST, num_classes=10, batch_norm=True, ghost_batch_size=4,
        bn_affine=True
    )
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, *MNIST)).astype("float32")
    y = rng.integers(0, 10, size=16)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # moves the moving statistics

    path = tmp_path / "lenet_gbn.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)

    assert isinstance(reloaded.get_layer("bn_1"), GhostBatchNormalization)
    assert reloaded.get_layer("bn_1").virtual_batch_size == 4
    for training in (False, True):
        np.testing.assert_array_equal(
            model(x[:8], training=training), reloaded(x[:8], training=training)
        )


def test_ghost_batch_norm_per_replica_under_mirrored_strategy(two_replicas):
    strategy = two_replicas
    virtual_batch_size, global_batch = 2, 8  # 4 examples, i.e. 2 ghost batches, per replica
    x = np.random.default_rng(3).normal(size=(global_batch, 3)).astype("float32")
    with strategy.scope():
        layer = GhostBatchNormalization(virtual_batch_size)
        layer.build(x.shape)
    batches = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(x).batch(global_batch)
    )

    @tf.function
    def training_step(batch):
        per_replica = strategy.run(lambda inputs: layer(inputs, training=True), args=(batch,))
        return strategy.gather(per_replica, axis=0)

    outputs = training_step(next(iter(batches)))

    expected, ghost_mean, ghost_variance = numpy_ghost_normalize(x, virtual_batch_size)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    # Each replica's update is averaged: the mean over all ghost batches of the global batch.
    np.testing.assert_allclose(layer.moving_mean.numpy(), (1 - MOMENTUM) * ghost_mean, atol=1e-6)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), MOMENTUM + (1 - MOMENTUM) * ghost_variance, atol=1e-6
    )
