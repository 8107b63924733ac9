"""Weight norms and the effective learning rate of batch-normalized layers.

Paper 000, section 4.1, figure 3 (docs/equations.md §7, mechanism I): for a layer followed by batch
norm the output depends only on ŵ = w/‖w‖, and a gradient step of size η on w moves ŵ like a
step of size

    η_eff = η / ‖w‖²

(‖w‖ = Frobenius norm of the kernel; see ``layers``). Without weight decay ‖w‖ grows and
η_eff decays; with decay it stays roughly constant within each learning-rate stage.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.layers import LayerGroup
from tfwd.diagnostics.common import to_float
from tfwd.diagnostics.layers import (
    LayerSelection,
    kernel_norm,
    require_normalized_layers,
    select_layers,
)


def weight_norms(model: keras.Model, layers: LayerSelection = LayerGroup.ALL) -> dict[str, float]:
    """{layer name: ‖w‖_F of its kernel} for the selected Dense/Conv2D layers.

    Paper 000 figure 4 (the norms one run hands to another). COST: reads the weights only.
    """
    return {layer.name: to_float(kernel_norm(layer)) for layer in select_layers(model, layers)}


def current_learning_rate(optimizer) -> float:
    """η the optimizer uses at its current step (a schedule is evaluated at ``iterations``)."""
    if optimizer is None:
        raise ValueError("The effective learning rate needs a compiled model (model.optimizer).")
    rate = optimizer.learning_rate
    return float(tf.convert_to_tensor(getattr(rate, "value", rate)))


def effective_learning_rates(
    model: keras.Model, learning_rate: float | None = None
) -> dict[str, float]:
    """{batch-normalized layer: η / ‖w‖²}; η defaults to ``model.optimizer``'s current rate.

    Paper 000 §4.1, figure 3. COST: reads the weights only.
    """
    if learning_rate is None:
        learning_rate = current_learning_rate(getattr(model, "optimizer", None))
    pairs = require_normalized_layers(model, Diagnostic.EFFECTIVE_LR)
    return {
        name: learning_rate / to_float(kernel_norm(pair.linear)) ** 2
        for name, pair in pairs.items()
    }
