"""In-memory, epoch-indexed input pipelines for MNIST, Fashion-MNIST and CIFAR-10/100.

A split is decoded through TFDS once, when the pipeline is built, and kept in memory as uint8
(the largest, CIFAR's 50,000 × 32 × 32 × 3, is 150 MB). `InputPipeline.epoch(k)` then returns
the k-th epoch as a `tf.data.Dataset` of

    images: float32 [B, H, W, C], (pixel / 255 - channel_mean) / channel_std,
    labels: int32 [B],

with constants from `tfwd.data.catalog`. Each epoch is a pure function of (seed, k): training
pipelines shuffle with a stateless permutation seeded by (seed, k), and CIFAR augmentation
(`tfwd.data.augment`) is seeded the same way, so a run resumed at epoch k sees exactly the
batches an uninterrupted run would have seen. Inside
`tfwd.data.sharing.shared_input_pipelines()` equal requests share one decoded split and one
pipeline.
"""
import math
import os

import numpy as np
import tensorflow as tf

from tfwd.data import augment as augment_lib
from tfwd.data import catalog, locations, sharing, sources
from tfwd.data.catalog import DatasetInfo


class InputPipeline:
    """One split of one dataset, held in memory, served one epoch at a time."""

    def __init__(
        self,
        info: DatasetInfo,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        training: bool,
        augment: bool,
        drop_remainder: bool,
    ):
        """Use `input_pipeline`, which validates arguments and reads the data."""
        self.info = info
        self.batch_size = batch_size
        self.seed = seed
        self.training = training
        self.augment = augment
        self.drop_remainder = drop_remainder
        self._images = tf.constant(images, dtype=tf.uint8)
        self._labels = tf.constant(labels, dtype=tf.int32)
        std = np.asarray(info.channel_std, dtype=np.float32)
        self._scale = tf.constant(1.0 / (255.0 * std))
        self._shift = tf.constant(-np.asarray(info.channel_mean, dtype=np.float32) / std)

    @property
    def num_examples(self) -> int:
        return int(self._labels.shape[0])

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch: a short last batch is dropped iff `drop_remainder`."""
        if self.drop_remainder:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.info.image_shape

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def epoch(self, index: int) -> tf.data.Dataset:
        """The batches of epoch `index` (0-based): a pure function of (seed, index)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"Epoch index must be a non-negative integer, got {index!r}.")
        epoch_seed = tf.constant([self.seed, int(index)], dtype=tf.int64)
        shuffle_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(epoch_seed, num=2)
        )
        rows = tf.range(self.num_examples)
        if self.training:
            rows = tf.random.experimental.stateless_shuffle(rows, seed=shuffle_seed)
        if self.augment:
            offsets, flips = augment_lib.draw_crop_and_flip(self.num_examples, augment_seed)

        def make_batch(batch_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            images = tf.gather(self._images, batch_rows)
            if self.augment:
                images = augment_lib.crop_and_flip(
                    images, tf.gather(offsets, batch_rows), tf.gather(flips, batch_rows)
                )
            images = tf.cast(images, tf.float32) * self._scale + self._shift
            return images, tf.gather(self._labels, batch_rows)

        batches = tf.data.Dataset.from_tensor_slices(rows).batch(
            self.batch_size, drop_remainder=self.drop_remainder
        )
        return batches.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE
        )


def input_pipeline(
    name: str,
    split: str,
    *,
    batch_size: int,
    seed: int,
    training: bool,
    augment: bool = False,
    data_dir: str | os.PathLike | None = None,
    drop_remainder: bool | None = None,
    download: bool = True,
) -> InputPipeline:
    """Reads one split of a dataset into memory and returns its epoch-indexed pipeline.

    Args:
      name: "mnist", "fashion_mnist", "cifar10" or "cifar100".
      split: "train", "validation", "train_full" or "test" (see `tfwd.data.catalog`).
      batch_size: examples per batch.
      seed: run seed; with the epoch index it fixes the shuffle and the augmentation.
      training: shuffle every epoch (and allow augmentation); False keeps split order.
      augment: random crop + horizontal flip (CIFAR training pipelines only).
      data_dir: TFDS data directory; None means `$TFWD_DATA_DIR` or ~/tensorflow_datasets.
      drop_remainder: drop a short last batch; None means `training`.
      download: let TFDS download the data when it is not prepared in `data_dir`.

    Raises:
      ValueError: unknown dataset or split, bad batch size, or augmentation requested for
        MNIST-like data or an evaluation pipeline.
      DataNotFoundError: the data is not prepared and cannot be downloaded; the message
        names the command that prepares it.
    """
    info = catalog.dataset_info(name)
    if drop_remainder is None:
        drop_remainder = training
    _check_request(info, split, batch_size, training, augment, drop_remainder)
    data_dir = locations.resolve_data_dir(data_dir)
    options = dict(batch_size=batch_size, seed=seed, training=training, augment=augment,
                   drop_remainder=drop_remainder)

    def build() -> InputPipeline:
        builder = sources.find_builder(name, data_dir, download)
        images, labels = _decoded_split(builder, info, split)
        return InputPipeline(info, images, labels, **options)

    cache = sharing.active_cache()
    if cache is None:
        return build()
    return cache.pipeline((name, split, os.fspath(data_dir), download,
                           tuple(sorted(options.items()))), build)


def _check_request(info: DatasetInfo, split: str, batch_size: int, training: bool,
                   augment: bool, drop_remainder: bool) -> None:
    """ValueError for a request `input_pipeline` cannot serve, before any data is read."""
    catalog.check_split(split)
    if augment and not info.augmentable:
        raise ValueError(
            f"Augmentation (random crop + horizontal flip) is for CIFAR only; {info.name!r} must"
            " use augment=False."
        )
    if augment and not training:
        raise ValueError("Augmentation is for training pipelines; pass augment=False.")
    num_examples = info.split_sizes[split]
    if batch_size < 1 or (drop_remainder and batch_size > num_examples):
        raise ValueError(
            f"batch_size={batch_size} leaves no batch in {info.name} {split} ({num_examples}"
            f" examples, drop_remainder={drop_remainder})."
        )


def _decoded_split(builder, info: DatasetInfo, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``sources.load_split``, through the active ``sharing.PipelineCache`` if any."""
    cache = sharing.active_cache()
    if cache is None:
        return sources.load_split(builder, info, split)
    return cache.split((str(builder.data_dir), info.name, split),
                       lambda: sources.load_split(builder, info, split))
