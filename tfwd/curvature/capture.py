"""Capture each block's layer inputs ``a`` and pre-activation outputs ``s``.

Keras 3 has no forward/backward hooks, so while a ``LayerCapture`` is active every captured
layer runs its block's ``forward`` (the layer's own math, ``tfwd.curvature.block``), which
records ``a`` and ``s`` (tensors of the forward pass the caller is taping) and returns the
layer output. The caller asks its ``tf.GradientTape`` for gradients with respect to the
recorded ``s`` — that single capture serves K-FAC's statistics, the curvature noise and the
diagnostics (STYLE rule 2).

``split_layers`` lists the ``Dense``/``Conv2D`` layers (the noise kinds and diagnostics work
on those); K-FAC takes every layer with a registered block (``tfwd.curvature.registry``).
"""
from __future__ import annotations

import keras

from tfwd.curvature.block import CurvatureBlock, Record, UnsupportedLayerError
from tfwd.curvature.registry import block_for, leaf_layers

__all__ = ["LayerCapture", "Record", "UnsupportedLayerError", "split_layers"]

_KRONECKER_LAYERS = (keras.layers.Dense, keras.layers.Conv2D)


def _is_dense_or_conv(layer) -> bool:
    if type(layer) not in _KRONECKER_LAYERS:
        return False
    try:
        block_for(layer)
    except UnsupportedLayerError:
        return False
    return True


def split_layers(model) -> tuple[list, list]:
    """(supported trainable Dense/Conv2D layers, other layers owning trainable weights)."""
    supported, others = [], []
    for layer in leaf_layers(model):
        if not layer.trainable_weights:
            continue
        (supported if _is_dense_or_conv(layer) else others).append(layer)
    return supported, others


class LayerCapture:
    """Context manager recording ``Record(a, s)`` for each given block (or layer) during a
    forward pass; a layer is captured through its registered block.

    Usage::

        with tf.GradientTape() as tape, LayerCapture(blocks) as capture:
            logits = model(x, training=True)
        g = tape.gradient(loss, [capture.records[b.name].preactivations for b in blocks])
    """

    def __init__(self, targets):
        self.blocks = [t if isinstance(t, CurvatureBlock) else block_for(t) for t in targets]
        self.records: dict[str, Record] = {}

    @property
    def layers(self) -> list:
        return [block.layer for block in self.blocks]

    def _wrapped_call(self, block):
        def call(inputs, *args, **kwargs):
            if block.name in self.records:
                raise UnsupportedLayerError(
                    f"Layer {block.name!r} was called twice in one forward pass; K-FAC "
                    "needs each registered layer applied once (shared layers are unsupported)."
                )
            outputs, record = block.forward(inputs, *args, **kwargs)
            self.records[block.name] = record
            return outputs

        return call

    def __enter__(self):
        self.records = {}
        for block in self.blocks:
            # An instance attribute shadows the class's call(); Operation.__call__ looks it up
            # on every call, so the functional graph runs through the wrapper.
            object.__setattr__(block.layer, "call", self._wrapped_call(block))
        return self

    def __exit__(self, *exc):
        for block in self.blocks:
            object.__delattr__(block.layer, "call")
        return False
