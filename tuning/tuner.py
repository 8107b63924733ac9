"""``GridTuner``: runs the trials the ``GridOracle`` hands out, alone or as one of many workers.

Each trial trains ``TrainHyperModel.build(hp)`` with ``tfwd.train`` in the trial's directory
inside the keras-tuner project (``<directory>/trials/trial_<id>/``: config.json, results.json,
checkpoints, logs), so a trial killed mid-way resumes there when it is redone.

Distributed search uses keras-tuner's chief/worker protocol: every process runs the same
command with ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` and its own
``KERASTUNER_TUNER_ID`` (``chief`` for the process that holds the oracle, any other name for a
worker). The chief runs no trial: it serves the oracle over gRPC until every grid point is
finished and every worker has been told to stop; workers ask for trials and run them.
keras-tuner's own server re-checks for the end every 20 s; ``serve_oracle`` every half second.
"""
from __future__ import annotations

import os
import time
from concurrent import futures

import keras_tuner
from keras_tuner.engine.base_tuner import BaseTuner

from tfwd.train.files import write_json_atomically
from tfwd.tuning.hypermodel import TrainHyperModel
from tfwd.tuning.oracle import GridOracle

PROJECT_NAME = "trials"
CHIEF_POLL_SECONDS = 0.5


def is_oracle_chief() -> bool:
    """True in the process that serves the oracle of a distributed search (keras-tuner's rule)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" in os.environ.get(
        "KERASTUNER_TUNER_ID", "")


def is_oracle_worker() -> bool:
    """True in a process that runs trials for a chief's oracle."""
    return "KERASTUNER_ORACLE_IP" in os.environ and not is_oracle_chief()


def serve_oracle(oracle: keras_tuner.Oracle, poll_seconds: float = CHIEF_POLL_SECONDS) -> None:
    """Serve ``oracle`` to the workers until the grid is done and every worker has stopped.

    keras-tuner's ``oracle_chief.start_server`` with a shorter poll (and a clean stop); it uses
    keras-tuner 1.4's gRPC service, as ``start_server`` does.
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(address)
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=None)


class GridTuner(BaseTuner):
    """Grid search over ``hypermodel.grid``; the project lives in ``<directory>/trials``.

    The project is always reloaded (``overwrite=False``): finished trials are kept, a trial
    that was running when the process died is redone, the rest are run.
    """

    def __init__(self, hypermodel: TrainHyperModel, directory: str):
        super().__init__(
            oracle=GridOracle(hypermodel.grid),
            hypermodel=hypermodel,
            directory=directory,
            project_name=PROJECT_NAME,
            overwrite=False,
        )
        self.trials_run = 0

    def run_trial(self, trial) -> dict:
        config = self.hypermodel.build(trial.hyperparameters)
        workdir = self.get_trial_dir(trial.trial_id)
        return self.hypermodel.fit(trial.hyperparameters, config, workdir=workdir)

    def on_trial_end(self, trial):
        self.trials_run += 1
        super().on_trial_end(trial)

    def search(self):
        """Run trials until the grid is done (the chief serves the oracle instead)."""
        if is_oracle_chief():
            self.save()
            serve_oracle(self.oracle)
        else:
            super().search()

    def save(self):
        """``BaseTuner.save`` with files written atomically (``tfwd.train.files``)."""
        if not self._is_worker():
            self.oracle.save()
        write_json_atomically(self._get_tuner_fname(), self.get_state())
