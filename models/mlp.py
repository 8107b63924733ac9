"""Fully-connected ReLU network for MNIST.

"Three Mechanisms of Weight Decay Regularization" (Zhang et al., ICLR 2019; seed 000),
section 4.2 / figure 5 and appendix A, trains "simple fully-connected networks with different
depth and width" on MNIST; the default here, 784-1000-1000-10, is the authors' MNIST MLP (the
paper's text lists no sizes). The curvature-noise paper (seed 002, section 4.3, table 1) also
uses an MNIST MLP.

Layers: flatten, `depth` x [dense_i (`width` units) -> bn_i -> relu_i], `top` (logits).
"""
from __future__ import annotations

import keras

from .layers import BlockBuilder, check_int


def mlp(
    inputs: keras.KerasTensor,
    num_classes: int,
    blocks: BlockBuilder,
    *,
    depth: int = 2,
    width: int = 1000,
) -> keras.KerasTensor:
    """Returns the logits of a `depth`-hidden-layer MLP of `width` units per hidden layer."""
    check_int("mlp depth (number of hidden layers)", depth, minimum=0)
    check_int("mlp width", width, minimum=1)
    x = keras.layers.Flatten(name="flatten")(inputs)
    for _ in range(depth):
        x = blocks.dense_relu(x, width)
    return blocks.top(x, num_classes)
