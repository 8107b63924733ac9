"""The datasets and splits a run reads (``tfwd.data.catalog`` holds their facts)."""
from __future__ import annotations

from tfwd.choices._choice import Choice


class Dataset(Choice):
    MNIST = "mnist"
    FASHION_MNIST = "fashion_mnist"
    CIFAR10 = "cifar10"
    CIFAR100 = "cifar100"


class Split(Choice):
    TRAIN = "train"  # the official training set minus the 5k held out
    VALIDATION = "validation"  # the 5k held out
    TRAIN_FULL = "train_full"  # train ∪ validation, for the final retraining
    TEST = "test"


class SourceSplit(Choice):
    """The official TFDS splits our splits are cut from (the held-out 5k come from TRAIN)."""

    TRAIN = "train"
    TEST = "test"


DATASETS = Dataset.values()
SPLITS = Split.values()
TRAIN_SPLITS = (Split.TRAIN, Split.TRAIN_FULL)
