"""Training: one ``train(config, workdir)`` for every entry point."""
from tfwd.train.config import TrainConfig
from tfwd.train.loop import evaluate, train
from tfwd.train.step import TrainStep
from tfwd.train.strategy import configure_cpu_devices, make_strategy

__all__ = ["TrainConfig", "TrainStep", "configure_cpu_devices", "evaluate", "make_strategy", "train"]
