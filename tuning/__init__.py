"""Hyper-parameter search: grid search on the held-out split, retraining, test accuracy.

    report = tfwd.tuning.run_search(
        TrainConfig.from_flat(dataset="mnist", model="mlp", optimizer="sgd", epochs=10),
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
from tfwd._lazy import lazy_exports

# Loaded on first use (PEP 562): ``tfwd.tuning.grid`` (the grids, imported by the experiment
# entries) stays importable without keras-tuner, whose import costs tens of seconds.
_EXPORTS = {
    "GridError": "tfwd.tuning.grid",
    "check_grid": "tfwd.tuning.grid",
    "default_grid": "tfwd.tuning.grid",
    "effective_learning_rates": "tfwd.tuning.grid",
    "grid_points": "tfwd.tuning.grid",
    "parse_grid": "tfwd.tuning.grid",
    "OBJECTIVE": "tfwd.tuning.hypermodel",
    "TrainHyperModel": "tfwd.tuning.hypermodel",
    "retraining_config": "tfwd.tuning.hypermodel",
    "search_config": "tfwd.tuning.hypermodel",
    "GridOracle": "tfwd.tuning.oracle",
    "SearchSetupError": "tfwd.tuning.search",
    "run_search": "tfwd.tuning.search",
    "GridTuner": "tfwd.tuning.tuner",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("tfwd.tuning", _EXPORTS)
