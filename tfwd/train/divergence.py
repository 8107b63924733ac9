"""Stop a run at its first non-finite loss or update, and say where it happened and what to try.

The check costs no host synchronisation per step. Inside every training step (after
``optimizer.apply``) the step records, in a variable, the first optimizer step at which

    loss ∉ ℝ   or   some trainable θ ∉ ℝ      (θ is finite before the step, so its update is not)

holds. ``loss`` is what the step reports: the running mean of the epoch's losses in ``fit`` (it
turns non-finite at the first non-finite batch loss and stays so), the batch loss in the custom
loop. The host reads that variable every ``DIVERGENCE_CHECK_STEPS`` steps (``DivergenceCallback``)
and at the end of every epoch, when ``nonfinite_optimizer_state`` also checks the optimizer's
own variables (momentum, Adam moments, K-FAC factors and inverses), which a non-finite factor
between K-FAC's inverse steps would otherwise hide until the next inverse step.

Under a tf.distribute strategy the variable is read from the first replica: the weights are the
same on every replica, and another replica's non-finite loss reaches them through the
all-reduced gradient at the same step.
"""
from __future__ import annotations

import functools

import keras
import tensorflow as tf

from tfwd.choices.optimizers import is_kfac
from tfwd.choices.schedules import LearningRateScaling

# How often (in steps) the host reads the flag: at most this many steps run after divergence.
DIVERGENCE_CHECK_STEPS = 10
# K-FAC's own stop at an inverse step (tfwd.optimizers.kfac) raises an error with this text.
_KFAC_FACTOR_ERROR = "are not finite: training diverged"


class DivergenceMonitor:
    """The first optimizer step with a non-finite loss or trainable weight, kept in the graph."""

    def __init__(self, model: keras.Model):
        self.model = model
        with model.distribute_strategy.scope():
            self.first_step = tf.Variable(
                -1, dtype=tf.int64, trainable=False, name="first_nonfinite_step",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )

    def record(self, loss):
        """In the step, after ``optimizer.apply``: remember this step if it is the first bad one."""
        weights = [tf.reduce_all(tf.math.is_finite(w)) for w in self.model.trainable_weights]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(loss))] + weights)
        step = tf.cast(self.model.optimizer.iterations, tf.int64)
        first = self.first_step.read_value()
        return self.first_step.assign(tf.where(tf.logical_and(first < 0, tf.logical_not(finite)),
                                               step, first))

    def install(self) -> None:
        """Wrap whatever ``train_step`` the model has (Keras's or the taped one) with ``record``.

        Call after the model's train step is final (after ``TrainStep.install``).
        """
        inner = self.model.train_step

        def checked_train_step(data):
            logs = inner(data)
            self.record(logs["loss"])
            return logs

        object.__setattr__(self.model, "train_step", functools.wraps(inner)(checked_train_step))
        self.model.train_function = None

    def diverged_at(self) -> int | None:
        """The first non-finite optimizer step (1-based), or None (one host read)."""
        step = int(self.first_step.numpy())
        return step if step >= 0 else None


class DivergenceCallback(keras.callbacks.Callback):
    """Stops ``fit`` within ``every_steps`` steps of the monitor's first non-finite step."""

    def __init__(self, monitor: DivergenceMonitor, every_steps: int = DIVERGENCE_CHECK_STEPS):
        super().__init__()
        self.monitor, self.every_steps = monitor, every_steps

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every_steps == 0 and self.monitor.diverged_at() is not None:
            self.model.stop_training = True


@tf.function
def _finite_flags(variables):
    return [tf.reduce_all(tf.math.is_finite(v)) for v in variables]


def nonfinite_optimizer_state(optimizer) -> list[str]:
    """Names of the optimizer's float variables holding a NaN or infinity (one host read)."""
    variables = [v for v in optimizer.variables if keras.backend.is_float_dtype(v.dtype)]
    if not variables:
        return []
    flags = _finite_flags([v.value if isinstance(v, keras.Variable) else v for v in variables])
    return [v.path if hasattr(v, "path") else v.name
            for v, finite in zip(variables, flags) if not bool(finite)]


def is_kfac_factor_error(error: Exception) -> bool:
    """True for the error K-FAC raises when its factors are not finite at an inverse step."""
    return isinstance(error, tf.errors.InvalidArgumentError) and _KFAC_FACTOR_ERROR in str(error)


def likely_fix(config) -> str:
    """What to change in ``config`` (a TrainConfig) to stop a divergence, in flag terms."""
    learning_rate, weight_decay = config.optimizer.learning_rate, config.optimizer.weight_decay
    kfac, schedule = config.optimizer.kfac, config.schedule
    fixes = [f"lower --lr (it is {learning_rate:g})"]
    if is_kfac(config.optimizer.name):
        fixes.append(f"raise --damping (it is {kfac.damping:g})")
        if kfac.kl_clip is None:
            fixes.append("set --kl_clip (e.g. 1e-4)")
        if kfac.inv_every > 100:
            fixes.append(f"lower --inv_every (it is {kfac.inv_every}: stale inverses)")
    if weight_decay * learning_rate >= 1:
        fixes.append(f"lower --weight_decay: lr·weight_decay = "
                     f"{weight_decay * learning_rate:g} ≥ 1 overshoots zero")
    if schedule.warmup_epochs == 0 and schedule.lr_scaling != LearningRateScaling.NONE \
            and schedule.batch_size > schedule.base_batch_size:
        fixes.append("add --warmup_epochs for the large batch")
    return "; ".join(fixes)


def divergence_record(config, *, epoch: int, step: int, global_step: int, cause: str) -> dict:
    """results.json's ``divergence`` entry: where (1-based epoch and step in it), what, the fix."""
    message = (f"training diverged at epoch {epoch}, step {step} (optimizer step {global_step}): "
               f"{cause}. Likely fix: {likely_fix(config)}.")
    return {"epoch": epoch, "step": step, "global_step": global_step, "cause": cause,
            "message": message}
