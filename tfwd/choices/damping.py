"""The options of K-FAC's adaptive (Levenberg–Marquardt) damping: defaults and valid ranges.

One owner for both, so that ``TrainConfig`` checks the flags before TensorFlow is imported with
the same rule ``tfwd.optimizers.damping.DampingAdaptation`` enforces (docs/equations.md §4.9).
Messages name the ``TrainConfig`` fields (and flags) ``damping_interval``, ``damping_decay``,
``min_damping`` and ``max_damping``.
"""
from __future__ import annotations

INTERVAL = 5  # steps between adaptations: Martens & Grosse 2015 §6.5's T₁ = 5
DECAY = 0.95  # λ is scaled by ω = DECAY ** INTERVAL: M&G's ω₁ = (19/20)^T₁
# Wide bounds, chosen here: they only stop a runaway λ, the rule itself keeps it sensible.
MINIMUM = 1e-8
MAXIMUM = 1e2


def check_adaptation(interval, decay: float, minimum: float, maximum: float) -> None:
    """Raise ValueError naming the option unless the rule's options are in range."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"damping_interval (the adaptation interval) must be an integer >= 1, "
                         f"got {interval!r}.")
    if not 0 < decay < 1:
        raise ValueError(f"damping_decay (the adaptation decay) must be in (0, 1), got {decay!r}.")
    if not 0 < minimum <= maximum:
        raise ValueError(f"The adaptation bounds need 0 < min_damping <= max_damping, got "
                         f"[{minimum!r}, {maximum!r}].")


def check_initial_damping(damping: float, minimum: float, maximum: float) -> None:
    """Raise ValueError unless the initial λ lies inside the adaptation bounds."""
    if not minimum <= damping <= maximum:
        raise ValueError(f"damping={damping!r} lies outside the adaptation bounds "
                         f"[min_damping, max_damping] = [{minimum!r}, {maximum!r}]; widen the "
                         "bounds or start inside them.")
