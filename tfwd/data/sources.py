"""Finds a prepared TFDS dataset for a tfwd dataset and reads one split into memory.

Resolution order, checked before anything is decoded:

* `mnist`: (1) TFDS's registered `mnist` already prepared in `data_dir`; (2) the offline
  `tfwd_mnist` written by `python -m tfwd.data.prepare mnist`; (3) if `download`, a TFDS
  download; otherwise `DataNotFoundError` naming the prepare command.
* `fashion_mnist`, `cifar10`, `cifar100`: (1) the registered dataset prepared in `data_dir`;
  (2) if `download`, a TFDS download; otherwise `DataNotFoundError`.

Without internet a TFDS download fails only after TFDS's own retries (about 3.5 minutes), so
a download is attempted only after a connection to TFDS's storage host succeeds within a few
seconds; otherwise `DataNotFoundError` is raised at once. `download=False` never tries.

A split decoded once is kept decoded beside the dataset's files (`tfwd.data.decoded`).
"""
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from tfwd.choices.data import Dataset, SourceSplit, Split
from tfwd.data import decoded, offline_mnist, splits
from tfwd.data.availability import DataNotFoundError, missing_data_message, storage_reachable
from tfwd.data.catalog import DatasetInfo

_READ_CHUNK = 10_000
# Features kept in memory; others (e.g. CIFAR's string `id`) are dropped while reading.
_USED_FEATURES = ("image", "label", "index")
def _is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    # Checking that the folder exists first avoids TFDS's warning about a missing folder.
    return builder.data_path.exists() and builder.is_prepared()


def _download_possible() -> bool:
    """False when a real download would start but cannot succeed (no route to the host)."""
    # Under tfds.testing.mock_data "downloading" is a no-op: there is nothing to reach.
    mocked = tfds.core.DatasetBuilder.download_and_prepare.__module__.startswith(
        "tensorflow_datasets.testing")
    return mocked or storage_reachable()


def find_builder(name: str, data_dir: str, download: bool) -> tfds.core.DatasetBuilder:
    """Returns a builder whose data is prepared in `data_dir`, in the module's order.

    Raises:
      DataNotFoundError: the data is missing and `download` is False or failed; the message
        says how to prepare it.
    """
    registered = tfds.builder(name, data_dir=data_dir)
    if _is_prepared(registered):
        return registered
    if name == Dataset.MNIST and offline_mnist.is_prepared(data_dir):
        return tfds.builder_from_directory(os.fspath(offline_mnist.dataset_dir(data_dir)))
    if not download or not _download_possible():
        raise DataNotFoundError(missing_data_message(name, data_dir, download))
    try:
        registered.download_and_prepare()
    except Exception as error:  # Network failures surface as many types (OSError, requests…).
        raise DataNotFoundError(missing_data_message(name, data_dir, download)) from error
    return registered


def read_split_arrays(
    builder: tfds.core.DatasetBuilder, tfds_split: str
) -> dict[str, np.ndarray]:
    """The used features of a TFDS split as numpy arrays (decoded once, then cached)."""
    dataset_path = pathlib.Path(os.fspath(builder.data_path))
    cached = decoded.load(dataset_path, builder.name, tfds_split)
    if cached is not None:
        return cached
    examples = builder.as_dataset(split=tfds_split).map(
        lambda example: {key: example[key] for key in _USED_FEATURES if key in example}
    )
    # Chunks rather than TFDS's `batch_size=-1`, which sizes its single batch from the
    # recorded split sizes and crashes when those are unknown (as under `tfds.testing`).
    chunks = list(tfds.as_numpy(examples.batch(_READ_CHUNK)))
    arrays = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    decoded.save(dataset_path, builder.name, tfds_split, arrays)
    return arrays


def _sorted_by_index(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(examples["index"], kind="stable")
    return {key: values[order] for key, values in examples.items()}


def load_split(
    builder: tfds.core.DatasetBuilder, info: DatasetInfo, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes one of `tfwd.data.catalog.SPLITS` into memory.

    Returns:
      (images, labels): uint8 [N, H, W, C] and int32 [N], N = `info.split_sizes[split]`.
      Datasets with an `index` feature come back in `index` order; others in storage order.
    """
    source = SourceSplit.TEST if split == Split.TEST else SourceSplit.TRAIN
    examples = read_split_arrays(builder, source)
    has_index = "index" in examples
    if has_index:
        examples = _sorted_by_index(examples)
    images, labels = examples["image"], examples["label"].astype(np.int32)
    if split != Split.TEST:
        if has_index:
            held_out = splits.held_out_by_index(examples["index"])
        else:
            held_out = splits.held_out_by_content(images)
        rows = splits.select_rows(split, held_out)
        images, labels = images[rows], labels[rows]
    expected = info.split_sizes[split]
    if len(labels) != expected or images.shape[1:] != info.image_shape:
        raise ValueError(
            f"{builder.name} in {builder.data_dir} gives {len(labels)} {split} images of shape"
            f" {images.shape[1:]}, expected {expected} of shape {info.image_shape}; "
            "delete that folder and prepare the dataset again."
        )
    return images, labels
