"""One Keras callback that runs any diagnostic at the end of selected epochs.

``DiagnosticCallback(name, measure)`` calls ``measure(model)`` after an epoch, stores the
JSON-serializable result in ``history[epoch]`` and writes every number in it as a TensorBoard
scalar ``<name>/<key>/...`` under ``<log_dir>/diagnostics`` (step = epoch).

**Epoch keys** are the number of completed epochs (Keras' 0-based ``epoch`` + 1), the
``epoch`` field of the train loop's results.json and its TensorBoard step.

A measure that raises ``UndefinedDiagnostic`` (the quantity does not exist for the model at
that epoch, e.g. no temperature calibrates a model that gets every held-out example right)
does not stop training: the epoch's entry becomes {"undefined": reason}, with a warning.

Works with ``model.fit(..., callbacks=[...])`` and with a custom loop that calls
``on_epoch_end`` through a ``keras.callbacks.CallbackList`` (``on_train_begin`` is never
needed: the model is checked in ``set_model``, before any training).

It is a ``tfwd.train.RecordedCallback``: ``tfwd.train.train`` writes its ``history`` to
results.json under ``diagnostics.<name>`` and gives it back to a resumed run.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any, Callable

import keras
import tensorflow as tf

from tfwd.diagnostics.common import UndefinedDiagnostic
from tfwd.train.recorded import RecordedCallback


def scalars(value: Any, prefix: str) -> dict[str, float]:
    """{"prefix/key/...": number} for a number or a nested dict of numbers (text skipped)."""
    if isinstance(value, str):
        return {}
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(scalars(item, f"{prefix}/{key}"))
        return flat
    return {prefix: float(value)}


class DiagnosticCallback(RecordedCallback):
    """Measure a diagnostic after every ``every_epochs``-th epoch (and after ``total_epochs``).

    Args:
      name: the diagnostic's registry name (``diagnostic_name``; the results.json key).
      measure: ``model -> float | dict`` (JSON-serializable; nested dicts of floats).
      check: optional ``model -> None`` raising ValueError for an unsupported model; run in
        ``set_model``, before training starts.
      log_dir: TensorBoard directory (None: no TensorBoard).
      every_epochs: measure when the completed-epoch count is a multiple of this.
      total_epochs: also measure after this epoch (the last one) whatever ``every_epochs`` is.
      json_path: if given, ``history`` is rewritten there after every measurement.
    """

    def __init__(
        self,
        name: str,
        measure: Callable[[keras.Model], Any],
        *,
        check: Callable[[keras.Model], None] | None = None,
        log_dir: str | None = None,
        every_epochs: int = 1,
        total_epochs: int | None = None,
        json_path: str | None = None,
    ):
        if every_epochs < 1:
            raise ValueError(f"every_epochs must be >= 1, got {every_epochs}.")
        super().__init__(name)
        self.measure = measure
        self.check = check
        self.log_dir = log_dir
        self.every_epochs = every_epochs
        self.total_epochs = total_epochs
        self.json_path = json_path
        self._writer = None

    def set_model(self, model):
        super().set_model(model)
        if self.check is not None:
            self.check(model)

    def should_measure(self, completed_epochs: int) -> bool:
        return completed_epochs % self.every_epochs == 0 or completed_epochs == self.total_epochs

    def on_epoch_end(self, epoch, logs=None):
        completed = epoch + 1
        if not self.should_measure(completed):
            return
        try:
            value = self.measure(self.model)
        except UndefinedDiagnostic as error:
            warnings.warn(f"{self.diagnostic_name} after epoch {completed}: {error}", stacklevel=2)
            value = {"undefined": str(error)}
        self.history[completed] = value
        self._write_summaries(completed, value)
        if self.json_path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(self.json_path)), exist_ok=True)
            with open(self.json_path, "w") as handle:
                json.dump(self.history, handle, indent=1)

    def _write_summaries(self, step: int, value) -> None:
        if self.log_dir is None:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "diagnostics"))
        with self._writer.as_default(step=step):
            for tag, number in scalars(value, self.diagnostic_name).items():
                tf.summary.scalar(tag, number)
        self._writer.flush()
