"""CIFAR ResNets (ResNet32, ResNet44) with a width factor.

He et al., "Deep residual learning for image recognition" (CVPR 2016), section 4.2: a 3x3
stem convolution, 3 stages of n basic blocks (6n + 2 weight layers), global average pooling and
a dense output layer. Widened by a factor k as in Zagoruyko & Komodakis, "Wide residual
networks" (BMVC 2016). Used by the weight-decay paper (seed 000, appendix A: ResNet32 with
k = 4) and the curvature-noise paper (seed 002, table 1: ResNet44, k = 1 on CIFAR-10 and
k = 2 on CIFAR-100).

    conv_1: 3x3, 16k channels -> bn -> relu
    3 stages of widths 16k, 32k, 64k, n blocks each; the first block of stages 2 and 3 has
    stride 2. Basic block (He et al.'s post-activation form):
        y = bn(conv3x3(relu(bn(conv3x3_stride(x)))));  out = relu(y + shortcut(x))
    shortcut(x) = x, or bn(conv1x1_stride(x)) (projection, "option B") at stride 2, where the
    width doubles. Within a block the convs are numbered main path first, then the projection.
    global average pooling -> top: num_classes logits.
Batch norm layers are omitted when batch norm is disabled (the convs then have biases).
"""
from __future__ import annotations

import keras

from .layers import BlockBuilder, check_int


def resnet(
    inputs: keras.KerasTensor,
    num_classes: int,
    blocks: BlockBuilder,
    *,
    blocks_per_stage: int,
    width_factor: int,
) -> keras.KerasTensor:
    """Returns the logits of a CIFAR ResNet of 6 * blocks_per_stage + 2 weight layers."""
    check_int("resnet width_factor", width_factor, minimum=1)
    x = blocks.conv_relu(inputs, 16 * width_factor)
    for stage, base_width in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = basic_block(x, base_width * width_factor, strides, blocks)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return blocks.top(x, num_classes)


def basic_block(x: keras.KerasTensor, filters: int, strides: int, blocks: BlockBuilder):
    """Two 3x3 convs with a residual connection (He et al. 2016, figure 2)."""
    y = blocks.conv_relu(x, filters, strides=strides)
    y = blocks.conv(y, filters)
    shortcut = x
    # The width doubles exactly where the resolution halves, so stride 2 <=> projection.
    if strides != 1:
        shortcut = blocks.conv(x, filters, kernel_size=1, strides=strides)
    return blocks.relu(blocks.add([y, shortcut]))


def resnet32(
    inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder, *, width_factor: int = 4
) -> keras.KerasTensor:
    """ResNet32: 5 blocks per stage; widened x4 by default, as in seed 000."""
    return resnet(inputs, num_classes, blocks, blocks_per_stage=5, width_factor=width_factor)


def resnet44(
    inputs: keras.KerasTensor, num_classes: int, blocks: BlockBuilder, *, width_factor: int = 1
) -> keras.KerasTensor:
    """ResNet44: 7 blocks per stage; width factor 1 (CIFAR-10) or 2 (CIFAR-100) in seed 002."""
    return resnet(inputs, num_classes, blocks, blocks_per_stage=7, width_factor=width_factor)
