"""Grid-search hyper-parameters from the shell: flags → base TrainConfig + grid → run_search.

    python -m tfwd.launch.tune --directory=runs/search_sgd --dataset=mnist --model=mlp \\
        --optimizer=sgd --epochs=10 --grid="lr=0.1,0.03;weight_decay=1e-4,1e-3"

Every flag of ``tfwd.launch.train`` (except ``--workdir``) sets the base config of all trials;
``--grid`` (default: ``tfwd.tuning.default_grid`` of ``--optimizer``) lists the values tried,
as ``KEY=V1,V2;KEY=...`` with keys lr, weight_decay, momentum, damping, kl_clip. Large batches:
``--batch_size=2000 --lr_scaling=sqrt`` (or linear) reads the grid's rates as rates at
``--base_batch_size`` (128) and rescales them. A bad grid or flag stops the run before any work
with a message naming the flag.

Rerun the same command to continue an interrupted search (finished trials are kept) and its
retraining. Distributed: start the same command in one chief and N worker processes, e.g. ::

    export KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000
    KERASTUNER_TUNER_ID=chief   python -m tfwd.launch.tune --directory=D ... &
    KERASTUNER_TUNER_ID=tuner0  python -m tfwd.launch.tune --directory=D ... &
    KERASTUNER_TUNER_ID=tuner1  python -m tfwd.launch.tune --directory=D ... &

The chief hands out trials, then retrains the best and writes the table. The last line printed
is ``test_accuracy=<value>`` (``validation_accuracy=<best score>`` with ``--noretrain``;
``trials_run=<n>`` on a worker).
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from tfwd.choices.runtime import Strategy
from tfwd.launch import train as train_launcher  # defines the TrainConfig flags

FLAGS = flags.FLAGS

flags.DEFINE_string("directory", None, "Search directory: trials, retraining, search.json/md.")
flags.DEFINE_string("grid", None, 'Values to search, e.g. "lr=0.1,0.03;weight_decay=1e-4,1e-3" '
                    "(default: the optimizer's default grid, see tfwd.tuning.grid).")
flags.DEFINE_bool("retrain", True, "Retrain the best point on train_full and measure test "
                  "accuracy once (--noretrain: search only).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TFDS logs every split it opens at INFO
    if not FLAGS.directory:
        sys.exit("error: --directory is required.")
    if FLAGS.workdir:
        sys.exit("error: --workdir is not a tune flag; a search lives in --directory.")
    if FLAGS.overwrite:
        sys.exit("error: --overwrite is not a tune flag; to start a search over, use a new "
                 "--directory.")
    base = train_launcher.checked_config_or_exit()
    from tfwd import tuning

    try:
        grid = tuning.parse_grid(FLAGS.grid) if FLAGS.grid is not None else None
        tuning.check_grid(
            grid or tuning.default_grid(base.optimizer.name, base.optimizer.decay_type), base)
    except tuning.GridError as error:
        sys.exit(f"error: --grid: {error}")
    if base.runtime.strategy == Strategy.MIRRORED:
        import tensorflow as tf

        from tfwd.train import configure_cpu_devices

        if not tf.config.list_physical_devices("GPU"):
            configure_cpu_devices(base.runtime.num_replicas)
    try:
        report = tuning.run_search(base, FLAGS.directory, grid, retrain_best=FLAGS.retrain)
    except tuning.SearchSetupError as error:
        sys.exit(f"error: {error}")
    if "trials_run" in report:
        print(f"trials_run={report['trials_run']}")
    elif report["test_accuracy"] is not None:
        print(f"test_accuracy={report['test_accuracy']:.4f}")
    else:
        print(f"validation_accuracy={report['best']['validation_accuracy']:.4f}")


if __name__ == "__main__":
    app.run(main)
