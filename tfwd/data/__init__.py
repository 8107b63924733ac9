"""Data layer: the paper's splits of MNIST, Fashion-MNIST and CIFAR-10/100, read through TFDS.

    info = tfwd.data.dataset_info("cifar10")
    pipe = tfwd.data.input_pipeline("cifar10", "train", batch_size=128, seed=0,
                                    training=True, augment=True)
    for images, labels in pipe.epoch(epoch_index): ...

MNIST can be prepared without internet access: `python -m tfwd.data.prepare mnist`.

The names are loaded on first use (PEP 562), so that the plain-Python modules
(`tfwd.data.availability`, `catalog`, `locations`) can be imported without TensorFlow.
"""
from tfwd._lazy import lazy_exports

_EXPORTS = {
    "DATASET_NAMES": "tfwd.data.catalog",
    "HELD_OUT_SIZE": "tfwd.data.catalog",
    "SPLITS": "tfwd.data.catalog",
    "DatasetInfo": "tfwd.data.catalog",
    "dataset_info": "tfwd.data.catalog",
    "DATA_DIR_ENV_VAR": "tfwd.data.locations",
    "default_data_dir": "tfwd.data.locations",
    "InputPipeline": "tfwd.data.pipeline",
    "input_pipeline": "tfwd.data.pipeline",
    "DataNotFoundError": "tfwd.data.availability",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("tfwd.data", _EXPORTS)
