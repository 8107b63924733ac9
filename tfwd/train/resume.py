"""Resuming a run: the newest checkpoint that reads back, and the epoch history it carries.

Every checkpoint holds, beside model and optimizer, the run's history up to that epoch (the
per-epoch records and the diagnostics, as JSON in a string variable). So the history always
agrees with the weights restored, and a results.json that is missing or unreadable is rebuilt
from the checkpoint, with a warning naming the file, instead of losing the epochs before it.

A newest checkpoint that cannot be read (a truncated file after a crash, a disk error) is
skipped, with a warning naming it and the older checkpoint used instead.
"""
from __future__ import annotations

import json
import os
import warnings

import tensorflow as tf

from tfwd.train.files import finite_payload


class NoReadableCheckpointError(RuntimeError):
    """Every checkpoint of a workdir failed to restore."""


def history_variable() -> tf.Variable:
    """The string variable a checkpoint keeps the run's history in (empty: none yet)."""
    return tf.Variable("", dtype=tf.string, trainable=False, name="history")


def store_history(variable: tf.Variable, results: dict) -> None:
    """Put ``results``'s epochs and diagnostics into ``variable`` before a checkpoint is saved."""
    history = {"epochs": results["epochs"], "diagnostics": results.get("diagnostics", {})}
    variable.assign(json.dumps(finite_payload(history), allow_nan=False))


def restore_newest_readable(checkpoint: tf.train.Checkpoint,
                            manager: tf.train.CheckpointManager) -> str | None:
    """Restore the newest checkpoint that reads back; None when there is none.

    Raises NoReadableCheckpointError when checkpoints exist but none can be read.
    """
    failures = []
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as error:  # readers fail in many types: IndexError, DataLossError, …
            failures.append(f"{path} ({type(error).__name__}: {error})")
            continue
        if failures:
            warnings.warn(f"Checkpoint {failures[0]} cannot be read; resuming from the previous "
                          f"checkpoint {path} instead.", stacklevel=2)
        return path
    if failures:
        raise NoReadableCheckpointError(
            f"No checkpoint can be read: {'; '.join(failures)}. Pass --overwrite "
            "(overwrite=True) to start over, or use a new workdir.")
    return None


def restored_history(variable: tf.Variable, results_path: str, epochs_done: int) -> dict:
    """The restored run's {"epochs", "diagnostics"}, from the checkpoint's history.

    results.json is compared with it: when it is missing, unreadable or has fewer epochs, it is
    rebuilt (a warning names the file); when it has epochs after the checkpoint, those are the
    epochs of a checkpoint that could not be read, and are redone.
    """
    history = json.loads(variable.numpy().decode() or '{"epochs": [], "diagnostics": {}}')
    history["epochs"] = history["epochs"][:epochs_done]
    problem = None
    if not os.path.exists(results_path):
        problem = "is missing"
    else:
        try:
            with open(results_path) as f:
                on_disk = json.load(f)
            if len(on_disk["epochs"]) < epochs_done:
                problem = f"has {len(on_disk['epochs'])} epochs, the checkpoint {epochs_done}"
        except (ValueError, KeyError, TypeError) as error:
            problem = f"is unreadable ({type(error).__name__}: {error})"
    if problem:
        warnings.warn(f"{results_path} {problem}; rebuilt from the checkpoint's history of "
                      f"{epochs_done} epoch(s).", stacklevel=2)
    return history
