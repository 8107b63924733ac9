"""The model zoo: the architectures of the two seed papers behind one registry.

    model = tfwd.models.build("vgg16", input_shape=(32, 32, 3), num_classes=10)

Every model is a functional `keras.Model` named after its architecture that returns logits.
Layer conventions (see `layers.BlockBuilder`): Dense/Conv2D layers are linear and named
`dense_<i>` / `conv_<i>`, followed by separate batch-norm (`bn_<i>`) and ReLU layers; the output
Dense is `top`, so variable paths such as `top/kernel` identify the "top" and "conv" layer
groups that weight decay is applied to (seed 000, section 3).

Architectures (modules say which paper and section each comes from):
  mlp (depth, width), lenet, alexnet, vgg11, vgg13, vgg16, vgg19, resnet32 (width_factor=4),
  resnet44 (width_factor=1), transformer (depth=2 blocks, width=64, num_heads=4, mlp_width=128;
  normalized by LayerNormalization, so it takes no batch-norm options).
"""
from __future__ import annotations

import inspect
from typing import Callable

import keras

from tfwd.choices.models import BATCH_NORM, Architecture

from . import alexnet, lenet, mlp, resnet, transformer, vgg
from .layers import BlockBuilder, GhostBatchNormalization, check_int

__all__ = ["GhostBatchNormalization", "available", "build"]

# name -> function(inputs, num_classes, blocks, **architecture_kwargs) returning logits.
# The names are tfwd.choices.models.Architecture's (a test checks that every one is here).
_ARCHITECTURES: dict[str, Callable[..., keras.KerasTensor]] = {
    Architecture.MLP: mlp.mlp,
    Architecture.LENET: lenet.lenet,
    Architecture.ALEXNET: alexnet.alexnet,
    Architecture.VGG11: vgg.vgg11,
    Architecture.VGG13: vgg.vgg13,
    Architecture.VGG16: vgg.vgg16,
    Architecture.VGG19: vgg.vgg19,
    Architecture.RESNET32: resnet.resnet32,
    Architecture.RESNET44: resnet.resnet44,
    Architecture.TRANSFORMER: transformer.transformer,
}
# Architectures normalized by their own LayerNormalization layers: no batch-norm options.
_LAYER_NORMALIZED = (Architecture.TRANSFORMER,)


def available() -> list[str]:
    """Names accepted by `build`, sorted."""
    return sorted(_ARCHITECTURES)


def build(
    name: str,
    *,
    input_shape: tuple,
    num_classes: int,
    batch_norm: bool = BATCH_NORM,
    bn_affine: bool = False,
    ghost_batch_size: int | None = None,
    seed: int = 0,
    **architecture_kwargs,
) -> keras.Model:
    """Builds architecture `name` with freshly initialized, seeded weights.

    Args:
      name: one of `available()`.
      input_shape: shape of one example, channels last, e.g. (28, 28, 1) or (32, 32, 3).
      num_classes: number of output logits.
      batch_norm: batch norm after every hidden Dense/Conv2D (which then has no bias); default
        False (``tfwd.choices.models.BATCH_NORM``, as ``TrainConfig``); the layer-normalized
        transformer does not accept True.
      bn_affine: batch norm learns a scale γ and offset β (default: neither, as the papers).
      ghost_batch_size: if set, ghost batch norm with virtual batches of this many examples
        (`GhostBatchNormalization`; requires batch_norm=True).
      seed: initial weights are a function of `seed` only (Glorot-uniform kernels, zero biases).
      **architecture_kwargs: `depth`, `width` for mlp; `width_factor` for resnet32/resnet44;
        `depth`, `width`, `num_heads`, `mlp_width` for transformer.

    Raises:
      ValueError: unknown `name` or architecture keyword, or an invalid value.
    """
    if name not in _ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose one of {available()}.")
    architecture = _ARCHITECTURES[name]
    accepted = [
        parameter.name
        for parameter in inspect.signature(architecture).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(architecture_kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"{name} does not accept {unknown}; its architecture keywords are "
            f"{accepted or 'none'}."
        )
    check_int("num_classes", num_classes, minimum=1)
    if name in _LAYER_NORMALIZED:
        if batch_norm or bn_affine or ghost_batch_size is not None:
            raise ValueError(
                f"{name} normalizes with LayerNormalization; leave batch_norm, bn_affine and "
                "ghost_batch_size unset (or batch_norm=False)."
            )
    blocks = BlockBuilder(
        batch_norm=batch_norm, bn_affine=bn_affine, ghost_batch_size=ghost_batch_size, seed=seed
    )
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    logits = architecture(inputs, num_classes, blocks, **architecture_kwargs)
    return keras.Model(inputs, logits, name=name)
