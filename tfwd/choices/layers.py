"""Groups of a model's weight layers that diagnostics select (``tfwd.diagnostics.layers``)."""
from __future__ import annotations

from tfwd.choices._choice import Choice


class LayerGroup(Choice):
    ALL = "all"  # every Dense/Conv2D
    CONV = "conv"  # every Conv2D
    DENSE = "dense"
    NORMALIZED = "normalized"  # every batch-normalized Dense/Conv2D


LAYER_GROUPS = LayerGroup.values()
# The layers weight-norm transfer rescales: paper 000 figure 4's "wn-conv".
WEIGHT_NORM_LAYERS = LayerGroup.CONV
