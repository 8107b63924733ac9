"""``RecordedCallback``: the interface of a Keras callback whose per-epoch values a run keeps.

``train`` (``tfwd.train.loop``) writes, after every epoch, the ``history`` of each of its
callbacks that is a ``RecordedCallback`` to results.json under ``diagnostics.<diagnostic_name>``
and into the epoch's checkpoint. A resumed run hands each one the history saved for its name,
through ``restore_history``, before training goes on, so its history continues where the
checkpoint left off.

Training sits below the diagnostics (STYLE rule 1), so the interface lives here and
``tfwd.diagnostics.DiagnosticCallback`` implements it. A callback of your own is recorded the
same way: subclass ``RecordedCallback``, pass its name to ``__init__`` and, in
``on_epoch_end``, put a JSON-serializable value in ``history[epoch + 1]`` (the key is the number
of completed epochs, the ``epoch`` of results.json). A callback that only acts on the model
(``tfwd.diagnostics.WeightNormTransfer``) stays a plain Keras callback and is not recorded.
"""
from __future__ import annotations

import abc
from typing import Any, Iterable, Mapping

import keras


class RecordedCallback(keras.callbacks.Callback, abc.ABC):
    """A callback with a name and a per-epoch ``history`` that the train loop saves and restores.

    Attributes:
      diagnostic_name: the key of its history in results.json's ``diagnostics``.
      history: {completed epochs: JSON-serializable value}.
    """

    def __init__(self, name: str):
        super().__init__()
        self.diagnostic_name = name
        self.history: dict[int, Any] = {}

    @abc.abstractmethod
    def on_epoch_end(self, epoch, logs=None):
        """Measure after epoch ``epoch`` (0-based) and store it in ``history[epoch + 1]``."""

    def restore_history(self, saved: Mapping[Any, Any], epochs_done: int) -> None:
        """Take back a resumed run's entries for the first ``epochs_done`` epochs.

        ``saved`` comes from JSON, whose object keys are strings; they become ints again.
        Entries after ``epochs_done`` belong to epochs that are redone, and are dropped.
        """
        self.history.update({int(k): v for k, v in saved.items() if int(k) <= epochs_done})


def recorded_callbacks(callbacks: Iterable) -> list[RecordedCallback]:
    """The callbacks among ``callbacks`` whose history the run records."""
    return [callback for callback in callbacks if isinstance(callback, RecordedCallback)]


def recorded_histories(callbacks: Iterable) -> dict[str, dict[int, Any]]:
    """results.json's ``diagnostics``: {name: history} of the recorded callbacks."""
    return {callback.diagnostic_name: callback.history
            for callback in recorded_callbacks(callbacks)}
