"""VGG11/13/16/19 in their CIFAR form.

Simonyan & Zisserman, "Very deep convolutional networks for large-scale image recognition"
(ICLR 2015), configurations A, B, D, E (table 1), as used for CIFAR by the weight-decay paper
(seed 000, appendix A: VGG16; section 4.2 / figure 5: VGG11-19) and the curvature-noise paper
(seed 002, table 1: VGG16). CIFAR form (docs/equations.md §9): 3x3 'same' convolutions, each
followed by batch norm (if enabled) and ReLU, a 2x2 max-pooling after each of the five blocks
(32x32 -> 1x1x512), then flatten and ONE dense output layer `top` (no hidden dense layers).
"""
from __future__ import annotations

import keras

from .layers import BlockBuilder

# Output channels of the 3x3 convolutions, one tuple per block (pooled after each block).
VGG_BLOCKS = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def vgg(
    inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder, *, depth: int
) -> keras.KerasTensor:
    """Returns the logits of VGG-`depth` (11, 13, 16 or 19 weight layers)."""
    if depth not in VGG_BLOCKS:
        raise ValueError(f"vgg: depth must be one of {sorted(VGG_BLOCKS)}, got {depth!r}.")
    x = inputs
    for block in VGG_BLOCKS[depth]:
        for filters in block:
            x = blocks.conv_relu(x, filters)
        x = blocks.max_pool(x, 2, strides=2)
    x = keras.layers.Flatten(name="flatten")(x)
    return blocks.top(x, num_classes)


def vgg11(inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder) -> keras.KerasTensor:
    """VGG11: 64 | 128 | 256x2 | 512x2 | 512x2."""
    return vgg(inputs, num_classes, blocks, depth=11)


def vgg13(inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder) -> keras.KerasTensor:
    """VGG13: 64x2 | 128x2 | 256x2 | 512x2 | 512x2."""
    return vgg(inputs, num_classes, blocks, depth=13)


def vgg16(inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder) -> keras.KerasTensor:
    """VGG16: 64x2 | 128x2 | 256x3 | 512x3 | 512x3."""
    return vgg(inputs, num_classes, blocks, depth=16)


def vgg19(inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder) -> keras.KerasTensor:
    """VGG19: 64x2 | 128x2 | 256x4 | 512x4 | 512x4."""
    return vgg(inputs, num_classes, blocks, depth=19)
