"""``GridOracle``: hands out the points of a fixed grid, each once, and survives being killed.

keras-tuner's own ``GridSearchOracle`` keeps its enumeration state (a linked list of tried
points) outside ``get_state``, so a reloaded project stops early; and it answers IDLE while
other workers still run, which the tuner loop re-polls without pause. This oracle instead
derives everything from what keras-tuner does persist — the hashes of the points already
started (``_tried_so_far``) and the trials' own files:

* ``populate_space`` returns the first grid point (grid order, last key fastest) never
  started; once every point is started it answers STOPPED, so an idle worker exits instead of
  polling.
* A trial that was running when the process died is in ``ongoing_trials`` of the saved state;
  keras-tuner's ``reload`` queues it for retry, so it is redone (its ``tfwd.train`` workdir
  resumes after the last finished epoch). A trial whose file already says COMPLETED or FAILED
  (killed between writing it and the oracle state) is not queued again.
* State files are written to a temporary name and renamed, so a kill never leaves half a file.

After each finished trial it prints one line: ``trial 3/12: learning_rate=0.1
weight_decay=0.001 validation_accuracy=0.9492 time=12.3s`` (count = trials finished so far).
"""
from __future__ import annotations

import os

import keras_tuner
from keras_tuner.engine import trial as trial_lib

from tfwd.train.files import write_json_atomically
from tfwd.tuning.grid import Grid, grid_points
from tfwd.tuning.hypermodel import OBJECTIVE

_FINISHED = (trial_lib.TrialStatus.COMPLETED, trial_lib.TrialStatus.FAILED)


def grid_space(grid: Grid) -> keras_tuner.HyperParameters:
    """One ``Choice`` per grid field, its values in grid order."""
    space = keras_tuner.HyperParameters()
    for field, values in grid.items():
        space.Choice(field, list(values))
    return space


def describe_point(values: dict) -> str:
    return " ".join(f"{field}={value:g}" for field, value in values.items())


class GridOracle(keras_tuner.Oracle):
    """Every point of ``grid`` exactly once, scored by ``OBJECTIVE`` (final-epoch accuracy).

    A trial that raises is FAILED and not retried (keras-tuner's ``max_retries_per_trial=0``);
    three failures in a row stop the search (``max_consecutive_failed_trials=3``).
    """

    def __init__(self, grid: Grid):
        self.points = grid_points(grid)
        super().__init__(
            objective=OBJECTIVE,
            max_trials=len(self.points),
            hyperparameters=grid_space(grid),
            allow_new_entries=False,
            tune_new_entries=False,
        )
        self.verbose = 0  # keras-tuner's multi-line tables; ``end_trial`` prints one line

    def populate_space(self, trial_id):
        for point in self.points:
            if not self._duplicate(point):
                return {"status": trial_lib.TrialStatus.RUNNING, "values": point}
        return {"status": trial_lib.TrialStatus.STOPPED, "values": None}

    @keras_tuner.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        trial = self.trials[trial.trial_id]
        if trial.trial_id not in self.end_order:
            return  # sent for a retry
        count = f"trial {len(self.end_order)}/{self.max_trials}"
        point = describe_point(trial.hyperparameters.values)
        if trial.status == trial_lib.TrialStatus.COMPLETED:
            seconds = trial.metrics.get_last_value("trial_seconds")
            print(f"{count}: {point} {OBJECTIVE.name}={trial.score:.4f} time={seconds:.1f}s",
                  flush=True)
        else:
            reason = (trial.message or "").strip().splitlines()[-1:] or ["no message"]
            print(f"{count}: {point} {trial.status}: {reason[0]}", flush=True)

    def reload(self):
        super().reload()
        finished = [i for i in self._retry_queue if self.trials[i].status in _FINISHED]
        self._retry_queue = [i for i in self._retry_queue if i not in finished]
        self.end_order += [i for i in finished if i not in self.end_order]

    def save(self):
        write_json_atomically(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        write_json_atomically(path, trial.get_state())
