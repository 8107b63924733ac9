"""``run_search``: grid search on the held-out split, then the best point retrained and tested.

The protocol of paper 000, appendix A (docs/equations.md §9):

1. every grid point trains on ``train`` (held-out 5k excluded) and is scored by its
   final-epoch accuracy on ``validation``; the test set is never read (``tfwd.tuning.hypermodel``);
2. the best point is retrained for the full schedule on ``train_full`` (train + validation)
   with the test set evaluated, once, by that single run;
3. the whole table, the best point and the test accuracy go to ``search.json`` and
   ``search.md`` (``tfwd.tuning.report``).

Layout of ``directory``::

    search_settings.json     base config + grid; a rerun must match it
    trials/                  the keras-tuner project: oracle.json, trial_<id>/ (trial.json and
                             the trial's tfwd.train workdir: config.json, results.json, ...)
    retrain/                 the retraining's tfwd.train workdir
    search.json, search.md

Running the same call again continues: finished trials are kept, a trial killed mid-way is
redone (resuming after its last finished epoch), a partial retraining resumes from its
checkpoint and a finished one is reused without reading any data.
"""
from __future__ import annotations

import json
import os

import keras

from tfwd.choices.runtime import Strategy
from tfwd.data.sharing import shared_input_pipelines
from tfwd.diagnostics import train_with_diagnostics
from tfwd.train import TrainConfig
from tfwd.train.config import COSMETIC_FIELDS
from tfwd.train.loop import RESULTS_FILE
from tfwd.train.files import write_json_atomically
from tfwd.tuning.grid import (Grid, check_grid, default_grid, effective_learning_rates,
                              format_grid, grid_points)
from tfwd.tuning.hypermodel import OBJECTIVE, TrainHyperModel, retraining_config
from tfwd.tuning.oracle import describe_point
from tfwd.tuning.report import best_entry, trial_entry, write_report
from tfwd.tuning.tuner import PROJECT_NAME, GridTuner, is_oracle_worker

SETTINGS_FILE = "search_settings.json"
RETRAIN_DIR = "retrain"


class SearchSetupError(ValueError):
    """A search that cannot start in this directory or with this strategy."""


def _comparable(config: TrainConfig) -> dict:
    """The flat fields that change a run's numbers, as JSON gives them back (lists)."""
    values = json.loads(json.dumps(config.flat()))
    return {k: v for k, v in values.items() if k not in COSMETIC_FIELDS}


def _saved_comparable(saved: dict, path: str) -> dict:
    """``_comparable`` of a saved config (nested, or flat as earlier versions wrote it)."""
    try:
        return _comparable(TrainConfig.from_dict(saved))
    except ValueError as error:
        raise SearchSetupError(f"{path}: {error} Use a new --directory.") from error


def check_settings(directory: str, base: TrainConfig, grid: Grid) -> None:
    """Record the search's settings in ``directory``, or check a rerun against them."""
    grid_lists = {k: list(v) for k, v in grid.items()}
    path = os.path.join(directory, SETTINGS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        before, current = _saved_comparable(saved["base_config"], path), _comparable(base)
        changed = sorted(k for k in current if before[k] != current[k])
        if saved["grid"] != grid_lists:
            changed.append("grid")
        if changed:
            raise SearchSetupError(
                f"{directory} holds a search with other settings (differing: {changed}); "
                "rerun it with its original flags, or use a new --directory.")
        return
    settings = {"base_config": base.to_dict(), "grid": grid_lists}
    write_json_atomically(path, settings, indent=2, sort_keys=True)


def _finished_run(workdir: str, config: TrainConfig) -> dict | None:
    """The results of a finished ``tfwd.train`` run of ``config`` in ``workdir``, if any."""
    path = os.path.join(workdir, RESULTS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    if results.get("status") != "finished":
        return None
    saved = _saved_comparable(results["config"], path)
    return results if saved == _comparable(config) else None


def retrain(base: TrainConfig, point: dict, workdir: str) -> dict:
    """Train ``point`` on ``train_full`` with the test set evaluated; reuse a finished run."""
    config = retraining_config(base, point)
    results = _finished_run(workdir, config)
    if results is None:
        print(f"retraining {describe_point(point)} on train_full for "
              f"{config.schedule.epochs} epochs in {workdir}", flush=True)
        keras.backend.clear_session()
        results = train_with_diagnostics(config, workdir)
    return results


def _report(base: TrainConfig, grid: Grid, entries: list, best: dict | None,
            results: dict | None) -> dict:
    """The ``search.json`` dict: objective, grid, trials, best point and its retraining."""
    return {
        "objective": {"name": OBJECTIVE.name, "direction": OBJECTIVE.direction,
                      "definition": "final-epoch accuracy on the held-out validation split"},
        "grid": {field: list(values) for field, values in grid.items()},
        "learning_rate_scaling": {
            "rule": base.schedule.lr_scaling, "batch_size": base.schedule.batch_size,
            "base_batch_size": base.schedule.base_batch_size,
            "effective_learning_rates": list(effective_learning_rates(grid, base)),
        },
        "base_config": base.to_dict(),
        "trials": entries,
        "best": best,
        "retraining": None if results is None else {
            "workdir": RETRAIN_DIR, "config": results["config"], "status": results["status"]},
        "test_accuracy": None if results is None else results["final"]["test_accuracy"],
    }


def run_search(base: TrainConfig, directory: str, grid: Grid | None = None,
               retrain_best: bool = True) -> dict:
    """Grid-search ``grid`` (default: ``default_grid``) around ``base``, retrain the best.

    Args:
      base: the config every trial starts from; grid values replace its fields. Its
        ``train_split`` and ``evaluate_test`` are set by the protocol (trials: ``train``,
        no test; retraining: ``train_full``, test).
      directory: where the search lives (module docstring); rerun with it to continue.
      grid: {TrainConfig field: values}, see ``tfwd.tuning.grid``.
      retrain_best: retrain the best point and measure its test accuracy.

    Returns:
      The ``search.json`` dict (``tfwd.tuning.report``); in a worker process of a distributed
      search, only ``{"trials_run": n}`` (the chief writes the table).

    Raises:
      GridError, SearchSetupError: a grid, config, strategy or directory that cannot be
        searched (before any training).
      RuntimeError: no trial completed (the table with their errors is written first).
    """
    grid = dict(grid or default_grid(base.optimizer.name, base.optimizer.decay_type))
    check_grid(grid, base)
    if base.runtime.strategy == Strategy.MULTI_WORKER:
        raise SearchSetupError(
            "strategy='multi_worker' cannot run inside trials; parallelize the search across "
            "processes instead (KERASTUNER_* chief/workers), each trial on one machine "
            "(strategy='default' or 'mirrored').")
    os.makedirs(directory, exist_ok=True)
    check_settings(directory, base, grid)
    with shared_input_pipelines():
        tuner = GridTuner(TrainHyperModel(base, grid), directory)
        if not is_oracle_worker():
            print(f"search: {len(grid_points(grid))} grid points ({format_grid(grid)}), "
                  f"{len(tuner.oracle.end_order)} finished, in {directory}", flush=True)
        tuner.search()
        if is_oracle_worker():
            return {"trials_run": tuner.trials_run}
        entries = [trial_entry(trial) for _, trial in sorted(tuner.oracle.trials.items())]
        best = best_entry(entries)
        results = None
        if best is not None and retrain_best:
            results = retrain(base, best["values"], os.path.join(directory, RETRAIN_DIR))
    report = _report(base, grid, entries, best, results)
    write_report(directory, report)
    if best is None:
        raise RuntimeError(f"No trial completed; their errors are in "
                           f"{os.path.join(directory, 'search.md')} and "
                           f"{os.path.join(directory, PROJECT_NAME)}.")
    return report
