"""A run's working directory: checked, and compared with the run it holds, before any work.

Plain Python (no TensorFlow), so the launchers call ``prepare_workdir`` right after parsing
their flags, and ``tfwd.train.train`` calls it again first thing for Python users.

A workdir remembers the config of the run it holds (``config.json``, else the config inside
``results.json``; nested, or flat as earlier versions saved it, ``TrainConfig.from_dict``).
A rerun continues that run only if its config agrees on every field that changes the numbers
(compared by flat name; a field the saved config lacks has its default): ``COSMETIC_FIELDS``
may differ, and ``epochs`` may grow or shrink (a longer rerun continues training; the
schedules do not depend on the total). Otherwise the rerun is refused, naming the fields;
``overwrite=True`` (``--overwrite``) deletes the run's files and starts over.
"""
from __future__ import annotations

import json
import os
import shutil

from tfwd.train.config import COSMETIC_FIELDS, TrainConfig

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
MODEL_FILE = "model.keras"
# What train() writes into a workdir: all that --overwrite deletes (nothing else is touched).
RUN_FILES = (CONFIG_FILE, RESULTS_FILE, CHECKPOINT_DIR, LOG_DIR, MODEL_FILE)
# Fields a rerun may change and still continue the run (besides the cosmetic ones).
RESUMABLE_FIELDS = ("epochs",)


class WorkdirError(ValueError):
    """The workdir cannot hold this run; the message names the problem and the way out."""


def check_writable(workdir: str) -> None:
    """Create ``workdir`` if needed; raise WorkdirError unless it is a writable directory."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir!r} is a file, not a directory: choose another path.")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise WorkdirError(f"workdir {workdir!r} cannot be created ({error.strerror}): choose "
                           "a path you can write to.") from error
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir!r} is not writable: fix its permissions or choose "
                           "another path.")


def has_run(workdir: str) -> bool:
    """True when ``workdir`` holds training progress (a checkpoint or recorded epochs)."""
    checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
    return os.path.isdir(checkpoints) and bool(os.listdir(checkpoints)) or os.path.exists(
        os.path.join(workdir, RESULTS_FILE))


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def saved_config(workdir: str) -> dict:
    """The config of the run in ``workdir``: config.json, else the one inside results.json.

    Raises WorkdirError naming the file when neither can be read.
    """
    problems = []
    for name, pick in ((CONFIG_FILE, lambda data: data), (RESULTS_FILE, lambda data: data["config"])):
        path = os.path.join(workdir, name)
        if not os.path.exists(path):
            problems.append(f"{path} is missing")
            continue
        try:
            return dict(pick(_read_json(path)))
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"{path} is unreadable ({type(error).__name__}: {error})")
    raise WorkdirError(
        f"workdir {workdir!r} holds a run whose config cannot be read: {'; '.join(problems)}. "
        "Restore the file, pass --overwrite (overwrite=True) to start over, or use a new workdir.")


def config_differences(saved: TrainConfig, config: TrainConfig) -> list[str]:
    """The fields (flat names) other than cosmetic and resumable ones where they differ."""
    ignored = set(COSMETIC_FIELDS) | set(RESUMABLE_FIELDS)
    before, current = saved.flat(), config.flat()
    return sorted(name for name in current
                  if name not in ignored and before[name] != current[name])


def clear_run(workdir: str) -> None:
    """Delete the files of a previous run (``RUN_FILES``) from ``workdir``."""
    for name in RUN_FILES:
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def prepare_workdir(config: TrainConfig, workdir: str, overwrite: bool = False) -> None:
    """Check ``workdir`` for a run of ``config``: writable, and holding no other run.

    ``overwrite`` deletes a previous run's files first. Raises WorkdirError otherwise.
    """
    check_writable(workdir)
    if overwrite:
        clear_run(workdir)
        return
    if not has_run(workdir):
        return
    saved = saved_config(workdir)
    try:
        saved = TrainConfig.from_dict(saved)
    except ValueError as error:
        raise WorkdirError(
            f"workdir {workdir!r} holds a run whose config this version of tfwd cannot read "
            f"({error}). Pass --overwrite (overwrite=True) to start over, or use a new "
            "workdir.") from error
    differences = config_differences(saved, config)
    if differences:
        before, current = saved.flat(), config.flat()
        shown = ", ".join(f"{name}: {before[name]!r} -> {current[name]!r}"
                          for name in differences)
        raise WorkdirError(
            f"workdir {workdir!r} holds a run with another config ({shown}); resuming it would "
            "mislabel its results. Rerun with its original settings to resume, pass --overwrite "
            "(overwrite=True) to delete it and start over, or use a new workdir.")
