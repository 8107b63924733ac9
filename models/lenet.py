"""LeNet-5-style convolutional network for (Fashion-)MNIST.

LeCun et al., "Gradient-based learning applied to document recognition" (1998); used on MNIST
and Fashion-MNIST by the curvature-noise paper (seed 002, section 4 and table 1), which does not
list its layers. We use LeNet-5's sizes with max-pooling and ReLU (the modern form):

    conv_1: 5x5, 6 channels, 'same' padding (a 28x28 input plays the role of LeNet's padded 32x32)
    pool_1: 2x2 max, stride 2                          -> 14x14x6 for 28x28 inputs
    conv_2: 5x5, 16 channels, 'valid' padding          -> 10x10x16
    pool_2: 2x2 max, stride 2                          -> 5x5x16 = 400 features
    dense_1: 120 units, dense_2: 84 units, top: num_classes logits.

Each conv/dense is followed by batch norm (if enabled) and ReLU.
"""
from __future__ import annotations

import keras

from .layers import BlockBuilder


def lenet(inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder) -> keras.KerasTensor:
    """Returns the logits of LeNet-5 (6 and 16 conv channels; 120 and 84 hidden units)."""
    x = blocks.conv_relu(inputs, 6, kernel_size=5)
    x = blocks.max_pool(x, 2, strides=2)
    x = blocks.conv_relu(x, 16, kernel_size=5, padding="valid")
    x = blocks.max_pool(x, 2, strides=2)
    x = keras.layers.Flatten(name="flatten")(x)
    x = blocks.dense_relu(x, 120)
    x = blocks.dense_relu(x, 84)
    return blocks.top(x, num_classes)
