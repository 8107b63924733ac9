"""The architectures of the model zoo (``tfwd.models``), its output layer, and batch norm.

Spelled here, without TensorFlow, so that launchers check ``--model`` before importing it;
``tfwd.models`` registers one builder per name (a test checks they agree).
"""
from __future__ import annotations

from tfwd.choices._choice import Choice


class Architecture(Choice):
    ALEXNET = "alexnet"
    LENET = "lenet"
    MLP = "mlp"
    RESNET32 = "resnet32"
    RESNET44 = "resnet44"
    TRANSFORMER = "transformer"
    VGG11 = "vgg11"
    VGG13 = "vgg13"
    VGG16 = "vgg16"
    VGG19 = "vgg19"


ARCHITECTURES = Architecture.values()
# The zoo's output Dense layer: the "top" of the decay groups (tfwd.choices.decay).
TOP_LAYER = "top"
# No batch norm unless asked for: normalization is one of the factors the papers vary, and a
# model built by tfwd.models.build equals the one a default TrainConfig trains.
BATCH_NORM = False
