"""Hyper-parameter search: grid search on the held-out split, retraining, test accuracy.

    report = tfwd.tuning.run_search(
        TrainConfig(dataset="mnist", model="mlp", optimizer="sgd", epochs=10),
        directory="runs/search_sgd",
        grid={"learning_rate": (0.3, 0.1, 0.03), "weight_decay": (1e-3, 1e-4)})
    report["best"], report["test_accuracy"]      # also in runs/search_sgd/search.{json,md}

Modules, top to bottom: ``grid`` (values per field, defaults, parsing, batch-size rescaling),
``hypermodel`` (a grid point -> TrainConfig -> ``tfwd.train`` run -> final-epoch validation
accuracy), ``oracle`` (each point once, resumable), ``tuner`` (runs trials; keras-tuner
chief/worker distribution), ``report`` (search.json / search.md), ``search`` (the whole
protocol). Shell: ``python -m tfwd.launch.tune``. Splits are decoded once per process
(``tfwd.data.sharing``).
"""
from tfwd.tuning.grid import (GridError, check_grid, default_grid, effective_learning_rates,
                              grid_points, parse_grid)
from tfwd.tuning.hypermodel import OBJECTIVE, TrainHyperModel, retraining_config, search_config
from tfwd.tuning.oracle import GridOracle
from tfwd.tuning.search import SearchSetupError, run_search
from tfwd.tuning.tuner import GridTuner

__all__ = [
    "OBJECTIVE",
    "GridError",
    "GridOracle",
    "GridTuner",
    "SearchSetupError",
    "TrainHyperModel",
    "check_grid",
    "default_grid",
    "effective_learning_rates",
    "grid_points",
    "parse_grid",
    "retraining_config",
    "run_search",
    "search_config",
]
