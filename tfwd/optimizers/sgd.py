"""SGD with momentum and L2 or decoupled weight decay ("SGDW").

Update (paper 000 §3; docs/equations.md §2), g = ∇L, μ = ``momentum``, η = learning rate:

    g̃ ← g + γθ               (only for decay_type="l2", on the decay group)
    v ← μ v + g̃
    θ ← θ − η v               (Nesterov: θ ← θ − η (g̃ + μ v))
    θ ← θ − η γ θ             (only for decay_type="decoupled", applied before the step)

The learning rate multiplies the momentum buffer outside it, as in the authors' TensorFlow 1
``MomentumOptimizer``; Keras's SGD folds η into the buffer instead. The two agree for a
constant learning rate and differ only when the schedule changes η.
Without momentum, decoupled decay and L2 decay are the same update.
"""
from __future__ import annotations

import keras

from tfwd.choices import decay as decay_defaults
from tfwd.choices.models import TOP_LAYER
from tfwd.choices.optimizers import MOMENTUM, Optimizer
from tfwd.optimizers.decay import DecayGroupOrPredicate, WeightDecay


@keras.saving.register_keras_serializable(package="tfwd")
class SGD(keras.optimizers.Optimizer):
    """SGD with (Nesterov) momentum and L2 or decoupled weight decay on a layer group.

    Args:
      learning_rate: η, a float or a Keras schedule.
      momentum: μ in [0, 1).
      nesterov: use Nesterov momentum.
      weight_decay: γ.
      decay_type: ``"decoupled"`` or ``"l2"`` (see ``tfwd.optimizers.decay``).
      decay_group: ``"all"``, ``"top"``, ``"rest"`` or a predicate on variables.
      top_layer: name of the output layer for the ``"top"``/``"rest"`` groups.
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = MOMENTUM,
        nesterov: bool = False,
        weight_decay: float = decay_defaults.WEIGHT_DECAY,
        decay_type: str = decay_defaults.DECAY_TYPE,
        decay_group: DecayGroupOrPredicate = decay_defaults.DECAY_GROUP,
        top_layer: str = TOP_LAYER,
        name: str = Optimizer.SGD,
        **kwargs,
    ):
        decay = WeightDecay(weight_decay, decay_type, decay_group, top_layer)
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=decay.keras_weight_decay,
            name=name,
            **kwargs,
        )
        self.decay = decay
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
        self.momentum = momentum
        self.nesterov = nesterov

    def build(self, variables):
        if self.built:
            return
        self.decay.check_group(variables)
        super().build(variables)
        self.velocities = (
            self.add_optimizer_variables(variables, "velocity") if self.momentum else []
        )

    def _use_weight_decay(self, variable):
        return self.decay.applies_to(variable)

    def update_step(self, gradient, variable, learning_rate):
        gradient = self.decay.l2_gradient(gradient, variable)
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        if not self.momentum:
            self.assign_sub(variable, learning_rate * gradient)
            return
        velocity = self.velocities[self._get_variable_index(variable)]
        self.assign(velocity, self.momentum * velocity + gradient)
        direction = gradient + self.momentum * velocity if self.nesterov else velocity
        self.assign_sub(variable, learning_rate * direction)

    def get_config(self):
        config = super().get_config()
        config.update(self.decay.get_config())
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
