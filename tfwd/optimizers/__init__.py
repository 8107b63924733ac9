"""Optimizers with L2 or decoupled weight decay on a layer group: SGD, Adam, K-FAC."""
from tfwd.optimizers.adam import Adam
from tfwd.optimizers.decay import WeightDecay
from tfwd.optimizers.kfac import KFAC
from tfwd.optimizers.schedules import EpochStepDecay, scaled_learning_rate
from tfwd.optimizers.sgd import SGD

__all__ = [
    "Adam", "EpochStepDecay", "KFAC", "SGD", "WeightDecay", "scaled_learning_rate",
]
