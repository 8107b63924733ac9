"""Fold inference-mode batch norm into the preceding Dense/Conv2D (paper 002 §4.2, figure 3d).

Batch norm in inference mode is the per-channel affine map
y = γ_k (s_k − μ_k)/√(σ²_k + ε) + β_k of the pre-activation s = a·W + b. With
c_k = γ_k/√(σ²_k + ε) (γ = 1, β = 0 when the layer has no scale/offset):

    W'_{:,k} = c_k · W_{:,k},    b'_k = c_k (b_k − μ_k) + β_k

gives a BN-free layer with identical inference predictions. Paper 002 folds batch norm this way
before measuring the largest Hessian eigenvalue, so that the Hessian is taken in the layer-wise
parameter space of a plain network.

Only top-level layers of a functional or Sequential model are rewritten (``tfwd.models``
networks are flat); batch-norm layers that do not directly follow a Dense/Conv2D (see
``layers.batch_normalized_layers``) are kept, with their weights.
"""
from __future__ import annotations

import keras
import numpy as np

from tfwd.diagnostics.layers import batch_normalized_layers


class PassThrough(keras.layers.Layer):
    """Identity standing in for a folded batch-norm layer (accepts ``training``/``mask``)."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _numpy(variable) -> np.ndarray:
    return np.asarray(variable.numpy(), np.float64)


def folded_weights(pair) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') of a batch-normalized layer with its batch norm folded in (module docstring)."""
    linear, norm = pair.linear, pair.normalization
    kernel = _numpy(linear.kernel)
    bias = _numpy(linear.bias) if linear.use_bias else np.zeros(kernel.shape[-1])
    scale = 1.0 / np.sqrt(_numpy(norm.moving_variance) + norm.epsilon)
    if getattr(norm, "gamma", None) is not None:
        scale = scale * _numpy(norm.gamma)
    offset = _numpy(norm.beta) if getattr(norm, "beta", None) is not None else 0.0
    mean = _numpy(norm.moving_mean)
    return kernel * scale, (bias - mean) * scale + offset


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """A new model without the batch norms that follow Dense/Conv2D layers, with identical
    inference-mode predictions. The input model is not modified.

    COST: clones the model (its weights once more in memory); no pass over data.
    """
    pairs = batch_normalized_layers(model)
    folded_norms = {id(pair.normalization) for pair in pairs.values()}

    def clone_layer(layer):
        if id(layer) in folded_norms:
            return PassThrough(name=layer.name)
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone_layer)
    originals = {layer.name: layer for layer in model.layers}
    for layer in folded.layers:
        if isinstance(layer, (PassThrough, keras.layers.InputLayer)):
            continue
        if layer.name in pairs:
            kernel, bias = folded_weights(pairs[layer.name])
            layer.kernel.assign(kernel.astype(layer.kernel.dtype))
            layer.bias.assign(bias.astype(layer.bias.dtype))
        else:
            layer.set_weights(originals[layer.name].get_weights())
    return folded
