"""A small Transformer encoder classifier that reads an image as a sequence of its rows.

Vaswani et al., "Attention is all you need" (NeurIPS 2017) for the encoder block; the
pre-norm form, learned position embedding, final layer norm and classification from the
encoded tokens follow ViT (Dosovitskiy et al., ICLR 2021, section 3.1, equations 1-4), with
one token per image row instead of per patch and mean pooling over the tokens instead of a
class token (every parameter then sits in a Dense, EinsumDense, LayerNormalization or
Embedding layer, which K-FAC has blocks for). For a (H, W, C) image, with d = `width`:

    z_0 = patch(rows(x)) + position_embedding(0, …, H−1)       rows: H tokens of W·C pixels
    z'_l = z_{l−1} + attention_l(norm(z_{l−1}))                 l = 1 … depth
    z_l = z'_l + dense(relu(dense(norm(z'_l))))                 MLP d → mlp_width → d
    logits = top(mean over tokens of norm(z_depth))

Layers (BlockBuilder names): `rows` (reshape), `dense_1` (patch, W·C → d), `positions`
(the token indices 0 … H−1), `embedding_1` (H × d), `add_1`; per block `norm_<i>`,
`attention_<j>` (MultiHeadAttention, `num_heads` heads of d / num_heads, biases), `add`,
`norm`, `dense` + `relu`, `dense`, `add`; then `norm`, `pool`, `top`. No dropout: a run is
a function of its seed only. Defaults (d = 64, 2 blocks, 4 heads, MLP 128) are sized for
MNIST on a CPU.
"""
from __future__ import annotations

import keras
from keras import ops

from .layers import BlockBuilder, check_int


@keras.saving.register_keras_serializable(package="tfwd")
class TokenPositions(keras.layers.Layer):
    """The position index of every token: [B, T, …] → int32 [B, T] with entries 0 … T−1.

    It has no weights; it turns the token axis into the indices a position `Embedding` reads,
    one row per example, so the embedding's statistics count each example's positions.
    """

    def call(self, tokens):
        batch_size, num_tokens = ops.shape(tokens)[0], ops.shape(tokens)[1]
        positions = ops.arange(num_tokens, dtype="int32")
        return ops.broadcast_to(ops.expand_dims(positions, 0), (batch_size, num_tokens))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:2])


def transformer(
    inputs: keras.KerasTensor,
    num_classes: int,
    blocks: BlockBuilder,
    *,
    depth: int = 2,
    width: int = 64,
    num_heads: int = 4,
    mlp_width: int | None = None,
) -> keras.KerasTensor:
    """Returns the logits of a `depth`-block pre-norm encoder of `width` over image rows.

    `mlp_width` (default 2 · width) is the hidden width of each block's MLP.
    """
    check_int("transformer depth (number of encoder blocks)", depth, minimum=1)
    check_int("transformer width", width, minimum=1)
    check_int("transformer num_heads", num_heads, minimum=1)
    mlp_width = 2 * width if mlp_width is None else mlp_width
    check_int("transformer mlp_width", mlp_width, minimum=1)
    if len(inputs.shape) not in (3, 4):
        raise ValueError(
            f"transformer reads images row by row: input_shape must be (height, width) or "
            f"(height, width, channels), got {tuple(inputs.shape[1:])}."
        )
    num_tokens = inputs.shape[1]
    row_size = 1
    for size in inputs.shape[2:]:
        row_size *= size
    tokens = keras.layers.Reshape((num_tokens, row_size), name="rows")(inputs)
    tokens = blocks.dense(tokens, width)
    positions = TokenPositions(name="positions")(tokens)
    x = blocks.add([tokens, blocks.embedding(positions, num_tokens, width)])
    for _ in range(depth):
        x = blocks.add([x, blocks.self_attention(blocks.layer_norm(x), num_heads)])
        hidden = blocks.dense_relu(blocks.layer_norm(x), mlp_width)
        x = blocks.add([x, blocks.dense(hidden, width)])
    x = blocks.layer_norm(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return blocks.top(x, num_classes)
