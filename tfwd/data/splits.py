"""Which official training examples form the fixed held-out validation set.

The paper's protocol holds `HELD_OUT_SIZE` = 5,000 examples out of the official training set
(`tfwd.data.catalog`). The rule depends on what the stored dataset records:

* **Datasets with an `index` feature** (the offline `tfwd_mnist`, see `tfwd.data.offline_mnist`):
  the held-out examples are rows 0..4,999 of the official training file (`index < 5000`),
  the convention of TensorFlow's original MNIST reader (`read_data_sets(validation_size=
  5000)` kept the first 5,000 rows for validation). Examples are put back in `index` order
  after reading, so nothing depends on the order in which TFDS wrote them.
* **Registered TFDS datasets** (`mnist`, `fashion_mnist`, `cifar10`, `cifar100` downloaded by
  TFDS): they carry no row index, and TFDS stores examples in an order shuffled by a hash of
  its internal keys, so `train[:5000]` would be tied to TFDS's key and hashing scheme.
  Instead the held-out examples are the 5,000 whose SHA-256 digest of the raw uint8 pixel
  bytes (row-major H×W×C) is smallest — a rule of the content alone, independent of storage
  order, shard layout and TFDS version. Identical images tie and the earlier one in storage
  order is held out, which matters only if identical images carry different labels.

Caveat: the two rules pick different examples, so MNIST read from a TFDS-prepared `mnist`
and from `tfwd_mnist` have different (equally sized, equally fixed) validation sets.
"""
import hashlib

import numpy as np

from tfwd.choices.data import Split
from tfwd.data.catalog import HELD_OUT_SIZE


def held_out_by_index(index: np.ndarray) -> np.ndarray:
    """Boolean mask of the held-out rows: the first `HELD_OUT_SIZE` of the official file."""
    return np.asarray(index) < HELD_OUT_SIZE


def held_out_by_content(images: np.ndarray) -> np.ndarray:
    """Boolean mask of the `HELD_OUT_SIZE` images with the smallest SHA-256 pixel digests."""
    digests = [hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest() for image in images]
    # Python's sort is stable (ties between identical images keep storage order) and compares
    # bytes exactly; numpy's fixed-width bytes dtype would drop trailing zero bytes.
    chosen = sorted(range(len(digests)), key=digests.__getitem__)[:HELD_OUT_SIZE]
    mask = np.zeros(len(images), dtype=bool)
    mask[chosen] = True
    return mask


def select_rows(split: str, held_out: np.ndarray) -> np.ndarray:
    """Row numbers of `split` within the official training set, given the held-out mask.

    Args:
      split: "train", "validation" or "train_full".
      held_out: boolean mask over the official training set from one of the rules above.
    """
    if split == Split.TRAIN:
        return np.flatnonzero(~held_out)
    if split == Split.VALIDATION:
        return np.flatnonzero(held_out)
    if split == Split.TRAIN_FULL:
        return np.arange(len(held_out))
    raise ValueError(f"{split!r} is not drawn from the training set.")
