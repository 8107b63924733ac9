"""What K-FAC and the curvature noise need from a model, its loss and its data — checked, not assumed.

The curvature of ``tfwd.curvature.statistics`` and the noise of ``tfwd.noise`` are built from
the model's *logits* z of a softmax cross-entropy: u = softmax(z) − onehot(y) (Fisher,
empirical Fisher, noise), or the identity output Hessian on z (Gauss-Newton). So:

* the model must output logits: ``check_outputs_logits`` follows the output back through the
  computation — pass-through layers (Dropout, Identity, Reshape, Flatten, a linear Activation)
  and nested models — and refuses a softmax or sigmoid there (a ``Softmax`` layer, an
  ``Activation``, a layer's own ``activation``, or ``keras.ops.softmax``/``sigmoid``).
  Subclassed models have no graph to follow: their last layer's activation is checked;
* the compiled loss must be one of ``SUPPORTED_LOSSES`` (``check_loss``), for every curvature
  of ``tfwd.curvature.statistics.CURVATURES`` and every noise kind;
* every example weighs the same: the factors and the noise are unweighted batch averages, so
  ``sample_weight`` (and ``class_weight``, which Keras turns into it) is refused
  (``check_sample_weight``).
"""
from __future__ import annotations

import keras

# The losses whose output-side curvature the statistics and the noise compute: softmax
# cross-entropy on logits with integer (Sparse…) or one-hot labels, averaged over the batch.
SUPPORTED_LOSSES = (
    "keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
    "keras.losses.CategoricalCrossentropy(from_logits=True)",
)
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


def is_supported_loss(loss) -> bool:
    """True for the losses of ``SUPPORTED_LOSSES`` (mean reduction, no label smoothing)."""
    if not isinstance(loss, (keras.losses.SparseCategoricalCrossentropy,
                             keras.losses.CategoricalCrossentropy)):
        return False
    config = loss.get_config()
    return (config.get("from_logits") is True and loss.reduction == "sum_over_batch_size"
            and config.get("ignore_class") is None and not config.get("label_smoothing")
            and config.get("axis", -1) == -1)


def check_loss(model: keras.Model, user: str) -> None:
    """Raise ValueError unless ``model`` was compiled with one of ``SUPPORTED_LOSSES``.

    Does nothing for a model that is not compiled yet (the training step checks again).
    """
    loss = getattr(model, "loss", None)
    if loss is None:
        return
    if not is_supported_loss(loss):
        raise ValueError(
            f"{user} computes its curvature for a softmax cross-entropy on logits, but the model "
            f"is compiled with loss {describe_loss(loss)}. Supported: "
            f"{', '.join(SUPPORTED_LOSSES)} (mean over the batch, no label smoothing).")


def check_sample_weight(users: list[str], sample_weight) -> None:
    """Raise ValueError if a training step that feeds ``users`` gets sample weights."""
    if users and sample_weight is not None:
        raise ValueError(
            f"{' and '.join(users)} average their statistics over the batch with equal "
            "weights, so sample_weight (or class_weight) would change the gradient but not the "
            "curvature: train without them, or use SGD/Adam without curvature noise.")
