"""Where an epoch's wall time goes: its training steps, measured apart from everything else.

``fit``'s wall time also holds tracing, callbacks and the epoch's set-up; evaluation is timed
by the loop on its own. ``StepTimer`` sums, per epoch, the time from the start of each
``train_function`` call to its end (``on_train_batch_begin`` → ``on_train_batch_end``: the
input batch, the step, the returned logs). The run's first step also traces the step
function; its time is reported on its own as well (``first_step_seconds``), and so is the
process's CPU time (all threads, ``time.process_time``) from its start to that step's start
(``cpu_seconds_to_first_step``): on a shared machine waiting for a core inflates the wall time
of start-up several-fold, the CPU time hardly.
"""
from __future__ import annotations

import time

import keras


class StepTimer(keras.callbacks.Callback):
    """Per-epoch sums of training-step times, and the wall clock of the run's first step."""

    def __init__(self):
        super().__init__()
        self.first_step_started = None  # time.time() when the run's first step began
        self.first_step_seconds = None
        self.cpu_seconds_to_first_step = None
        self.step_seconds = 0.0
        self.steps = 0
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self.step_seconds, self.steps = 0.0, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_step_started is None:
            self.first_step_started = time.time()
            self.cpu_seconds_to_first_step = time.process_time()
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = time.perf_counter() - self._started
        if self.first_step_seconds is None:
            self.first_step_seconds = seconds
        self.step_seconds += seconds
        self.steps += 1
