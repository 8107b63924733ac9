"""Capture each supported layer's inputs ``a`` and pre-activation outputs ``s``.

Keras 3 has no forward/backward hooks, so while a ``LayerCapture`` is active every registered
``Dense``/``Conv2D`` layer runs its own linear map here, records ``a`` and ``s`` (tensors of the
forward pass the caller is taping), and then applies its activation. The caller asks its
``tf.GradientTape`` for gradients with respect to the recorded ``s`` — that single capture
serves K-FAC's factors, the curvature noise and the diagnostics (STYLE rule 2).

Supported: ``keras.layers.Dense`` and ``keras.layers.Conv2D`` (channels_last, groups=1, any
stride and dilation, ``same``/``valid`` padding, with or without bias). Anything else that owns
trainable weights is reported by ``split_layers`` so the optimizer can say what it does not
precondition.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf


class UnsupportedLayerError(ValueError):
    """Raised when a layer asked for curvature cannot be handled."""


@dataclasses.dataclass
class Record:
    """What one forward pass saw at one layer."""

    inputs: tf.Tensor  # a: the layer input
    preactivations: tf.Tensor  # s: the linear output before the activation
    # ∂ℓ_b/∂s_b per example (no 1/B) of the training loss, when the step could read it off its
    # own backward pass (tfwd.curvature.step); None otherwise.
    example_gradients: tf.Tensor | None = None


def _check_supported(layer) -> None:
    if getattr(layer, "quantization_mode", None) is not None:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} is quantized; K-FAC needs float kernels."
        )
    if getattr(layer, "lora_enabled", False):
        raise UnsupportedLayerError(f"Layer {layer.name!r} uses LoRA, which K-FAC does not support.")
    if isinstance(layer, keras.layers.Conv2D):
        if type(layer) is not keras.layers.Conv2D:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) is not a plain Conv2D."
            )
        if layer.data_format != "channels_last":
            raise UnsupportedLayerError(
                f"Conv2D {layer.name!r} uses {layer.data_format}; only channels_last is supported."
            )
        if layer.groups != 1:
            raise UnsupportedLayerError(f"Conv2D {layer.name!r} has groups={layer.groups}; need 1.")
        if layer.padding not in ("same", "valid"):
            raise UnsupportedLayerError(f"Conv2D {layer.name!r} padding {layer.padding!r}.")
    elif type(layer) is not keras.layers.Dense:
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} ({type(layer).__name__}) is neither Dense nor Conv2D."
        )


def is_supported(layer) -> bool:
    try:
        _check_supported(layer)
    except UnsupportedLayerError:
        return False
    return True


def _leaf_layers(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not layer._layers:  # skip containers (nested models); their leaves are visited
            yield layer


def split_layers(model) -> tuple[list, list]:
    """(supported trainable Dense/Conv2D layers, other layers owning trainable weights)."""
    supported, others = [], []
    for layer in _leaf_layers(model):
        if not layer.trainable_weights:
            continue
        (supported if is_supported(layer) else others).append(layer)
    return supported, others


def preactivation(layer, inputs):
    """s = a·W (+ b) for Dense, conv(a, W) (+ b) for Conv2D: the layer without activation."""
    if isinstance(layer, keras.layers.Conv2D):
        outputs = layer.convolution_op(inputs, layer.kernel)
    else:
        outputs = keras.ops.matmul(inputs, layer.kernel)
    if layer.use_bias:
        outputs = outputs + layer.bias
    return outputs


class LayerCapture:
    """Context manager recording ``Record(a, s)`` for each given layer during a forward pass.

    Usage::

        with tf.GradientTape() as tape, LayerCapture(layers) as capture:
            logits = model(x, training=True)
        g = tape.gradient(loss, [capture.records[l.name].preactivations for l in layers])
    """

    def __init__(self, layers):
        for layer in layers:
            _check_supported(layer)
        self.layers = list(layers)
        self.records: dict[str, Record] = {}

    def _wrapped_call(self, layer):
        def call(inputs, *args, **kwargs):
            if layer.name in self.records:
                raise UnsupportedLayerError(
                    f"Layer {layer.name!r} was called twice in one forward pass; K-FAC "
                    "needs each registered layer applied once (shared layers are unsupported)."
                )
            s = preactivation(layer, inputs)
            self.records[layer.name] = Record(inputs=inputs, preactivations=s)
            return layer.activation(s) if layer.activation is not None else s

        return call

    def __enter__(self):
        self.records = {}
        for layer in self.layers:
            # An instance attribute shadows the class's call(); Operation.__call__ looks it up
            # on every call, so the functional graph runs through the wrapper.
            object.__setattr__(layer, "call", self._wrapped_call(layer))
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            object.__delattr__(layer, "call")
        return False
