"""The public registry: which curvature block handles which Keras layer class.

``block_for(layer)`` looks a layer's exact class up (a subclass may compute something else in
its ``call``, so it needs its own registration) and builds its block. Register a block for a
custom layer with::

    tfwd.curvature.register_block(MyLayer, MyLayerBlock)   # MyLayerBlock(CurvatureBlock)

Built in: Dense, EinsumDense, Conv1D, Conv2D (``tfwd.curvature.kronecker``), DepthwiseConv2D
(``tfwd.curvature.depthwise``), Embedding (``tfwd.curvature.embedding``),
BatchNormalization and LayerNormalization (``tfwd.curvature.scale_shift``).
"""
from __future__ import annotations

import keras

from tfwd.curvature.block import BlockOptions, CurvatureBlock, UnsupportedLayerError
from tfwd.curvature.depthwise import DepthwiseConv2DBlock
from tfwd.curvature.embedding import EmbeddingBlock
from tfwd.curvature.kronecker import Conv1DBlock, Conv2DBlock, DenseBlock, EinsumDenseBlock
from tfwd.curvature.scale_shift import BatchNormalizationBlock, LayerNormalizationBlock

_BLOCKS: dict[type, type[CurvatureBlock]] = {}


def register_block(layer_class: type, block_class: type[CurvatureBlock]) -> None:
    """Use ``block_class`` for every layer whose class is exactly ``layer_class``."""
    if not (isinstance(block_class, type) and issubclass(block_class, CurvatureBlock)):
        raise TypeError(f"{block_class!r} is not a subclass of tfwd.curvature.CurvatureBlock.")
    _BLOCKS[layer_class] = block_class


def registered_layer_classes() -> list[type]:
    return list(_BLOCKS)


def block_for(layer, options: BlockOptions | None = None) -> CurvatureBlock:
    """The block of ``layer``; UnsupportedLayerError naming the layer if there is none."""
    block_class = _BLOCKS.get(type(layer))
    if block_class is None:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no curvature block; register "
            "one with tfwd.curvature.register_block.")
    return block_class(layer, options or BlockOptions())


def leaf_layers(model):
    """The layers of ``model`` that hold no other layers (nested models are walked)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not layer._layers:
            yield layer


def split_blocks(model, options: BlockOptions | None = None) -> tuple[list, list]:
    """(a block for each trainable layer that has one, the other layers owning trainable weights)."""
    blocks, others = [], []
    for layer in leaf_layers(model):
        if not layer.trainable_weights:
            continue
        try:
            blocks.append(block_for(layer, options))
        except UnsupportedLayerError:
            others.append(layer)
    names = [block.name for block in blocks]
    for block in blocks:
        if names.count(block.name) > 1:
            block.name = block.layer.path
    return blocks, others


for _layer_class, _block_class in (
    (keras.layers.Dense, DenseBlock),
    (keras.layers.EinsumDense, EinsumDenseBlock),
    (keras.layers.Conv1D, Conv1DBlock),
    (keras.layers.Conv2D, Conv2DBlock),
    (keras.layers.DepthwiseConv2D, DepthwiseConv2DBlock),
    (keras.layers.Embedding, EmbeddingBlock),
    (keras.layers.BatchNormalization, BatchNormalizationBlock),
    (keras.layers.LayerNormalization, LayerNormalizationBlock),
):
    register_block(_layer_class, _block_class)
