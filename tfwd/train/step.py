"""The explicit training step: one captured pass feeds K-FAC, the noise and the diagnostics.

``TrainStep(model, consumers)`` runs, in replica context,

1. one forward/backward pass under a ``LayerCapture`` of every block anybody needs
   (``tfwd.curvature.step.captured_forward_backward``): loss, gradients, tape, records;
2. if the model's optimizer is K-FAC (possibly inside Keras's ``LossScaleOptimizer``),
   ``optimizer.update_curvature(tape, records, y_pred, y)``: this step's statistics go to
   the optimizer as arguments (they are computed and all-reduced on statistics steps only);
3. each consumer's ``observe(tape, records, y_pred, y, gradients) -> gradients`` (the noise of
   ``tfwd.noise`` adds its draw there). A consumer has ``curvature_layers`` (the layers whose
   records it reads) and ``needs_persistent_tape``;
4. ``optimizer.apply(gradients, model.trainable_weights)`` after the curvature update;
5. with K-FAC's ``adaptive_damping``, on its damping steps: the step's actual and predicted
   loss changes on this batch (``tfwd.curvature.quadratic_model``, from the parameters read
   before and after ``apply``) go to ``optimizer.update_damping``, which adapts λ.

``install()`` makes ``model.fit`` / ``train_on_batch`` run this step (it mirrors Keras 3's
TensorFlow ``train_step``: loss tracker, metrics); a custom ``strategy.run`` loop calls
``replica_step``. A model trains through one TrainStep: installing a second one raises
instead of silently dropping the first one's consumers.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras.src.losses import loss as keras_loss
from keras.src.trainers.data_adapters import data_adapter_utils

from tfwd.curvature.preconditions import check_consumer_losses, check_sample_weight
from tfwd.curvature.quadratic_model import reduction_terms
from tfwd.curvature.registry import block_for
from tfwd.curvature.step import captured_forward_backward
from tfwd.optimizers.kfac import KFAC


def _values_if(condition, variables) -> list:
    """The variables' current values when ``condition`` holds, else zeros (no copy)."""
    return tf.cond(condition, lambda: [tf.identity(v.value) for v in variables],
                   lambda: [tf.zeros(v.shape, v.dtype) for v in variables])


class TrainStep:
    """One training step of ``model`` feeding its optimizer's curvature and ``consumers``."""

    def __init__(self, model: keras.Model, consumers=()):
        self.model = model
        self.consumers = list(consumers)

    @property
    def curvature_optimizer(self):
        """The K-FAC optimizer to feed (unwrapped from a LossScaleOptimizer), or None."""
        optimizer = self.model.optimizer
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        return inner if isinstance(inner, KFAC) else None

    def _blocks(self) -> list:
        """Each captured layer once: K-FAC's blocks, then the consumers' other layers."""
        optimizer = self.curvature_optimizer
        blocks = list(optimizer.curvature_blocks) if optimizer is not None else []
        if optimizer is not None:
            optimizer._check_attached()
        seen = {id(block.layer) for block in blocks}
        for consumer in self.consumers:
            for layer in consumer.curvature_layers:
                if id(layer) not in seen:
                    seen.add(id(layer))
                    blocks.append(block_for(layer))
        return blocks

    def replica_step(self, x, y, sample_weight=None):
        """Steps 1-4 of the module docstring in replica context; returns (y_pred, loss)."""
        model, optimizer = self.model, self.model.optimizer
        curvature = self.curvature_optimizer
        users = ([curvature] if curvature is not None else []) + self.consumers
        check_sample_weight([type(user).__name__ for user in users], sample_weight)
        check_consumer_losses(model, users)
        persistent = curvature is not None or any(c.needs_persistent_tape for c in self.consumers)
        # K-FAC may precondition Dense gradients through their per-example factors only when
        # the gradients reach apply() as the loss gave them: no consumer changes them.
        low_rank = curvature.low_rank_layers() if curvature is not None and not self.consumers \
            else []
        captured = captured_forward_backward(
            model, optimizer, self._blocks(), x, y, sample_weight, persistent=persistent,
            example_gradient_layers=low_rank + [l.name for c in self.consumers
                                                for l in c.curvature_layers])
        updates = []
        if curvature is not None:
            updates.append(curvature.update_curvature(captured.tape, captured.records,
                                                      captured.y_pred, y))
            if low_rank:
                curvature.record_gradient_factors(captured.records)
        gradients = captured.gradients
        for consumer in self.consumers:
            gradients = consumer.observe(captured.tape, captured.records, captured.y_pred, y,
                                         gradients)
        captured.tape = None  # release the persistent tape before the update
        adapting = (curvature is not None and curvature.damping_adaptation is not None)
        if adapting:
            is_damping_step = curvature.is_damping_step()
            before = _values_if(is_damping_step, model.trainable_variables)
        with tf.control_dependencies(updates):
            optimizer.apply(gradients, model.trainable_weights)
        if adapting:
            terms = tf.cond(
                is_damping_step,
                lambda: reduction_terms(model, x, y, sample_weight, before,
                                        [v.value for v in model.trainable_variables]),
                lambda: tf.zeros([2]))
            curvature.update_damping(terms)
        return captured.y_pred, captured.loss

    def train_step(self, data):
        """Keras ``train_step``: the replica step, the loss tracker and the metrics."""
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        y_pred, loss = self.replica_step(x, y, sample_weight)
        self.model._loss_tracker.update_state(
            keras_loss.unscale_loss_for_distribution(loss),
            sample_weight=tf.shape(tf.nest.flatten(x)[0])[0],
        )
        return self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def install(self) -> "TrainStep":
        """Make ``model.fit`` use this step (an instance attribute shadows ``train_step``;
        the cached train function is dropped so the next ``fit`` traces it)."""
        installed = getattr(self.model.train_step, "__self__", None)
        if isinstance(installed, TrainStep) and installed is not self:
            raise ValueError(
                f"Model {self.model.name!r} already trains through a TrainStep with consumers "
                f"{installed.consumers}; build one TrainStep with all consumers instead.")
        object.__setattr__(self.model, "train_step", self.train_step)
        self.model.train_function = None
        return self
