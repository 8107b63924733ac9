"""Curvature blocks against independent references.

Batch of one with exact Gauss-Newton output curvature (E[uuᵀ] = I: all K one-hot u), where
GN = JᵀJ with J = ∂z/∂θ from ``tape.jacobian``:
* where the block's identity is exact, ``to_dense`` equals the exact block (Dense / EinsumDense
  / Conv1D with one position, Embedding with one token, reduce with inputs equal at every
  position) or its entries the block keeps (per channel for scale-and-shift and depthwise);
* otherwise (KFAC-expand / reduce over T > 1 positions) the factors equal their defining
  formula evaluated by brute force from an explicit forward pass and per-position Jacobians.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd.curvature import (BlockOptions, CurvatureBlock, Record, StateSpec, block_factors,
                            block_for, register_block, split_blocks)
from tfwd.curvature.registry import _BLOCKS

CLASSES = 3
DTYPE = "float64"


def _init(seed):
    return keras.initializers.RandomNormal(stddev=0.7, seed=seed)


def model_with(layer, input_shape, head_inputs=None, integer_inputs=False):
    """inputs → layer → tanh → flatten → Dense(CLASSES) logits, in float64."""
    inputs = keras.Input(input_shape, dtype="int32" if integer_inputs else DTYPE)
    hidden = keras.layers.Activation("tanh", dtype=DTYPE)(layer(inputs))
    hidden = keras.layers.Flatten(dtype=DTYPE)(hidden)
    logits = keras.layers.Dense(CLASSES, kernel_initializer=_init(9), dtype=DTYPE,
                                name="top")(hidden)
    return keras.Model(inputs, logits)


def exact_gauss_newton(model, x, variables) -> np.ndarray:
    """Σ_k J_kᵀ J_k for one example: θ = concat(v.ravel()) in ``variables`` order."""
    with tf.GradientTape(persistent=True) as tape:
        logits = model(x, training=True)
    jacobians = tape.jacobian(logits, variables, experimental_use_pfor=False)
    J = np.concatenate([tf.convert_to_tensor(j).numpy().reshape(CLASSES, -1) for j in jacobians],
                       axis=1)
    return J.T @ J


def block_dense(model, block, x):
    factors = block_factors(model, [block], x, curvature="gauss_newton",
                            gauss_newton_samples=None, training=True)[0]
    return block.to_dense(factors).numpy(), [f.numpy() for f in factors]


def random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


# ------------------------------------------------------------------ exact identities
@pytest.mark.parametrize("weight_sharing", ["expand", "reduce"])
@pytest.mark.parametrize("make, input_shape", [
    (lambda: keras.layers.Dense(4, kernel_initializer=_init(1), bias_initializer=_init(2),
                                dtype=DTYPE), (3,)),
    (lambda: keras.layers.Dense(4, kernel_initializer=_init(1), bias_initializer=_init(2),
                                dtype=DTYPE), (1, 3)),  # one token of a sequence
    (lambda: keras.layers.EinsumDense("abc,cde->abde", (1, 2, 3), bias_axes="de",
                                      kernel_initializer=_init(1), bias_initializer=_init(2),
                                      dtype=DTYPE), (1, 3)),
    (lambda: keras.layers.EinsumDense("abcd,cde->abe", (1, 3), bias_axes="e",
                                      kernel_initializer=_init(1), bias_initializer=_init(2),
                                      dtype=DTYPE), (1, 2, 2)),
    (lambda: keras.layers.Conv1D(3, 3, kernel_initializer=_init(1), bias_initializer=_init(2),
                                 dtype=DTYPE), (3, 2)),  # one output step
    (lambda: keras.layers.Conv2D(2, 2, kernel_initializer=_init(1), bias_initializer=_init(2),
                                 dtype=DTYPE), (2, 2, 2)),  # one output pixel
])
def test_one_position_kronecker_block_equals_the_exact_gauss_newton_block(make, input_shape,
                                                                         weight_sharing):
    # T = 1: expand and reduce are the same A ⊗ G, exact for one example.
    layer = make()
    model = model_with(layer, input_shape)
    x = random((1, *input_shape), 0)
    dense, _ = block_dense(model, block_for(layer, BlockOptions(weight_sharing)), x)
    np.testing.assert_allclose(dense, exact_gauss_newton(model, x, block_for(layer).variables),
                               rtol=1e-10, atol=1e-12)


def test_reduce_is_exact_when_every_position_sees_the_same_input():
    # a_t = a for all t: Σ_t a g_tᵀ = a ĝᵀ, so the reduce block is the exact one.
    layer = keras.layers.Dense(3, kernel_initializer=_init(1), bias_initializer=_init(2),
                               dtype=DTYPE)
    model = model_with(layer, (4, 2))
    x = np.repeat(random((1, 1, 2), 0), 4, axis=1)
    block = block_for(layer, BlockOptions("reduce"))
    dense, _ = block_dense(model, block, x)
    np.testing.assert_allclose(dense, exact_gauss_newton(model, x, block.variables), rtol=1e-10,
                               atol=1e-12)
    expand, _ = block_dense(model, block_for(layer, BlockOptions("expand")), x)
    assert np.abs(expand - dense).max() > 1e-3 * np.abs(dense).max()  # expand is not exact here


def test_embedding_block_of_one_token_equals_the_exact_gauss_newton_block():
    layer = keras.layers.Embedding(5, 3, embeddings_initializer=_init(1), dtype=DTYPE)
    model = model_with(layer, (1,), integer_inputs=True)
    x = np.array([[3]], np.int32)
    block = block_for(layer)
    dense, (frequencies, _) = block_dense(model, block, x)
    np.testing.assert_array_equal(frequencies, np.eye(5)[3])
    np.testing.assert_allclose(dense, exact_gauss_newton(model, x, block.variables), rtol=1e-10,
                               atol=1e-12)


def _per_channel_mask(channels, per_channel):
    index = np.arange(per_channel * channels) % channels
    return index[:, None] == index[None, :]


@pytest.mark.parametrize("scale_shift", ["per_channel", "diagonal"])
@pytest.mark.parametrize("make, input_shape", [
    (lambda: keras.layers.LayerNormalization(gamma_initializer=_init(1), beta_initializer=_init(2),
                                             dtype=DTYPE), (3, 4)),
    (lambda: keras.layers.BatchNormalization(gamma_initializer=_init(1), beta_initializer=_init(2),
                                             dtype=DTYPE), (2, 3, 4)),
    (lambda: keras.layers.LayerNormalization(center=False, gamma_initializer=_init(1),
                                             dtype=DTYPE), (3, 4)),
])
def test_scale_and_shift_block_keeps_the_exact_entries_of_each_channel(make, input_shape,
                                                                      scale_shift):
    layer = make()
    model = model_with(layer, input_shape)
    x = random((1, *input_shape), 0)
    block = block_for(layer, BlockOptions(scale_shift=scale_shift))
    dense, _ = block_dense(model, block, x)
    exact = exact_gauss_newton(model, x, block.variables)
    channels = input_shape[-1]
    mask = _per_channel_mask(channels, len(block.variables))
    if scale_shift == "diagonal":
        mask = np.eye(len(mask), dtype=bool)
    np.testing.assert_allclose(dense, np.where(mask, exact, 0.0), rtol=1e-9, atol=1e-12)
    assert np.abs(np.where(mask, 0.0, exact)).max() > 1e-3  # the dropped part is not zero


@pytest.mark.parametrize("channels", [1, 2])
def test_depthwise_block_is_the_exact_per_channel_block_at_one_output_pixel(channels):
    layer = keras.layers.DepthwiseConv2D(2, depth_multiplier=2, depthwise_initializer=_init(1),
                                         bias_initializer=_init(2), dtype=DTYPE)
    model = model_with(layer, (2, 2, channels))
    x = random((1, 2, 2, channels), 0)
    block = block_for(layer)
    dense, _ = block_dense(model, block, x)
    exact = exact_gauss_newton(model, x, block.variables)
    # θ index (r·C + c)·m + j: parameter r of output j of channel c.
    channel_of = (np.arange(len(exact)) // 2) % channels
    mask = channel_of[:, None] == channel_of[None, :]
    np.testing.assert_allclose(dense, np.where(mask, exact, 0.0), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ stated approximations
def _dense_sequence_model():
    """x [1, T, 2] → Dense(3) → tanh → flatten → top; with the explicit forward pass."""
    layer = keras.layers.Dense(3, kernel_initializer=_init(1), bias_initializer=_init(2),
                               dtype=DTYPE)
    model = model_with(layer, (4, 2))
    top = model.get_layer("top")

    def logits_from_preactivations(s):
        return tf.matmul(tf.reshape(tf.tanh(s), [1, -1]), top.kernel) + top.bias

    return layer, model, logits_from_preactivations


@pytest.mark.parametrize("weight_sharing", ["expand", "reduce"])
def test_weight_shared_factors_equal_their_formulas_by_brute_force(weight_sharing):
    layer, model, head = _dense_sequence_model()
    x = random((1, 4, 2), 0)
    a = np.concatenate([x[0], np.ones((4, 1))], axis=1)  # ã_t, [T, 3]
    s = tf.constant(x[0] @ layer.kernel.numpy() + layer.bias.numpy())
    with tf.GradientTape() as tape:
        tape.watch(s)
        logits = head(s)
    g = tape.jacobian(logits, s).numpy()[0]  # [K, T, d_out]: g_tk = ∂z_k/∂s_t
    if weight_sharing == "expand":
        A = a.T @ a / 4
        G = np.einsum("ktd,kte->de", g, g)
    else:
        A = np.outer(a.mean(0), a.mean(0))
        G = np.einsum("kd,ke->de", g.sum(1), g.sum(1))
    _, (A_block, G_block) = block_dense(model, block_for(layer, BlockOptions(weight_sharing)), x)
    np.testing.assert_allclose(A_block, A, rtol=1e-10)
    np.testing.assert_allclose(G_block, G, rtol=1e-9, atol=1e-12)


def test_einsum_projection_factors_equal_the_dense_formula_over_tokens():
    # The MultiHeadAttention query projection on T = 3 tokens: rows a_t, g_t flattened (d, e).
    layer = keras.layers.EinsumDense("abc,cde->abde", (3, 2, 2), bias_axes="de",
                                     kernel_initializer=_init(1), bias_initializer=_init(2),
                                     dtype=DTYPE)
    model = model_with(layer, (3, 4))
    x = random((1, 3, 4), 0)
    top = model.get_layer("top")
    s = tf.constant(np.einsum("tc,cde->tde", x[0], layer.kernel.numpy()) + layer.bias.numpy())
    with tf.GradientTape() as tape:
        tape.watch(s)
        logits = tf.matmul(tf.reshape(tf.tanh(s), [1, -1]), top.kernel) + top.bias
    g = tape.jacobian(logits, s).numpy()[0].reshape(CLASSES, 3, 4)
    a = np.concatenate([x[0], np.ones((3, 1))], axis=1)
    _, (A, G) = block_dense(model, block_for(layer), x)
    np.testing.assert_allclose(A, a.T @ a / 3, rtol=1e-10)
    np.testing.assert_allclose(G, np.einsum("ktd,kte->de", g, g), rtol=1e-9, atol=1e-12)


def test_embedding_frequencies_count_each_token():
    layer = keras.layers.Embedding(6, 2, dtype=DTYPE)
    ids = np.array([[1, 4, 4], [0, 4, 1]], np.int32)
    model = model_with(layer, (3,), integer_inputs=True)
    _, (frequencies, _) = block_dense(model, block_for(layer), ids)
    np.testing.assert_allclose(frequencies, np.bincount(ids.ravel(), minlength=6) / ids.size)


# ------------------------------------------------------------------ registry
class Scale(keras.layers.Layer):
    """s = a ∘ w, one weight per feature: a custom layer for the registry test."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, inputs):
        return inputs * self.w


class ScaleBlock(CurvatureBlock):
    """Diagonal curvature of w: F_i = 1/B Σ_b (a_bi g_bi)², preconditioned by 1/(F + λ)."""

    @property
    def variables(self):
        return [self.layer.w]

    def forward(self, inputs, *args, **kwargs):
        s = inputs * self.layer.w
        return s, Record(inputs=inputs, preactivations=s)

    def factor_specs(self):
        return [StateSpec("F", tuple(self.layer.w.shape))]

    def inverse_specs(self):
        return [StateSpec("F_inverse", tuple(self.layer.w.shape), "ones")]

    def input_statistics(self, record):
        return []

    def output_statistics(self, record, g):
        return [tf.reduce_mean(tf.square(self.cast(record.inputs * g)), axis=0)]

    def damped_inverses(self, factors, damping):
        return [1.0 / (factors[0] + damping)]

    def inverse_cost(self):
        return self.layer.w.shape[0]

    def precondition(self, gradients, inverses):
        return [inverses[0] * gradients[0]]

    def to_dense(self, factors):
        return tf.linalg.diag(factors[0])


def test_a_registered_custom_layer_gets_its_block_and_others_fall_back_with_a_warning():
    from tfwd.optimizers import KFAC

    def build():
        return keras.Sequential([keras.Input((3,)), Scale(name="scale"),
                                 keras.layers.Dense(2, name="top")])

    model = build()
    blocks, others = split_blocks(model)
    assert [b.name for b in blocks] == ["top"] and [l.name for l in others] == ["scale"]
    model.compile(optimizer=KFAC(), loss="mse")
    with pytest.warns(UserWarning, match="scale/w"):
        model.optimizer.attach(model)
    register_block(Scale, ScaleBlock)
    try:
        model = build()
        x = random((1, 3), 0).astype("float32")
        block = block_for(model.get_layer("scale"))
        dense, _ = block_dense(model, block, x)
        with tf.GradientTape() as tape:
            logits = model(x)
        J = tape.jacobian(logits, block.layer.w).numpy()[0]  # [2, 3]
        np.testing.assert_allclose(dense, np.diag(np.diag(J.T @ J)), rtol=1e-5)
    finally:
        del _BLOCKS[Scale]


def test_register_block_refuses_what_is_not_a_block():
    with pytest.raises(TypeError, match="CurvatureBlock"):
        register_block(Scale, object)


# ------------------------------------------------------------------ one K-FAC step, in numpy
LEARNING_RATE, DAMPING, WEIGHT_DECAY, KL_CLIP = 0.1, 0.05, 1e-2, 1e-4


def sequence_model():
    """Embedding → LayerNorm → MultiHeadAttention → Dense on tokens → Conv1D → BatchNorm → top."""
    ids = keras.Input((3,), dtype="int32")
    h = keras.layers.Embedding(7, 4, embeddings_initializer=_init(1), dtype=DTYPE,
                               name="embedding")(ids)
    h = keras.layers.LayerNormalization(beta_initializer=_init(2), dtype=DTYPE, name="norm")(h)
    h = keras.layers.MultiHeadAttention(2, 2, kernel_initializer=_init(3), dtype=DTYPE,
                                        name="attention")(h, h)
    h = keras.layers.Dense(4, activation="tanh", kernel_initializer=_init(4), dtype=DTYPE,
                           name="dense")(h)
    h = keras.layers.Conv1D(2, 2, kernel_initializer=_init(5), dtype=DTYPE, name="conv1d")(h)
    h = keras.layers.BatchNormalization(beta_initializer=_init(6), dtype=DTYPE, name="bn")(h)
    h = keras.layers.Flatten(dtype=DTYPE)(h)
    logits = keras.layers.Dense(CLASSES, kernel_initializer=_init(7), dtype=DTYPE, name="top")(h)
    x = np.random.default_rng(0).integers(0, 7, (4, 3)).astype(np.int32)
    return keras.Model(ids, logits), x


def image_model():
    """Conv2D → DepthwiseConv2D → top."""
    images = keras.Input((4, 4, 2), dtype=DTYPE)
    h = keras.layers.Conv2D(2, 2, kernel_initializer=_init(1), dtype=DTYPE, name="conv")(images)
    h = keras.layers.DepthwiseConv2D(2, depth_multiplier=2, activation="tanh",
                                     depthwise_initializer=_init(2), bias_initializer=_init(3),
                                     dtype=DTYPE, name="depthwise")(h)
    h = keras.layers.Flatten(dtype=DTYPE)(h)
    logits = keras.layers.Dense(CLASSES, kernel_initializer=_init(4), dtype=DTYPE, name="top")(h)
    # float32-representable: fit's data adapter casts float inputs to floatx.
    return keras.Model(images, logits), random((4, 4, 4, 2), 0).astype(np.float32).astype(np.float64)


def numpy_pi(mean_a, mean_g):
    return np.sqrt(mean_a / mean_g)


def numpy_kronecker_direction(A, G, X):
    """A_λ⁻¹ X G_λ⁻¹ with π = sqrt((tr A/m)/(tr G/n)) (Martens & Grosse 2015, §6.3)."""
    pi = numpy_pi(np.trace(A) / len(A), np.trace(G) / len(G))
    root = np.sqrt(DAMPING)
    return (np.linalg.inv(A + pi * root * np.eye(len(A))) @ X
            @ np.linalg.inv(G + root / pi * np.eye(len(G))))


def numpy_direction(block, factors, gradients):
    """P for one block from its factors, written from each block's docstring equation."""
    from tfwd.curvature import (DepthwiseConv2DBlock, EmbeddingBlock, KroneckerFactoredBlock,
                                ScaleAndShiftBlock)

    if isinstance(block, EmbeddingBlock):
        A, G = factors
        pi = numpy_pi(A.mean(), np.trace(G) / len(G))
        root = np.sqrt(DAMPING)
        return [(gradients[0] / (A + pi * root)[:, None]) @ np.linalg.inv(G + root / pi * np.eye(len(G)))]
    if isinstance(block, ScaleAndShiftBlock):
        v = np.stack([g.ravel() for g in gradients], axis=-1)  # [C, k]
        F = factors[0]
        if F.ndim == 2:
            direction = v / (F + DAMPING)
        else:
            direction = np.stack([np.linalg.solve(F[c] + DAMPING * np.eye(F.shape[1]), v[c])
                                  for c in range(len(v))])
        return [direction[:, i].reshape(g.shape) for i, g in enumerate(gradients)]
    if isinstance(block, DepthwiseConv2DBlock):
        kernel = gradients[0]
        kh, kw, channels, m = kernel.shape
        out = [np.zeros_like(g) for g in gradients]
        for c in range(channels):
            X = np.concatenate([kernel[:, :, c, :].reshape(kh * kw, m),
                                gradients[1].reshape(channels, m)[c:c + 1]])
            P = numpy_kronecker_direction(factors[0][c], factors[1][c], X)
            out[0][:, :, c, :] = P[:-1].reshape(kh, kw, m)
            out[1].reshape(channels, m)[c] = P[-1]
        return out
    assert isinstance(block, KroneckerFactoredBlock)
    kernel = gradients[0]
    X = kernel.reshape(-1, kernel.shape[-1] if not hasattr(block, "layout") else block.output_dim)
    if len(gradients) > 1:
        X = np.concatenate([X, gradients[1].reshape(1, -1)])
    P = numpy_kronecker_direction(factors[0], factors[1], X)
    return [P[:-1].reshape(kernel.shape), P[-1].reshape(gradients[1].shape)] \
        if len(gradients) > 1 else [P.reshape(kernel.shape)]


@pytest.mark.parametrize("build, scale_shift", [(sequence_model, "per_channel"),
                                                (sequence_model, "diagonal"),
                                                (image_model, "per_channel")])
def test_one_kfac_step_with_every_block_matches_numpy(build, scale_shift):
    from tfwd.optimizers import KFAC
    from tfwd.train import TrainStep

    model, x = build()
    y = np.arange(len(x)) % CLASSES
    optimizer = KFAC(LEARNING_RATE, gauss_newton_samples=None, damping=DAMPING, momentum=0.0,
                     cov_every=1, inv_every=1, kl_clip=KL_CLIP, weight_decay=WEIGHT_DECAY,
                     scale_shift=scale_shift)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss)
    optimizer.attach(model)  # every layer has a block: no fallback warning
    assert {v.path for b in optimizer.curvature_blocks for v in b.variables} == \
        {v.path for v in model.trainable_variables}
    TrainStep(model).install()
    before = [v.numpy() for v in model.trainable_variables]
    statistics = block_factors(model, optimizer.curvature_blocks, x, curvature="gauss_newton",
                               gauss_newton_samples=None, training=True)
    with tf.GradientTape() as tape:
        value = loss(y, model(x, training=True))
    gradients = [tf.convert_to_tensor(g).numpy() for g in
                 tape.gradient(value, model.trainable_variables)]
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)

    index = {v.path: i for i, v in enumerate(model.trainable_variables)}
    directions = [None] * len(before)
    for block, expected in zip(optimizer.curvature_blocks, statistics):
        factors = [f.numpy() for f in block.factors]  # the first update: this batch's statistics
        for factor, value in zip(factors, expected):
            np.testing.assert_allclose(factor, value.numpy(), rtol=1e-9, atol=1e-14)
        positions = [index[v.path] for v in block.variables]
        for i, d in zip(positions, numpy_direction(block, factors, [gradients[i] for i in positions])):
            directions[i] = d
    inner = sum(np.sum(g * p) for g, p in zip(gradients, directions))
    scale = min(1.0, np.sqrt(KL_CLIP / (LEARNING_RATE**2 * inner)))
    assert scale < 0.9  # the clip acts
    for variable, theta, direction in zip(model.trainable_variables, before, directions):
        expected = -LEARNING_RATE * scale * direction - LEARNING_RATE * WEIGHT_DECAY * theta
        np.testing.assert_allclose(variable.numpy() - theta, expected, rtol=1e-6,
                                   atol=1e-9 * np.abs(expected).max(), err_msg=variable.path)


# ------------------------------------------------------------------ coverage of real models
@pytest.mark.parametrize("name, kwargs, input_shape", [
    ("transformer", {}, (28, 28, 1)),
    ("resnet32", {"batch_norm": True, "bn_affine": True}, (32, 32, 3)),
])
def test_kfac_blocks_cover_the_transformer_and_a_bn_affine_resnet32(name, kwargs, input_shape):
    import tfwd.models

    model = tfwd.models.build(name, input_shape=input_shape, num_classes=10, seed=0, **kwargs)
    blocks, _ = split_blocks(model)
    covered = sum(v.shape.num_elements() for b in blocks for v in b.variables)
    total = sum(v.shape.num_elements() for v in model.trainable_variables)
    assert covered >= 0.99 * total, (covered, total)


# ------------------------------------------------------------------ dtypes and replicas
def attention_model(dtype=None, batch_norm=True):
    """``sequence_model`` in the current dtype policy (weights are copied in by the caller)."""
    ids = keras.Input((3,), dtype="int32")
    h = keras.layers.Embedding(7, 4, name="embedding", dtype=dtype)(ids)
    h = keras.layers.LayerNormalization(name="norm", dtype=dtype)(h)
    h = keras.layers.MultiHeadAttention(2, 2, name="attention", dtype=dtype)(h, h)
    h = keras.layers.Dense(4, activation="tanh", name="dense", dtype=dtype)(h)
    h = keras.layers.Conv1D(2, 2, name="conv1d", dtype=dtype)(h)
    if batch_norm:
        h = keras.layers.BatchNormalization(name="bn", dtype=dtype)(h)
    h = keras.layers.Flatten(dtype=dtype)(h)
    # Logits in float32 under mixed precision, as Keras recommends.
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    logits = keras.layers.Dense(CLASSES, name="top", dtype="float32" if mixed else dtype)(h)
    return keras.Model(ids, logits)


def kfac_steps(model, weights, steps=3, loss_scale=None):
    """Weights after ``steps`` K-FAC steps (statistics and inverses every step) from ``weights``;
    ``loss_scale``: wrap K-FAC in a LossScaleOptimizer starting at that scale."""
    from tfwd.optimizers import KFAC
    from tfwd.train import TrainStep

    for variable, value in zip(model.trainable_variables, weights):
        variable.assign(value.astype(variable.dtype))
    rng = np.random.default_rng(1)
    x = rng.integers(0, 7, (8 * steps, 3)).astype(np.int32)
    y = rng.integers(0, CLASSES, 8 * steps)
    with model.distribute_strategy.scope():
        optimizer = KFAC(0.05, gauss_newton_samples=None, damping=0.05, cov_every=1,
                         inv_every=1, kl_clip=1e-2, weight_decay=1e-3)
        compiled = optimizer if loss_scale is None else \
            keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=loss_scale)
        model.compile(optimizer=compiled,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        optimizer.attach(model)
    TrainStep(model).install()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    return [v.numpy().astype(np.float64) for v in model.trainable_variables]


def _relative_change_error(result, reference, start):
    change = np.concatenate([(r - s).ravel() for r, s in zip(reference, start)])
    error = np.concatenate([(a - r).ravel() for a, r in zip(result, reference)])
    return np.linalg.norm(error) / np.linalg.norm(change)


@pytest.mark.parametrize("policy, tolerance", [
    # bfloat16 keeps 8 significant bits (ε = 2⁻⁸ ≈ 4e-3 per rounding) through the forward and
    # backward passes; statistics, inverses and updates are float32. float16 keeps 11 bits
    # (ε = 2⁻¹¹ ≈ 4.9e-4), 8× finer: its errors measured 2e-3 to 6.4e-3 of the change, depending
    # on the initial weights. float64: the float32 reference's own rounding (ε = 6e-8, amplified
    # by the damped inverses) dominates.
    ("mixed_bfloat16", 5e-2), ("mixed_float16", 1e-2), ("float64", 1e-4),
])
def test_mixed_precision_and_float64_kfac_steps_agree_with_float32(policy, tolerance):
    keras.utils.set_random_seed(0)  # the initial weights, independent of the test order
    reference_model = attention_model()
    start = [v.numpy() for v in reference_model.trainable_variables]
    reference = kfac_steps(reference_model, start)
    previous = keras.config.dtype_policy().name
    try:
        keras.config.set_dtype_policy(policy)
        model = attention_model()
        if policy.startswith("mixed"):
            assert model.get_layer("dense").compute_dtype == policy.split("_")[1]
            assert all(v.dtype == "float32" for v in model.trainable_variables)
        # float16: a loss scale of 2⁷ that no step overflows (Keras's default 2¹⁵ skips the
        # first steps, as it should); K-FAC must see the unscaled gradients.
        result = kfac_steps(model, start, loss_scale=2.0**7 if policy == "mixed_float16" else None)
        if policy == "mixed_float16":
            assert float(model.optimizer.dynamic_scale) == 2.0**7  # no step was skipped
    finally:
        keras.config.set_dtype_policy(previous)
    error = _relative_change_error(result, reference, start)
    assert error < tolerance, error
    # and the steps moved the weights far more than that
    assert _relative_change_error(start, reference, start) == pytest.approx(1.0)


def test_two_replicas_take_the_steps_of_one_with_every_sequence_block(two_replicas):
    one = attention_model(batch_norm=False)  # batch norm's statistics are per replica
    start = [v.numpy() for v in one.trainable_variables]
    single = kfac_steps(one, start)
    with two_replicas.scope():
        two = attention_model(batch_norm=False)
    replicated = kfac_steps(two, start)
    assert _relative_change_error(replicated, single, start) < 1e-4


def test_embedding_preconditions_a_sparse_gradient_row_by_row_without_densifying():
    layer = keras.layers.Embedding(50, 3, embeddings_initializer=_init(1))
    model = model_with(layer, (4,), integer_inputs=True)
    ids = np.array([[1, 7, 7, 9]], np.int32)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(tf.square(model(ids)))
    gradient = tape.gradient(value, layer.embeddings)
    assert isinstance(gradient, tf.IndexedSlices)
    block = block_for(layer)
    A = np.linspace(0.5, 1.5, 50)
    G = np.eye(3) + 0.3
    inverses = block.damped_inverses([tf.constant(A, tf.float32), tf.constant(G, tf.float32)], 0.01)
    (direction,) = block.precondition([gradient], inverses)
    assert isinstance(direction, tf.IndexedSlices)
    assert sorted(direction.indices.numpy()) == [1, 7, 9]  # each looked-up row once
    dense = np.zeros((50, 3))
    np.add.at(dense, gradient.indices.numpy(), gradient.values.numpy())
    pi = numpy_pi(A.mean(), np.trace(G) / 3)
    expected = (dense / (A + pi * 0.1)[:, None]) @ np.linalg.inv(G + 0.1 / pi * np.eye(3))
    np.testing.assert_allclose(tf.convert_to_tensor(direction).numpy(), expected, rtol=1e-5,
                               atol=1e-7)
