"""CIFAR augmentation: random 32×32 crop of the 4-pixel zero-padded image, random h-flip.

The standard CIFAR recipe (He et al. 2016, "Deep Residual Learning", Sec. 4.2). Randomness is
stateless: for one epoch, `draw_crop_and_flip` makes a table with one row per example of the
split, seeded only by the epoch's seed, so the crop and flip of the example in row r depend
only on (run seed, epoch index, r) — not on batch size, batching order or how many batches
were read before. That keeps augmented runs reproducible and resumable at any epoch.
"""
import tensorflow as tf

PADDING_PIXELS = 4


def draw_crop_and_flip(num_examples: int, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-example crop offsets and flip decisions for one epoch.

    Args:
      num_examples: number of examples (rows) in the split.
      seed: stateless seed, int shape [2].

    Returns:
      offsets: int32 [num_examples, 2], (row, column) of each crop's top-left corner in the
        padded image, uniform in [0, 2 * PADDING_PIXELS].
      flips: bool [num_examples], True (probability 1/2) to mirror the crop left-right.
    """
    offset_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    offsets = tf.random.stateless_uniform(
        [num_examples, 2], seed=offset_seed, minval=0, maxval=2 * PADDING_PIXELS + 1,
        dtype=tf.int32,
    )
    flips = tf.random.stateless_uniform([num_examples], seed=flip_seed) < 0.5
    return offsets, flips


def crop_and_flip(images: tf.Tensor, offsets: tf.Tensor, flips: tf.Tensor) -> tf.Tensor:
    """Zero-pads a batch by `PADDING_PIXELS`, crops each image back to size, mirrors some.

    Args:
      images: [B, H, W, C] batch, any dtype (padding uses its zero).
      offsets: int32 [B, 2], top-left corner of each crop in the padded image.
      flips: bool [B], which crops to mirror left-right.

    Returns:
      The [B, H, W, C] augmented batch.
    """
    height, width = images.shape[1], images.shape[2]
    pad = PADDING_PIXELS
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    rows = offsets[:, :1] + tf.range(height)  # [B, H]
    columns = offsets[:, 1:] + tf.range(width)  # [B, W]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    cropped = tf.gather(cropped, columns, axis=2, batch_dims=1)
    return tf.where(flips[:, None, None, None], tf.reverse(cropped, axis=[2]), cropped)
