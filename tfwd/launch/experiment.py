"""Reproduce tables and figures of the seed papers from the shell.

    python -m tfwd.launch.experiment --name=all --scale=smoke --workdir=runs/smoke
    python -m tfwd.launch.experiment --name=p002_table1 --scale=smoke --epochs=10 --seeds=3 \\
        --workdir=runs/mnist
    python -m tfwd.launch.experiment --name=p000_table1 --scale=paper --workdir=runs/paper \\
        --dry_run
    python -m tfwd.launch.experiment --name=p002_table1 --scale=mnist_paper --networks=mlp \\
        --threads=2 --workdir=runs/mnist_paper

Each run trains in ``<workdir>/runs/<hash>`` (shared by the entries that need it, resumed if
interrupted); each entry writes its table or plot to ``<workdir>/<entry>/``; ``index.md`` links
them. Rerunning skips completed entries. ``--dry_run`` lists the runs without training.
``--threads`` fixes TensorFlow's thread pools: a resumed run must use the same number as
the epochs before it, since the order of a multi-threaded sum changes the last digits.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from tfwd.choices.scales import SCALES, ScaleName
from tfwd.experiments import registry, spec

FLAGS = flags.FLAGS

flags.DEFINE_string("name", None,
                    "'all' or comma-separated entries: " + ", ".join(registry.names()))
flags.DEFINE_enum("scale", ScaleName.SMOKE, SCALES,
                  "paper: the papers' settings; mnist_paper: paper 002 table 1's MNIST rows at "
                  "the paper's settings, learning rate searched per regime (hours); smoke: real "
                  "MNIST in minutes; tiny: seconds (tests).")
flags.DEFINE_list("networks", None, "mnist_paper: train only these rows (of "
                  f"{', '.join(spec.MNIST_PAPER_NETWORKS)}).")
flags.DEFINE_list("only", None, "Train only the runs whose label matches one of these shell "
                  "patterns (e.g. 'mnist/mlp/sb,mnist/mlp/lb_gbn'); the report leaves the other "
                  "unfinished runs out. Processes with disjoint patterns can share a workdir.")
flags.DEFINE_integer("threads", None, "TensorFlow intra- and inter-op threads (default: "
                     "TensorFlow's); keep it fixed across the invocations of one workdir.")
flags.DEFINE_string("workdir", None, "Directory for runs/, the artifacts and index.md.")
flags.DEFINE_integer("epochs", None, "smoke/tiny: train this many epochs instead.")
flags.DEFINE_integer("seeds", None, "smoke/tiny: train every run with seeds 0..N-1.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default $TFWD_DATA_DIR or "
                    "~/tensorflow_datasets).")
flags.DEFINE_integer("verbose", 0, "Keras verbosity of each run (0, 1, 2).")
flags.DEFINE_bool("dry_run", False, "List the runs (and how many are shared) without training.")


def _dry_run(experiments, scale, workdir) -> None:
    from tfwd.experiments.runner import finished_results, plan_runs

    seen = set()
    for experiment in experiments:
        planned = plan_runs(experiment.runs(scale), workdir)
        new = [p for p in planned if p.key not in seen]
        seen.update(p.key for p in planned)
        done = sum(finished_results(p) is not None for p in planned)
        searched = sum(p.run.search is not None for p in planned)
        print(f"{experiment.name} ({experiment.citation}): {len(planned)} run(s), "
              f"{len(planned) - len(new)} shared with earlier entries, {searched} with a grid "
              f"search, {done} finished.")
        for p in planned:
            config = p.config
            print(f"  {p.key}  {p.run.label} seed={p.seed}: {config.data.dataset} "
                  f"{config.model.name} {config.optimizer.name} "
                  f"lr={config.optimizer.learning_rate:g} wd={config.optimizer.weight_decay:g} "
                  f"({config.optimizer.decay_type}, {config.optimizer.decay_group}) "
                  f"batch={config.schedule.batch_size} epochs={config.schedule.epochs}" + (f" search={dict(p.run.search)}"
                                                if p.run.search else "")
                  + (f" (searched once, with seed {p.run.seeds[0]}, in "
                     f"{p.search_directory})" if p.run.search_once else ""))
    print(f"{len(seen)} distinct run(s).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if not FLAGS.name or not FLAGS.workdir:
        sys.exit("error: --name and --workdir are required.")
    try:
        scale = spec.Scale(FLAGS.scale, epochs=FLAGS.epochs, seeds=FLAGS.seeds,
                           networks=tuple(FLAGS.networks) if FLAGS.networks else None)
        experiments = registry.select(FLAGS.name)
        for experiment in experiments:
            experiment.check_scale(scale)
    except ValueError as error:
        sys.exit(f"error: {error}")
    if FLAGS.threads is not None:
        if FLAGS.threads < 1:
            sys.exit(f"error: --threads must be at least 1, got {FLAGS.threads}.")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    if FLAGS.dry_run:
        _dry_run(experiments, scale, FLAGS.workdir)
        return
    from tfwd.experiments.runner import run_experiments

    records = run_experiments(FLAGS.name, scale, FLAGS.workdir, data_dir=FLAGS.data_dir,
                              verbose=FLAGS.verbose, log=lambda line: print(line, flush=True),
                              only=FLAGS.only)
    incomplete = [name for name, record in records.items() if not record["complete"]]
    print(f"index: {FLAGS.workdir}/index.md"
          + (f"; incomplete: {incomplete}" if incomplete else ""))


if __name__ == "__main__":
    app.run(main)
