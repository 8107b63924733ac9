"""What K-FAC and the curvature noise need from a model, its loss and its data — checked, not assumed.

The curvature of ``tfwd.curvature.statistics`` and the noise of ``tfwd.noise`` are built from
the model's *logits* z of a softmax cross-entropy: u = softmax(z) − onehot(y) (Fisher,
empirical Fisher, noise), or the identity output Hessian on z (Gauss-Newton). So:

* the model must output logits: ``check_outputs_logits`` follows the output back through the
  computation — pass-through layers (Dropout, Identity, Reshape, Flatten, a linear Activation)
  and nested models — and refuses a softmax or sigmoid there (a ``Softmax`` layer, an
  ``Activation``, a layer's own ``activation``, or ``keras.ops.softmax``/``sigmoid``).
  Subclassed models have no graph to follow: their last layer's activation is checked;
* the compiled loss must be one the curvature is defined for (``SUPPORTED_LOSSES``,
  ``check_loss``): softmax cross-entropy on logits for every curvature and every noise kind;
  for ``"gauss_newton"`` also mean squared error, whose Gauss-Newton matrix is the identity
  output Hessian's up to Keras's constant factor 2/K (K outputs), which damping absorbs;
* every example weighs the same: the factors and the noise are unweighted batch averages, so
  ``sample_weight`` (and ``class_weight``, which Keras turns into it) is refused
  (``check_sample_weight``).
"""
from __future__ import annotations

import keras

from tfwd.choices.curvature import Curvature

_CROSS_ENTROPY = ("SparseCategoricalCrossentropy(from_logits=True)",
                  "CategoricalCrossentropy(from_logits=True)")
# Curvature ("noise": every noise kind) -> the keras.losses it is defined for, mean over the
# batch, no label smoothing.
SUPPORTED_LOSSES = {
    Curvature.FISHER: _CROSS_ENTROPY,
    Curvature.EMPIRICAL: _CROSS_ENTROPY,
    Curvature.GAUSS_NEWTON: _CROSS_ENTROPY + ("MeanSquaredError()",),
    "noise": _CROSS_ENTROPY,
}
_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")
_PASS_THROUGH_LAYERS = (keras.layers.Dropout, keras.layers.Identity, keras.layers.Reshape,
                        keras.layers.Flatten)


def _probability_activation(operation) -> str | None:
    """'softmax'/'sigmoid' when ``operation`` turns its input into probabilities, else None."""
    if isinstance(operation, keras.layers.Softmax):
        return "softmax"
    activation = getattr(operation, "activation", None)
    name = getattr(activation, "__name__", None)
    if name in _PROBABILITY_ACTIVATIONS:
        return name
    if not isinstance(operation, keras.layers.Layer):  # keras.ops.softmax(x) in a functional model
        name = type(operation).__name__.lower()
        return name if name in _PROBABILITY_ACTIVATIONS else None
    return None


def _is_pass_through(operation) -> bool:
    if isinstance(operation, keras.layers.Activation):
        return getattr(operation.activation, "__name__", None) == "linear"
    return isinstance(operation, _PASS_THROUGH_LAYERS)


def _producers(tensor):
    """The operations that produced ``tensor``, walking into nested models and through
    pass-through layers; yields (operation, path of layer names)."""
    history = getattr(tensor, "_keras_history", None)
    path = []
    while history is not None:
        operation, node_index, tensor_index = history
        path.append(operation.name)
        yield operation, "/".join(path)
        if isinstance(operation, keras.Model) and getattr(operation, "outputs", None):
            history = getattr(operation.outputs[tensor_index], "_keras_history", None)
        elif _is_pass_through(operation):
            inputs = operation._inbound_nodes[node_index].input_tensors
            history = getattr(inputs[0], "_keras_history", None) if len(inputs) == 1 else None
        else:
            history = None


def check_outputs_logits(model: keras.Model, user: str) -> None:
    """Raise ValueError if ``model``'s output is a softmax or sigmoid (see module docstring)."""
    try:
        outputs = list(model.outputs or [])
    except (AttributeError, ValueError):  # a subclassed model has no symbolic outputs
        outputs = []
    candidates = [pair for output in outputs for pair in _producers(output)]
    if not outputs and model.layers:
        candidates = [(model.layers[-1], model.layers[-1].name)]
    for operation, path in candidates:
        activation = _probability_activation(operation)
        if activation:
            raise ValueError(
                f"{user} needs a model that outputs logits, but its output comes from {path!r}, "
                f"which applies {activation}; remove it (output the logits) and use a loss with "
                "from_logits=True.")


def describe_loss(loss) -> str:
    """A loss as users write it, e.g. ``MeanSquaredError(from_logits=?)`` or a string."""
    if isinstance(loss, str) or loss is None:
        return repr(loss)
    if isinstance(loss, keras.losses.Loss):
        settings = {k: v for k, v in loss.get_config().items() if k in ("from_logits",)}
        inside = ", ".join(f"{k}={v}" for k, v in settings.items())
        return f"{type(loss).__name__}({inside})"
    return getattr(loss, "__name__", type(loss).__name__)


def _is_mean_squared_error(loss) -> bool:
    if isinstance(loss, keras.losses.MeanSquaredError):
        return loss.reduction == "sum_over_batch_size"
    return loss in ("mse", "mean_squared_error") or (
        getattr(loss, "__name__", None) == "mean_squared_error")


def is_supported_loss(loss, curvature: str) -> bool:
    """True for the losses ``SUPPORTED_LOSSES[curvature]`` lists."""
    if _is_mean_squared_error(loss):
        return "MeanSquaredError()" in SUPPORTED_LOSSES[curvature]
    if not isinstance(loss, keras.losses.Loss) or loss.reduction != "sum_over_batch_size":
        return False  # strings and functions: Keras's cross-entropies default to probabilities
    if not isinstance(loss, (keras.losses.SparseCategoricalCrossentropy,
                             keras.losses.CategoricalCrossentropy)):
        return False
    config = loss.get_config()
    return (config.get("from_logits") is True and config.get("ignore_class") is None
            and not config.get("label_smoothing") and config.get("axis", -1) == -1)


def check_loss(model: keras.Model, user: str, curvature: str) -> None:
    """Raise ValueError unless ``model`` is compiled with a loss ``curvature`` supports.

    ``curvature``: one of ``SUPPORTED_LOSSES`` ("noise" for the curvature noise). Does nothing
    for a model that is not compiled yet (the training step checks again).
    """
    loss = getattr(model, "loss", None)
    if loss is None or is_supported_loss(loss, curvature):
        return
    table = "; ".join(f"{name}: {', '.join(losses)}" for name, losses in SUPPORTED_LOSSES.items())
    raise ValueError(
        f"{user} with curvature {curvature!r} does not support the model's loss "
        f"{describe_loss(loss)}. Supported (keras.losses, mean over the batch, no label "
        f"smoothing) — {table}.")


def check_consumer_losses(model: keras.Model, consumers) -> None:
    """``check_loss`` for each training-step consumer (K-FAC has a ``curvature``; the noise not)."""
    for consumer in consumers:
        check_loss(model, type(consumer).__name__, getattr(consumer, "curvature", "noise"))


def check_sample_weight(users: list[str], sample_weight) -> None:
    """Raise ValueError if a training step that feeds ``users`` gets sample weights."""
    if users and sample_weight is not None:
        raise ValueError(
            f"{' and '.join(users)} average their statistics over the batch with equal "
            "weights, so sample_weight (or class_weight) would change the gradient but not the "
            "curvature: train without them, or use SGD/Adam without curvature noise.")
