"""Tests of tfwd.data against independent facts.

MNIST runs on the real data prepared offline (`python -m tfwd.data.prepare mnist`; prepared
into a temporary folder here if the default data directory lacks it). Fashion-MNIST and
CIFAR run on `tfds.testing.mock_data` with random images of the real shapes and the real
official split sizes. Expected values are the paper's split sizes, MNIST's published label
counts and first labels, the byte range of 8-bit pixels, and exact identities of shuffling
and augmentation — never values produced by the code under test.
"""
import collections
import hashlib
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import tfwd.data
from tfwd.data import augment, locations, offline_mnist

# Label counts of the official MNIST files (LeCun et al. 1998), as every MNIST reader finds.
MNIST_TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# The first labels of the official training and test files.
MNIST_FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
MNIST_FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]

# The paper's protocol: 5,000 examples held out of the official training set.
HELD_OUT = 5_000
OFFICIAL_SIZES = {  # (official training set, official test set)
    "mnist": (60_000, 10_000),
    "fashion_mnist": (60_000, 10_000),
    "cifar10": (50_000, 10_000),
    "cifar100": (50_000, 10_000),
}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
SPLITS = ("train", "validation", "train_full", "test")


def expected_size(name: str, split: str) -> int:
    train_full, test = OFFICIAL_SIZES[name]
    return {
        "train": train_full - HELD_OUT,
        "validation": HELD_OUT,
        "train_full": train_full,
        "test": test,
    }[split]


def one_epoch(pipe: tfwd.data.InputPipeline, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    batches = list(pipe.epoch(index).as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def epoch_as_bytes(pipe: tfwd.data.InputPipeline) -> tuple[np.ndarray, np.ndarray, float]:
    """One epoch with the documented normalization (pixel / 255 - mean) / std undone.

    Returns:
      (pixels rounded to uint8, labels, largest distance of an unrounded pixel from an
      integer in [0, 255]), converted batch by batch to keep memory small.
    """
    info = pipe.info
    pixels, labels, rounding_error = [], [], 0.0
    for images, batch_labels in pipe.epoch(0).as_numpy_iterator():
        values = (images * np.float32(info.channel_std) + np.float32(info.channel_mean)) * 255
        rounded = np.clip(np.round(values), 0, 255)
        rounding_error = max(rounding_error, float(np.abs(values - rounded).max()))
        pixels.append(rounded.astype(np.uint8))
        labels.append(batch_labels)
    return np.concatenate(pixels), np.concatenate(labels), rounding_error


def content_keys(images: np.ndarray, labels: np.ndarray) -> list[tuple[bytes, int]]:
    """(SHA-256 of the image's pixel buffer, label) for each example."""
    return [
        (hashlib.sha256(image.tobytes()).digest(), int(label))
        for image, label in zip(images, labels)
    ]


def epoch_keys(pipe: tfwd.data.InputPipeline) -> list[tuple[bytes, int]]:
    """`content_keys` of one epoch's normalized images, batch by batch.

    Normalization is a fixed injective map of 8-bit pixels, so equal float buffers mean equal
    images; hashing them directly avoids converting large CIFAR splits back to bytes.
    """
    keys = []
    for images, labels in pipe.epoch(0).as_numpy_iterator():
        keys.extend(content_keys(images, labels))
    return keys


def assert_partition(keys: dict[str, list]) -> None:
    """train ∩ validation = ∅ and train ∪ validation = train_full (as multisets)."""
    assert not set(keys["train"]) & set(keys["validation"])
    assert collections.Counter(keys["train"]) + collections.Counter(
        keys["validation"]
    ) == collections.Counter(keys["train_full"])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory) -> str:
    """A data directory whose MNIST resolves to the offline `tfwd_mnist`."""
    default = locations.default_data_dir()
    registered = tfds.builder("mnist", data_dir=default)
    if offline_mnist.is_prepared(default) and not registered.data_path.exists():
        return default
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    offline_mnist.prepare(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def mnist_splits(mnist_data_dir) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Every MNIST split in storage order, as `epoch_as_bytes` returns it."""
    return {
        split: epoch_as_bytes(
            tfwd.data.input_pipeline(
                "mnist", split, batch_size=10_000, seed=0, training=False,
                data_dir=mnist_data_dir,
            )
        )
        for split in SPLITS
    }


def fast_mock_examples(official_sizes: tuple[int, int]):
    """A `mock_data` reader: random images and labels, official size per split.

    TFDS's default mock yields the same `num_examples` for every split and builds them one by
    one in Python (about 40 s for 50,000 CIFAR images); this yields them from numpy arrays,
    seeded by dataset and split, so every read of a split returns the same examples.
    """
    train_size, test_size = official_sizes

    def as_dataset(self, split, **unused_kwargs):
        features = self.info.features
        num_examples = {"train": train_size, "test": test_size}[str(split)]
        rng = np.random.default_rng(zlib.crc32(f"{self.name}/{split}".encode()))
        images = rng.integers(0, 256, (num_examples, *features["image"].shape), dtype=np.uint8)
        labels = rng.integers(0, features["label"].num_classes, num_examples, dtype=np.int64)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

    return as_dataset


def mock_pipeline(name: str, split: str, tmp_path, **kwargs) -> tfwd.data.InputPipeline:
    """`input_pipeline` on mock data; an empty data_dir makes TFDS 'download' (a no-op)."""
    kwargs = {"batch_size": 1_000, "seed": 0, "training": False, **kwargs}
    with tfds.testing.mock_data(as_dataset_fn=fast_mock_examples(OFFICIAL_SIZES[name])):
        return tfwd.data.input_pipeline(name, split, data_dir=str(tmp_path), **kwargs)


# --------------------------------------------------------------------------- MNIST (real)


@pytest.mark.parametrize("split", SPLITS)
def test_mnist_split_sizes(mnist_splits, split):
    pixels, labels, _ = mnist_splits[split]
    assert len(labels) == expected_size("mnist", split)
    assert pixels.shape == (expected_size("mnist", split), 28, 28, 1)


def test_mnist_validation_is_held_out_of_train(mnist_splits):
    keys = {split: content_keys(*mnist_splits[split][:2]) for split in SPLITS}
    # The official MNIST training images are pairwise distinct, so hashes identify examples.
    assert len(set(keys["train_full"])) == len(keys["train_full"])
    assert_partition(keys)


def test_mnist_pixels_are_restored_bytes(mnist_splits):
    for split in ("train_full", "test"):
        pixels, _, rounding_error = mnist_splits[split]
        # float32 normalization round-trips 8-bit values to well within 1e-3.
        assert rounding_error < 1e-3
        assert pixels.min() == 0 and pixels.max() == 255


def test_mnist_labels_match_official_files(mnist_splits):
    assert np.bincount(mnist_splits["train_full"][1], minlength=10).tolist() == (
        MNIST_TRAIN_LABEL_COUNTS
    )
    assert np.bincount(mnist_splits["test"][1], minlength=10).tolist() == MNIST_TEST_LABEL_COUNTS
    # tfwd_mnist keeps official file order and holds out the first 5,000 training rows.
    assert mnist_splits["validation"][1][:10].tolist() == MNIST_FIRST_TRAIN_LABELS
    assert mnist_splits["test"][1][:10].tolist() == MNIST_FIRST_TEST_LABELS


def test_mnist_normalization_standardizes_training_set(mnist_splits):
    info = tfwd.data.dataset_info("mnist")
    pixel_counts = np.bincount(mnist_splits["train_full"][0].ravel(), minlength=256)
    normalized_values = (np.arange(256) / 255.0 - info.channel_mean[0]) / info.channel_std[0]
    mean = np.average(normalized_values, weights=pixel_counts)
    std = np.sqrt(np.average((normalized_values - mean) ** 2, weights=pixel_counts))
    assert abs(mean) < 1e-3
    assert abs(std - 1.0) < 1e-3


def test_prepare_is_idempotent(mnist_data_dir):
    info_file = offline_mnist.dataset_dir(mnist_data_dir) / "dataset_info.json"
    written_at = info_file.stat().st_mtime_ns
    assert offline_mnist.prepare(mnist_data_dir) == offline_mnist.dataset_dir(mnist_data_dir)
    assert info_file.stat().st_mtime_ns == written_at


# --------------------------------------------------------------------------- other datasets (mock)


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10", "cifar100"])
def test_mock_split_sizes_and_disjointness(name, tmp_path):
    info = tfwd.data.dataset_info(name)
    keys = {}
    for split in SPLITS:
        pipe = mock_pipeline(name, split, tmp_path)
        assert pipe.num_examples == expected_size(name, split)
        assert pipe.image_shape == info.image_shape
        assert pipe.num_classes == NUM_CLASSES[name]
        images, labels = next(pipe.epoch(0).as_numpy_iterator())
        assert images.shape[1:] == info.image_shape and images.dtype == np.float32
        assert labels.dtype == np.int32
        if split != "test":
            keys[split] = epoch_keys(pipe)
            assert len(keys[split]) == expected_size(name, split)
    assert_partition(keys)


def test_dataset_info_sizes():
    for name in OFFICIAL_SIZES:
        info = tfwd.data.dataset_info(name)
        assert info.split_sizes == {split: expected_size(name, split) for split in SPLITS}
        assert info.num_classes == NUM_CLASSES[name]


# --------------------------------------------------------------------------- determinism


def small_pipeline(seed: int, *, augment: bool = False, training: bool = True):
    """A pipeline of 16-example batches over 100 CIFAR-shaped images labelled by row."""
    rows = np.arange(100)
    images = np.broadcast_to(rows[:, None, None, None], (100, 32, 32, 3)).astype(np.uint8)
    return tfwd.data.InputPipeline(
        tfwd.data.dataset_info("cifar100"), images, rows.astype(np.int32), batch_size=16,
        seed=seed, training=training, augment=augment, drop_remainder=training,
    )


def test_same_seed_same_batches_and_resume():
    uninterrupted = small_pipeline(seed=7)
    epochs = [one_epoch(uninterrupted, k) for k in range(3)]
    resumed = small_pipeline(seed=7)  # a fresh process resuming at epoch 2
    for run_epoch, resumed_epoch in zip(epochs[2], one_epoch(resumed, 2)):
        np.testing.assert_array_equal(run_epoch, resumed_epoch)
    np.testing.assert_array_equal(one_epoch(uninterrupted, 0)[1], epochs[0][1])


def test_epochs_and_seeds_change_the_order():
    labels = {(seed, k): one_epoch(small_pipeline(seed), k)[1] for seed in (0, 1) for k in (0, 1)}
    # Each epoch visits distinct examples: 100 // 16 = 6 full batches.
    for order in labels.values():
        assert len(order) == 96 and len(set(order.tolist())) == 96
    assert not np.array_equal(labels[(0, 0)], labels[(0, 1)])
    assert not np.array_equal(labels[(0, 0)], labels[(1, 0)])


def test_evaluation_keeps_order_and_last_batch():
    evaluation = small_pipeline(seed=0, training=False)
    assert evaluation.steps_per_epoch == 7  # ceil(100 / 16)
    np.testing.assert_array_equal(one_epoch(evaluation, 3)[1], np.arange(100))


# --------------------------------------------------------------------------- augmentation


def is_shifted_window(augmented: np.ndarray, original: np.ndarray, zero: np.ndarray) -> bool:
    """Whether `augmented` is a crop, possibly mirrored, of `original` padded with `zero`."""
    pad = augment.PADDING_PIXELS
    height, width = original.shape[:2]
    padded = np.broadcast_to(zero, (height + 2 * pad, width + 2 * pad, original.shape[2])).copy()
    padded[pad:pad + height, pad:pad + width] = original
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            window = padded[top:top + height, left:left + width]
            if np.allclose(window, augmented) or np.allclose(window[:, ::-1], augmented):
                return True
    return False


def test_augmentation_keeps_labels_and_crops_padded_images(tmp_path):
    plain = mock_pipeline("cifar10", "validation", tmp_path, training=True, batch_size=64)
    augmented = mock_pipeline(
        "cifar10", "validation", tmp_path, training=True, batch_size=64, augment=True
    )
    plain_images, plain_labels = next(plain.epoch(3).as_numpy_iterator())
    images, labels = next(augmented.epoch(3).as_numpy_iterator())
    assert images.shape == plain_images.shape == (64, 32, 32, 3)
    np.testing.assert_array_equal(labels, plain_labels)
    info = tfwd.data.dataset_info("cifar10")
    # Zero padding is black: pixel 0 normalizes to -mean / std.
    zero = -np.asarray(info.channel_mean) / np.asarray(info.channel_std)
    assert all(is_shifted_window(a, p, zero) for a, p in zip(images, plain_images))
    assert not np.allclose(images, plain_images)


def test_augmentation_is_deterministic_per_epoch():
    first = one_epoch(small_pipeline(seed=3, augment=True), 1)[0]
    again = one_epoch(small_pipeline(seed=3, augment=True), 1)[0]
    next_epoch = one_epoch(small_pipeline(seed=3, augment=True), 2)[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, next_epoch)


# --------------------------------------------------------------------------- errors


def test_missing_mnist_names_prepare_command(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        tfwd.data.input_pipeline(
            "mnist", "train", batch_size=32, seed=0, training=True,
            data_dir=str(tmp_path), download=False,
        )
    assert f"python -m tfwd.data.prepare mnist --data_dir={tmp_path}" in str(raised.value)


def test_missing_cifar_says_it_needs_downloading(tmp_path):
    with pytest.raises(tfwd.data.DataNotFoundError, match="tfds build cifar10"):
        tfwd.data.input_pipeline(
            "cifar10", "test", batch_size=32, seed=0, training=False,
            data_dir=str(tmp_path), download=False,
        )


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"name": "imagenet"}, "mnist, fashion_mnist, cifar10, cifar100"),
        ({"split": "valid"}, "train, validation, train_full, test"),
        ({"name": "mnist", "augment": True}, "CIFAR only"),
        ({"augment": True, "training": False}, "training pipelines"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_bad_arguments_raise_before_reading_data(arguments, message, tmp_path):
    # download=False and an empty data_dir: reaching the data lookup would raise
    # DataNotFoundError instead of the ValueError under test.
    call = {"name": "cifar10", "split": "train", "batch_size": 32, "seed": 0, "training": True,
            **arguments}
    name, split = call.pop("name"), call.pop("split")
    with pytest.raises(ValueError, match=message):
        tfwd.data.input_pipeline(name, split, data_dir=str(tmp_path), download=False, **call)


def test_shared_input_pipelines_decode_each_split_once_through_a_cache_not_a_patch(
        monkeypatch):
    from tfwd.data import sharing, sources

    decodes = []
    load_split = sources.load_split

    def counting_load_split(builder, info, split):
        decodes.append(split)
        return load_split(builder, info, split)

    monkeypatch.setattr(sources, "load_split", counting_load_split)
    build = tfwd.data.input_pipeline
    plain = build("mnist", "test", batch_size=1000, seed=0, training=False)
    assert sharing.active_cache() is None
    with sharing.shared_input_pipelines() as cache:
        # The pipeline consults the cache: no module attribute is replaced.
        assert tfwd.data.input_pipeline is build and sources.load_split is counting_load_split
        first = tfwd.data.input_pipeline("mnist", "test", batch_size=1000, seed=0, training=False)
        with sharing.shared_input_pipelines() as inner:  # nested blocks share the outer cache
            again = tfwd.data.input_pipeline("mnist", "test", batch_size=1000, seed=0,
                                             training=False)
        other = tfwd.data.input_pipeline("mnist", "test", batch_size=500, seed=1, training=True)
    assert inner is cache and sharing.active_cache() is None
    assert first is again and other is not first
    assert decodes == ["test", "test"]  # once outside the block, once inside for both sizes
    with sharing.shared_input_pipelines(cache):  # an explicit cache keeps what it holds
        assert tfwd.data.input_pipeline("mnist", "test", batch_size=1000, seed=0,
                                        training=False) is first
    assert decodes == ["test", "test"]
    for shared, alone in zip(first.epoch(0), plain.epoch(0)):
        np.testing.assert_array_equal(shared[0], alone[0])
        np.testing.assert_array_equal(shared[1], alone[1])