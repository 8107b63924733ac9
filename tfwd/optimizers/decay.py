"""Weight decay as one rule shared by SGD, Adam and K-FAC (paper 000, section 3).

Two forms, with θ the parameters, η the (scheduled) learning rate, γ = ``weight_decay``
and ``step(·)`` the optimizer's direction (momentum buffer, Adam's m̂/(√v̂+ε), or
K-FAC's momentum over the preconditioned, KL-clipped gradient):

* ``"l2"``:        θ ← θ − η · step(∇L + γθ)   — the penalty gradient γθ goes through
  momentum, the Adam moments and the K-FAC preconditioner.
* ``"decoupled"``: θ ← θ − η · (step(∇L) + γθ) — the decay bypasses them; each step
  shrinks θ by the factor (1 − ηγ) (Loshchilov & Hutter, "Decoupled Weight Decay
  Regularization"; paper 000 eq. for "wd").

The decoupled form is exactly what the Keras 3 base optimizer already does before every
``update_step`` (``var -= var * weight_decay * learning_rate``, with the current schedule
value), so the optimizers hand γ to Keras in that case and only choose *which* variables
decay through ``_use_weight_decay``. The L2 form is added to the all-reduced gradient inside
the optimizer, never per replica (a per-replica addition would be summed once per replica).

The decay applies to a *layer group* (paper 000 figures 2 and 6): ``"all"``, ``"top"`` (only
the output layer, whose name is ``top_layer`` — ``"top"`` in the tfwd model zoo), ``"rest"``
(every other variable), or a predicate ``variable -> bool``. The predicate always receives the
``keras.Variable`` (with ``.path``, e.g. ``"dense_1/kernel"``), also where Keras hands the
optimizer its backend ``tf.Variable`` (named ``"dense_1/kernel:0"``): the optimizer's ``build``
records its variables (``check_group``) so that ``applies_to`` can map one to the other.
"""
from __future__ import annotations

import re
from typing import Callable, Union

from tfwd.choices import decay as defaults
from tfwd.choices.decay import DECAY_GROUPS, DecayGroup, DecayType
from tfwd.choices.models import TOP_LAYER

# A named group (DecayGroup) or a predicate variable -> bool.
DecayGroupOrPredicate = Union[str, Callable[[object], bool]]


def _backend_path(variable) -> str:
    # "top/kernel:0" on the first replica, "top/kernel/replica_1:0" on the others.
    return re.sub(r"(/replica_\d+)?:\d+$", "", variable.name)


def _is_in_layer(variable, layer_name: str) -> bool:
    # Keras variables have paths like "top/kernel" or "block/top/kernel"; inside distributed
    # updates Keras hands over the tf.Variable, named "top/kernel:0" (".../replica_1:0" on
    # other replicas). Either way the layer is one of the leading components.
    path = getattr(variable, "path", None) or variable.name.split(":")[0]
    return layer_name in path.split("/")[:-1]


class WeightDecay:
    """Which form of decay, how strong, and on which variables.

    Args:
      weight_decay: γ ≥ 0.
      decay_type: ``"decoupled"`` or ``"l2"`` (module docstring).
      decay_group: ``"all"``, ``"top"``, ``"rest"`` or a predicate on variables.
      top_layer: name of the output layer that the ``"top"``/``"rest"`` groups refer to.
    """

    def __init__(
        self,
        weight_decay: float = defaults.WEIGHT_DECAY,
        decay_type: str = defaults.DECAY_TYPE,
        decay_group: DecayGroupOrPredicate = defaults.DECAY_GROUP,
        top_layer: str = TOP_LAYER,
    ):
        if weight_decay is None or weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
        DecayType.check(decay_type, "decay_type")
        if not callable(decay_group) and decay_group not in DECAY_GROUPS:
            raise ValueError(
                f"decay_group must be one of {DECAY_GROUPS} or a callable "
                f"variable -> bool, got {decay_group!r}."
            )
        self.weight_decay = float(weight_decay)
        self.decay_type = decay_type
        self.decay_group = decay_group
        self.top_layer = top_layer
        self._variables_by_path = {}  # path -> keras.Variable, filled by check_group

    @property
    def decoupled(self) -> bool:
        return self.decay_type == DecayType.DECOUPLED and self.weight_decay > 0

    @property
    def l2(self) -> bool:
        return self.decay_type == DecayType.L2 and self.weight_decay > 0

    @property
    def keras_weight_decay(self) -> float | None:
        """The γ to give the Keras base optimizer: only the decoupled form is its job."""
        return self.weight_decay if self.decoupled else None

    def applies_to(self, variable) -> bool:
        """True if ``variable`` (Keras or backend variable) belongs to the decayed layer group."""
        if callable(self.decay_group):
            return bool(self.decay_group(self.keras_variable(variable)))
        if self.decay_group == DecayGroup.ALL:
            return True
        in_top = _is_in_layer(variable, self.top_layer)
        return in_top if self.decay_group == DecayGroup.TOP else not in_top

    def keras_variable(self, variable):
        """The ``keras.Variable`` of ``variable``, which may be its backend ``tf.Variable``."""
        if hasattr(variable, "path"):
            return variable
        path = _backend_path(variable)
        if path not in self._variables_by_path:
            raise ValueError(f"Variable {variable.name!r} is not one of the variables the "
                             "optimizer was built for; build it with the model's variables.")
        return self._variables_by_path[path]

    def check_group(self, variables) -> None:
        """Record the optimizer's (Keras) variables; fail early on a group that cannot work.

        A named group fails when it selects nothing, and "top"/"rest" also when no variable is
        in the layer ``top_layer`` (then "rest" would silently decay everything).
        """
        self._variables_by_path = {v.path: v for v in variables if hasattr(v, "path")}
        if (self.weight_decay == 0 or callable(self.decay_group)
                or self.decay_group == DecayGroup.ALL):
            return
        paths = [v.path for v in variables]
        if not any(_is_in_layer(v, self.top_layer) for v in variables):
            raise ValueError(
                f"decay_group={self.decay_group!r} is defined by the output layer "
                f"{self.top_layer!r}, but none of the variables {paths} is in it: 'top' selects "
                f"none and 'rest' would decay all of them. Name the output layer "
                f"{self.top_layer!r} (tfwd.models does), pass top_layer=<its name>, or give "
                "decay_group a predicate.")
        if not any(self.applies_to(v) for v in variables):
            raise ValueError(
                f"decay_group={self.decay_group!r} selects none of the variables "
                f"{[v.path for v in variables]}: name the output layer "
                f"{self.top_layer!r} (tfwd.models does), pass top_layer=<its name>, "
                "or give decay_group a predicate."
            )

    def l2_term(self, variable):
        """γθ for L2 decay on the group, else None."""
        if self.l2 and self.applies_to(variable):
            return self.weight_decay * variable
        return None

    def l2_gradient(self, gradient, variable):
        """∇L + γθ for L2 decay on the group; the gradient unchanged otherwise."""
        term = self.l2_term(variable)
        return gradient if term is None else gradient + term

    def get_config(self) -> dict:
        if callable(self.decay_group):
            raise ValueError(
                "An optimizer whose decay_group is a callable cannot be serialized; "
                f"use one of {DECAY_GROUPS} to save it."
            )
        return {
            "weight_decay": self.weight_decay,
            "decay_type": self.decay_type,
            "decay_group": self.decay_group,
            "top_layer": self.top_layer,
        }
