"""Training: one ``train(config, workdir)`` for every entry point.

The names are loaded on first use (PEP 562), so that ``tfwd.train.config`` and
``tfwd.train.workdir`` — plain Python — can be imported by the launchers to check their flags
and the workdir before TensorFlow is imported.
"""
from tfwd._lazy import lazy_exports

_EXPORTS = {
    "RecordedCallback": "tfwd.train.recorded",
    "TrainConfig": "tfwd.train.config",
    "TrainStep": "tfwd.train.step",
    "configure_cpu_devices": "tfwd.train.strategy",
    "evaluate": "tfwd.train.loop",
    "make_strategy": "tfwd.train.strategy",
    "train": "tfwd.train.loop",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("tfwd.train", _EXPORTS)
