"""What the network's curvature is: layer capture, curvature blocks, diagonal Fisher, inverses.

Independent of any optimizer (STYLE rule 2)::

    factors = tfwd.curvature.kronecker_factors(model, x, y, curvature="fisher")  # {layer: (A, G)}
    A_inv, G_inv = tfwd.curvature.damped_inverses(A, G, damping=1e-3)
    direction = tfwd.curvature.precondition(gradient_matrix, A_inv, G_inv)

Every layer K-FAC preconditions has a curvature block (``CurvatureBlock``); the registry maps
Keras layer classes to blocks, and ``register_block`` adds one for a custom layer.
"""
from tfwd.choices.curvature import CURVATURES
from tfwd.curvature.block import (BlockOptions, CurvatureBlock, Record, StateSpec,
                                  UnsupportedLayerError)
from tfwd.curvature.blocks import KroneckerBlock
from tfwd.curvature.capture import LayerCapture, split_layers
from tfwd.curvature.depthwise import DepthwiseConv2DBlock
from tfwd.curvature.diagonal import diagonal_fisher
from tfwd.curvature.embedding import EmbeddingBlock
from tfwd.curvature.inverse import damped_inverses, kl_clip_scale, pi_split, precondition
from tfwd.curvature.kronecker import (Conv1DBlock, Conv2DBlock, DenseBlock, EinsumDenseBlock,
                                      KroneckerFactoredBlock)
from tfwd.curvature.registry import block_for, register_block, split_blocks
from tfwd.curvature.scale_shift import (BatchNormalizationBlock, LayerNormalizationBlock,
                                        ScaleAndShiftBlock)
from tfwd.curvature.statistics import block_factors, kronecker_factors

__all__ = [
    "BatchNormalizationBlock", "BlockOptions", "CURVATURES", "Conv1DBlock", "Conv2DBlock",
    "CurvatureBlock", "DenseBlock", "DepthwiseConv2DBlock", "EinsumDenseBlock", "EmbeddingBlock",
    "KroneckerBlock", "KroneckerFactoredBlock", "LayerCapture", "LayerNormalizationBlock",
    "Record", "ScaleAndShiftBlock", "StateSpec", "UnsupportedLayerError", "block_factors",
    "block_for", "damped_inverses", "diagonal_fisher", "kl_clip_scale", "kronecker_factors",
    "pi_split", "precondition", "register_block", "split_blocks", "split_layers",
]
