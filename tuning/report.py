"""The search table: ``search.json`` (every trial, the best, the test accuracy) and ``search.md``.

``search.json`` keys:
  ``objective``     what trials are scored by (final-epoch held-out accuracy, direction max),
  ``grid``          {field: [values]} in enumeration order,
  ``learning_rate_scaling``  rule, batch sizes and the grid's rates as trials apply them,
  ``base_config``   the TrainConfig every trial starts from (nested, ``TrainConfig.to_dict``),
  ``trials``        one entry per grid point, by trial id: ``trial_id``, ``status`` (COMPLETED
                    or FAILED), ``values``, ``validation_accuracy`` (the score), ``best_epoch``,
                    ``best_epoch_validation_accuracy``, ``train_seconds``, ``trial_seconds``,
                    ``message`` (the error of a failed trial),
  ``best``          the entry of the best trial (highest score; ties go to the earlier trial),
  ``retraining``    workdir, config and status of the best point retrained on ``train_full``
                    (null when retraining was skipped),
  ``test_accuracy`` the retrained model's test accuracy after its last epoch (null if skipped).
"""
from __future__ import annotations

import os

from keras_tuner.engine import trial as trial_lib

from tfwd.choices.schedules import LearningRateScaling
from tfwd.train.config import TrainConfig
from tfwd.train.files import write_json_atomically
from tfwd.tuning.hypermodel import OBJECTIVE, TRIAL_METRICS

SEARCH_JSON = "search.json"
SEARCH_MD = "search.md"


def trial_entry(trial) -> dict:
    """One row of the table from a keras-tuner ``Trial``."""
    entry = {"trial_id": trial.trial_id, "status": trial.status,
             "values": dict(trial.hyperparameters.values)}
    for name in TRIAL_METRICS:
        if trial.metrics.exists(name):
            entry[name] = float(trial.metrics.get_last_value(name))
    if "best_epoch" in entry:
        entry["best_epoch"] = int(entry["best_epoch"])
    if trial.status != trial_lib.TrialStatus.COMPLETED:
        entry["message"] = trial.message
    return entry


def best_entry(entries: list[dict]) -> dict | None:
    """The completed trial with the highest score; the earliest one among equals."""
    completed = [e for e in entries if e["status"] == trial_lib.TrialStatus.COMPLETED]
    return max(completed, key=lambda e: e[OBJECTIVE.name], default=None)


def _accuracy(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def markdown(report: dict) -> str:
    """``search.md``: the protocol, the table (best trial in bold) and the test accuracy."""
    fields = list(report["grid"])
    scaling = report["learning_rate_scaling"]
    base = TrainConfig.from_dict(report["base_config"])
    lines = [
        "# Hyper-parameter search",
        "",
        f"{base.data.dataset} / {base.model.name} / {base.optimizer.name}, epochs: "
        f"{base.schedule.epochs}, batch size: {base.schedule.batch_size}. Trials train on "
        "`train` and are scored by the **final-epoch** accuracy on the held-out `validation` "
        "split; the test set is not read during the search.",
    ]
    if scaling["rule"] != LearningRateScaling.NONE:
        lines.append(
            f"Learning rates are at batch {scaling['base_batch_size']} and are rescaled "
            f"({scaling['rule']} rule) to batch {scaling['batch_size']}: applied rates "
            + ", ".join(f"{rate:g}" for rate in scaling["effective_learning_rates"]) + ".")
    header = ["trial", *fields, "validation acc. (final)", "best epoch (acc.)", "time [s]",
              "status"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    best_id = report["best"]["trial_id"] if report["best"] else None
    for entry in report["trials"]:
        best_epoch = (f"{entry['best_epoch']} ({entry['best_epoch_validation_accuracy']:.4f})"
                      if "best_epoch" in entry else "–")
        row = [entry["trial_id"], *(f"{entry['values'][f]:g}" for f in fields),
               _accuracy(entry.get(OBJECTIVE.name)), best_epoch,
               f"{entry['trial_seconds']:.1f}" if "trial_seconds" in entry else "–",
               entry["status"]]
        if entry["trial_id"] == best_id:
            row = [f"**{cell}**" for cell in row]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if report["best"] is None:
        lines.append("No trial completed.")
    elif report["retraining"] is None:
        lines.append(f"Best: trial {best_id}. Retraining on `train_full` was skipped.")
    else:
        lines.append(
            f"Best: trial {best_id}, retrained on `train_full` (train + validation) in "
            f"`{report['retraining']['workdir']}`: **test accuracy "
            f"{_accuracy(report['test_accuracy'])}**.")
    return "\n".join(lines) + "\n"


def write_report(directory: str, report: dict) -> None:
    """Write ``search.json`` and ``search.md`` into ``directory``."""
    write_json_atomically(os.path.join(directory, SEARCH_JSON), report, indent=2,
                          sort_keys=True)
    with open(os.path.join(directory, SEARCH_MD), "w") as f:
        f.write(markdown(report))
