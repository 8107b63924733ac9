"""Data layer: the paper's splits of MNIST, Fashion-MNIST and CIFAR-10/100, read through TFDS.

    info = tfwd.data.dataset_info("cifar10")
    pipe = tfwd.data.input_pipeline("cifar10", "train", batch_size=128, seed=0,
                                    training=True, augment=True)
    for images, labels in pipe.epoch(epoch_index): ...

MNIST can be prepared without internet access: `python -m tfwd.data.prepare mnist`.
"""
from tfwd.data.catalog import DATASET_NAMES, HELD_OUT_SIZE, SPLITS, DatasetInfo, dataset_info
from tfwd.data.locations import DATA_DIR_ENV_VAR, default_data_dir
from tfwd.data.pipeline import InputPipeline, input_pipeline
from tfwd.data.sources import DataNotFoundError

__all__ = [
    "DATASET_NAMES",
    "DATA_DIR_ENV_VAR",
    "HELD_OUT_SIZE",
    "SPLITS",
    "DataNotFoundError",
    "DatasetInfo",
    "InputPipeline",
    "dataset_info",
    "default_data_dir",
    "input_pipeline",
]
