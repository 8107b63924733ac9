"""The sizes an experiment entry runs at (``tfwd.experiments.spec``)."""
from __future__ import annotations

from tfwd.choices._choice import Choice


class ScaleName(Choice):
    PAPER = "paper"  # the papers' settings
    MNIST_PAPER = "mnist_paper"  # paper 002 table 1's MNIST rows at the paper's settings
    SMOKE = "smoke"  # real MNIST, small models, 2 epochs
    TINY = "tiny"  # seconds per run, for the tests


SCALES = ScaleName.values()
