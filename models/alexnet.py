"""The small AlexNet for 32x32 CIFAR images.

The CIFAR-sized AlexNet of Zhang et al., "Understanding deep learning requires rethinking
generalization" (ICLR 2017, appendix A; after Krizhevsky et al. 2012 and the cuda-convnet /
TensorFlow CIFAR-10 tutorial model), as used on CIFAR-10/100 by the curvature-noise paper
(seed 002, section 4 and table 1). Zhang et al. follow each pooling with local response
normalization; here batch norm (if enabled) follows each conv/dense instead, before the ReLU:

    conv_1: 5x5, 64 channels, 'same'  -> pool_1: 3x3 max, stride 2 -> 16x16x64 (for 32x32 input)
    conv_2: 5x5, 64 channels, 'same'  -> pool_2: 3x3 max, stride 2 -> 8x8x64 = 4096 features
    dense_1: 384 units, dense_2: 192 units, top: num_classes logits.
"""
from __future__ import annotations

import keras

from .layers import BlockBuilder


def alexnet(inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder) -> keras.KerasTensor:
    """Returns the logits of the small AlexNet (64, 64 conv channels; 384, 192 hidden units)."""
    x = inputs
    for _ in range(2):
        x = blocks.conv_relu(x, 64, kernel_size=5)
        x = blocks.max_pool(x, 3, strides=2)
    x = keras.layers.Flatten(name="flatten")(x)
    x = blocks.dense_relu(x, 384)
    x = blocks.dense_relu(x, 192)
    return blocks.top(x, num_classes)
