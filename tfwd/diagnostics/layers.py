"""Which layers are batch-normalized, and selecting weight layers by group.

A **batch-normalized layer** is a ``Dense``/``Conv2D`` whose output feeds *only* a batch-norm
layer (Keras ``BatchNormalization`` without renorm on the last axis, or
``tfwd.models.GhostBatchNormalization``). It is found from the functional graph, not from
names: the batch-norm layer's inbound node must have that linear layer as its single parent,
and every outbound node of the linear layer must be that batch norm. This is how
``tfwd.models`` builds its networks (``conv_<i>``/``dense_<i>`` → ``bn_<i>`` → ``relu_<i>``),
and it also holds for hand-built functional and ``Sequential`` models. Subclassed models have
no graph, so nothing is detected in them.

For such a layer the training-mode output is invariant to the scale of its kernel w
(paper 000, section 4.1 and eq. 13; docs/equations.md §7): only the direction ŵ = w/‖w‖ matters. We
therefore measure ‖w‖ as the Frobenius norm of the **kernel**; a bias before batch norm is
cancelled by the mean subtraction and is left out.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Union

import keras
import tensorflow as tf

from tfwd.choices.layers import LAYER_GROUPS, LayerGroup
from tfwd.curvature.capture import split_layers
from tfwd.models import GhostBatchNormalization

BATCH_NORM_TYPES = (keras.layers.BatchNormalization, GhostBatchNormalization)

LayerSelection = Union[str, Sequence[str]]


@dataclasses.dataclass(frozen=True)
class NormalizedLayer:
    """A Dense/Conv2D layer ``linear`` whose output goes only into ``normalization``."""

    linear: keras.layers.Layer
    normalization: keras.layers.Layer


def is_batch_norm(layer) -> bool:
    return isinstance(layer, BATCH_NORM_TYPES)


def _normalizes_last_axis(layer, input_rank: int) -> bool:
    axis = getattr(layer, "axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis in (-1, input_rank - 1)


def batch_normalized_layers(model: keras.Model) -> dict[str, NormalizedLayer]:
    """{linear layer name: NormalizedLayer} for every Dense/Conv2D followed only by batch norm.

    Order: the model's layer order. See the module docstring for the detection rule.
    """
    weight_layers, _ = split_layers(model)
    found = {}
    for linear in weight_layers:
        outbound = getattr(linear, "_outbound_nodes", [])
        if not outbound:
            continue
        consumers = {id(node.operation): node.operation for node in outbound}
        if len(consumers) != 1:
            continue
        (normalization,) = consumers.values()
        if not is_batch_norm(normalization) or getattr(normalization, "renorm", False):
            continue
        nodes = [node for node in normalization._inbound_nodes if node.parent_nodes]
        if not nodes or any(
            len(node.parent_nodes) != 1 or node.parent_nodes[0].operation is not linear
            for node in nodes
        ):
            continue
        rank = len(nodes[0].input_tensors[0].shape)
        if _normalizes_last_axis(normalization, rank):
            found[linear.name] = NormalizedLayer(linear, normalization)
    return found


def require_normalized_layers(model: keras.Model, diagnostic: str) -> dict[str, NormalizedLayer]:
    """``batch_normalized_layers(model)``, raising when there are none."""
    found = batch_normalized_layers(model)
    if not found:
        raise ValueError(
            f"Diagnostic {diagnostic!r} needs a Dense/Conv2D layer followed by batch norm, and "
            f"model {model.name!r} has none (build it with batch_norm=True, or drop "
            f"{diagnostic!r} from the diagnostics)."
        )
    return found


def select_layers(model: keras.Model, selection: LayerSelection = LayerGroup.ALL) -> list:
    """Dense/Conv2D layers of ``model`` by group or by name.

    ``selection``: ``"all"`` (every Dense/Conv2D), ``"conv"`` (every Conv2D: the "wn-conv"
    group of paper 000 figure 4), ``"dense"``, ``"normalized"`` (every batch-normalized
    layer), or a list of layer names.
    """
    weight_layers, _ = split_layers(model)
    if isinstance(selection, str):
        if selection == LayerGroup.ALL:
            return weight_layers
        if selection == LayerGroup.CONV:
            return [layer for layer in weight_layers if isinstance(layer, keras.layers.Conv2D)]
        if selection == LayerGroup.DENSE:
            return [layer for layer in weight_layers if isinstance(layer, keras.layers.Dense)]
        if selection == LayerGroup.NORMALIZED:
            return [pair.linear for pair in batch_normalized_layers(model).values()]
        raise ValueError(
            f"Layer selection must be one of {LAYER_GROUPS} or a list of layer names, "
            f"got {selection!r}."
        )
    by_name = {layer.name: layer for layer in weight_layers}
    unknown = [name for name in selection if name not in by_name]
    if unknown:
        raise ValueError(
            f"Layers {unknown} are not Dense/Conv2D layers of model {model.name!r}; "
            f"choose from {sorted(by_name)}."
        )
    return [by_name[name] for name in selection]


def kernel_norm(layer) -> tf.Tensor:
    """‖w‖ = Frobenius norm of the layer's kernel."""
    return tf.norm(tf.reshape(layer.kernel, [-1]))


def rescale_normalized_layer(pair: NormalizedLayer, target_norm: float) -> float:
    """Set ‖w‖ of a batch-normalized layer to ``target_norm``; return the factor c applied.

    w ← c·w and b ← c·b with c = target/‖w‖. The batch norm's statistics follow the
    pre-activations s ← c·s: μ ← c·μ and σ² ← c²(σ² + ε) − ε, so that inference-mode outputs
    (s − μ)/√(σ² + ε) are *exactly* unchanged (σ² is clipped at 0 only if c² < ε/(σ² + ε)).
    Training-mode outputs are unchanged up to the ε of batch norm, as the paper's
    "wn-conv" rescaling (paper 000 §4.1, figure 4).
    """
    linear, normalization = pair.linear, pair.normalization
    factor = float(target_norm) / float(kernel_norm(linear))
    linear.kernel.assign(linear.kernel * factor)
    if linear.use_bias:
        linear.bias.assign(linear.bias * factor)
    epsilon = float(normalization.epsilon)
    normalization.moving_mean.assign(normalization.moving_mean * factor)
    normalization.moving_variance.assign(
        tf.maximum(factor**2 * (normalization.moving_variance + epsilon) - epsilon, 0.0)
    )
    return factor
