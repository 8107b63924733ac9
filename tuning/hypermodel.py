"""What one trial is: a grid point turned into a TrainConfig, trained, and scored.

The protocol of paper 000, appendix A (docs/equations.md §9): each grid point trains on ``train``
(the official training set minus the 5,000 held-out examples) for the full schedule and is
scored on the held-out ``validation`` split; the test set is never read (``evaluate_test=False``).
The best point is then retrained on ``train_full`` (train + validation) with the test set
evaluated (``retraining_config``).

Score: the validation accuracy of the trial's *final* epoch. The retrained model is the one
that finishes the schedule, so that is what a grid point is judged by; keras-tuner would score a
trial by its best epoch (an early-stopping choice the retraining cannot reproduce), so the trial
reports a single value (one step) and the best epoch is recorded beside it for information.
"""
from __future__ import annotations

import time

import keras
import keras_tuner

from tfwd.choices.data import Split
from tfwd.diagnostics import train_with_diagnostics
from tfwd.train import TrainConfig
from tfwd.tuning.grid import Grid, point_config

OBJECTIVE = keras_tuner.Objective("validation_accuracy", direction="max")
# What a trial reports (``trial_metrics``), the objective first.
TRIAL_METRICS = (OBJECTIVE.name, "best_epoch", "best_epoch_validation_accuracy",
                 "train_seconds", "trial_seconds")


def search_config(base: TrainConfig, point: dict) -> TrainConfig:
    """The trial of ``point``: trained on ``train``, scored on validation, test never read."""
    return point_config(base, point).replace(train_split=Split.TRAIN,
                                             evaluate_test=False)


def retraining_config(base: TrainConfig, point: dict) -> TrainConfig:
    """The final run of ``point``: trained on ``train_full`` (train + validation), and tested
    once, after its last epoch (paper 000, appendix A)."""
    return point_config(base, point).replace(train_split=Split.TRAIN_FULL,
                                             evaluate_test=True, test_every_epoch=False)


def trial_metrics(results: dict, trial_seconds: float) -> dict:
    """The metrics a trial reports (``results``: what ``tfwd.train.train`` returned).

    ``validation_accuracy`` (the objective) is the final epoch's; ``best_epoch`` (1-based) and
    ``best_epoch_validation_accuracy`` are for information; ``train_seconds`` sums the epochs'
    training time (it survives a resumed trial), ``trial_seconds`` is the wall time of the
    run that finished the trial (data loading and evaluation included).
    """
    if results["status"] == "diverged":  # a FAILED trial, with the reason in the table
        raise RuntimeError(results["divergence"]["message"])
    epochs = results["epochs"]
    best = max(epochs, key=lambda record: record["validation_accuracy"])
    return {
        OBJECTIVE.name: float(epochs[-1]["validation_accuracy"]),
        "best_epoch": float(best["epoch"]),
        "best_epoch_validation_accuracy": float(best["validation_accuracy"]),
        "train_seconds": float(sum(record["wall_time_seconds"] for record in epochs)),
        "trial_seconds": float(trial_seconds),
    }


class TrainHyperModel(keras_tuner.HyperModel):
    """A grid search's hyper-model: ``build`` makes a trial's TrainConfig, ``fit`` trains it.

    ``build(hp)`` declares one ``hp.Choice`` per grid field (values in grid order) and returns
    the trial's ``search_config`` rather than a Keras model: the model, optimizer and data are
    built by ``tfwd.train.train`` from that config, exactly as for any other run.
    """

    def __init__(self, base: TrainConfig, grid: Grid):
        super().__init__(name="tfwd_train")
        self.base = base
        self.grid = grid

    def point(self, hp: keras_tuner.HyperParameters) -> dict:
        """The grid point ``hp`` selects: {field: value}."""
        return {field: hp.Choice(field, list(values)) for field, values in self.grid.items()}

    def build(self, hp: keras_tuner.HyperParameters) -> TrainConfig:
        return search_config(self.base, self.point(hp))

    def fit(self, hp, config: TrainConfig, workdir: str) -> dict:
        """Train ``config`` in ``workdir`` (resuming a killed trial there) and score it."""
        keras.backend.clear_session()  # Keras state otherwise accumulates trial after trial
        start = time.time()
        results = train_with_diagnostics(config, workdir)
        keras.backend.clear_session()
        return trial_metrics(results, time.time() - start)
