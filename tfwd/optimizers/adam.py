"""Adam with L2 or decoupled weight decay ("AdamW").

Update (paper 000 §3; Loshchilov & Hutter), g = ∇L, t = step count:

    g̃ ← g + γθ                                   (decay_type="l2", on the decay group)
    m ← β₁ m + (1 − β₁) g̃,   v ← β₂ v + (1 − β₂) g̃²
    θ ← θ − η m̂ / (√v̂ + ε)   with m̂, v̂ bias-corrected (Keras's Adam)
    θ ← θ − η γ θ                                 (decay_type="decoupled", before the step)

The decoupled form is Keras's ``AdamW`` exactly; with L2 the penalty is rescaled by the
second moments, which is why paper 000 finds the two forms behave differently.
"""
from __future__ import annotations

import keras

from tfwd.choices import decay as decay_defaults
from tfwd.choices.models import TOP_LAYER
from tfwd.choices.optimizers import Optimizer
from tfwd.optimizers.decay import DecayGroupOrPredicate, WeightDecay


@keras.saving.register_keras_serializable(package="tfwd")
class Adam(keras.optimizers.Adam):
    """Keras Adam whose weight decay is L2 or decoupled, on a layer group.

    Args: as ``keras.optimizers.Adam`` plus ``weight_decay`` (γ), ``decay_type``
    (``"decoupled"``/``"l2"``), ``decay_group`` (``"all"``/``"top"``/``"rest"``/predicate)
    and ``top_layer`` (the output layer's name).
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float = decay_defaults.WEIGHT_DECAY,
        decay_type: str = decay_defaults.DECAY_TYPE,
        decay_group: DecayGroupOrPredicate = decay_defaults.DECAY_GROUP,
        top_layer: str = TOP_LAYER,
        name: str = Optimizer.ADAM,
        **kwargs,
    ):
        decay = WeightDecay(weight_decay, decay_type, decay_group, top_layer)
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            weight_decay=decay.keras_weight_decay,
            name=name,
            **kwargs,
        )
        self.decay = decay

    def build(self, variables):
        if self.built:
            return
        self.decay.check_group(variables)
        super().build(variables)

    def _use_weight_decay(self, variable):
        return self.decay.applies_to(variable)

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(self.decay.l2_gradient(gradient, variable), variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(self.decay.get_config())
        return config
