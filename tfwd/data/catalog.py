"""The datasets tfwd trains on, their splits and their fixed facts.

The split protocol follows the paper: a fixed 5,000-example validation set is held out of
the official training set, so

    train      = official training set minus the held-out examples,
    validation = the held-out examples,
    train_full = train ∪ validation (the whole official training set),
    test       = the official test set.

How the held-out examples are chosen is documented in `tfwd.data.splits`.

Normalization constants are the per-channel mean and standard deviation of pixel values
scaled to [0, 1], over every pixel of the full official training set (`train_full`), so all
four splits share one affine map. MNIST's were computed here from the data
(`python -m tfwd.data.prepare mnist`); Fashion-MNIST's and CIFAR's are the standard values
computed the same way (population standard deviation over all training pixels).
"""
import dataclasses

from tfwd.choices.data import SPLITS, Dataset, Split

HELD_OUT_SIZE = 5_000


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    Attributes:
      name: tfwd's name for the dataset (also its registered TFDS name).
      image_shape: (height, width, channels) of one image.
      num_classes: number of labels; labels are integers in [0, num_classes).
      split_sizes: number of examples in each of `SPLITS`.
      channel_mean: per-channel mean of training pixels in [0, 1].
      channel_std: per-channel standard deviation of training pixels in [0, 1].
      augmentable: whether random crop + horizontal flip are meaningful (CIFAR only;
        flipping digits changes their meaning).
    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    split_sizes: dict[str, int]
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    augmentable: bool


def _split_sizes(train_full: int, test: int) -> dict[str, int]:
    return {
        Split.TRAIN: train_full - HELD_OUT_SIZE,
        Split.VALIDATION: HELD_OUT_SIZE,
        Split.TRAIN_FULL: train_full,
        Split.TEST: test,
    }


_DATASETS = {
    info.name: info
    for info in (
        DatasetInfo(
            name=Dataset.MNIST,
            image_shape=(28, 28, 1),
            num_classes=10,
            split_sizes=_split_sizes(train_full=60_000, test=10_000),
            channel_mean=(0.13066,),
            channel_std=(0.30811,),
            augmentable=False,
        ),
        DatasetInfo(
            name=Dataset.FASHION_MNIST,
            image_shape=(28, 28, 1),
            num_classes=10,
            split_sizes=_split_sizes(train_full=60_000, test=10_000),
            channel_mean=(0.28604,),
            channel_std=(0.35302,),
            augmentable=False,
        ),
        DatasetInfo(
            name=Dataset.CIFAR10,
            image_shape=(32, 32, 3),
            num_classes=10,
            split_sizes=_split_sizes(train_full=50_000, test=10_000),
            channel_mean=(0.49139, 0.48216, 0.44653),
            channel_std=(0.24703, 0.24349, 0.26159),
            augmentable=True,
        ),
        DatasetInfo(
            name=Dataset.CIFAR100,
            image_shape=(32, 32, 3),
            num_classes=100,
            split_sizes=_split_sizes(train_full=50_000, test=10_000),
            channel_mean=(0.50707, 0.48655, 0.44092),
            channel_std=(0.26733, 0.25644, 0.27615),
            augmentable=True,
        ),
    )
}

DATASET_NAMES = tuple(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """Returns the facts about dataset `name`; raises ValueError naming the valid names."""
    if name not in _DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}."
        )
    return _DATASETS[name]


def check_split(split: str) -> None:
    """Raises ValueError naming the valid splits unless `split` is one of `SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
