"""Run the speed benchmark: absl flags → BenchConfig → tfwd.bench.run.

    python -m tfwd.bench                         # full run (~18 min on the shared 2-core CPU), tables
    python -m tfwd.bench --json                  # last line: the results as one JSON object
    python -m tfwd.bench --models=mlp --batch_sizes=128 --optimizers=sgd,kfac_g --nonoise
    python -m tfwd.bench --json --quick          # tiny shapes, seconds (the test)

Progress goes to stderr; stdout carries only the tables or the JSON.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import tfwd.bench  # noqa: E402
from tfwd.bench import config as config_lib  # noqa: E402
from tfwd.choices.kfac import INVERSE_METHODS, LOW_RANK_MODES  # noqa: E402
from tfwd.choices.noise import ADDED_NOISE_KINDS  # noqa: E402
from tfwd.choices.optimizers import OPTIMIZERS  # noqa: E402

FLAGS = flags.FLAGS
_DEFAULTS = config_lib.BenchConfig()

flags.DEFINE_list("models", None, f"Models of part 1 (default {list(_DEFAULTS.models)}).")
flags.DEFINE_list("batch_sizes", None, f"Batch sizes (default {list(_DEFAULTS.batch_sizes)}).")
flags.DEFINE_list("optimizers", None, f"Subset of {list(OPTIMIZERS)}.")
flags.DEFINE_integer("steps", None, "SGD/Adam (and in-place K-FAC ordinary) steps per round "
                     "(default: per-model plan). Whole-period K-FAC times one period per round.")
flags.DEFINE_integer("rounds", None, "Interleaved timing rounds (default: per-model plan).")
flags.DEFINE_bool("noise", True, "Part 2: curvature-noise step ratios.")
flags.DEFINE_list("noise_kinds", None, f"Subset of {list(ADDED_NOISE_KINDS)}.")
flags.DEFINE_bool("quick", False, "Tiny shapes and steps: the whole pipeline in seconds.")
flags.DEFINE_bool("json", False, "Print the results as one JSON object on the last line.")
flags.DEFINE_integer("seed", 0, "Seed of models and random data.")
flags.DEFINE_enum("inverse", _DEFAULTS.inverse, list(INVERSE_METHODS),
                  "K-FAC's inverse method (tfwd.optimizers.KFAC inverse=).")
flags.DEFINE_enum("low_rank", _DEFAULTS.low_rank, list(LOW_RANK_MODES),
                  "K-FAC's low-rank Dense preconditioning (tfwd.optimizers.KFAC low_rank=).")


def config_from_flags() -> config_lib.BenchConfig:
    values = {"noise": FLAGS.noise, "steps": FLAGS.steps, "rounds": FLAGS.rounds,
              "seed": FLAGS.seed, "inverse": FLAGS.inverse, "low_rank": FLAGS.low_rank}
    for name in ("models", "optimizers", "noise_kinds"):
        if FLAGS[name].value is not None:
            values[name] = tuple(FLAGS[name].value)
    if FLAGS.batch_sizes is not None:
        try:
            values["batch_sizes"] = tuple(int(b) for b in FLAGS.batch_sizes)
        except ValueError:
            sys.exit(f"error: --batch_sizes must be integers, got {FLAGS.batch_sizes}.")
    config = (config_lib.BenchConfig.quick(**values) if FLAGS.quick
              else config_lib.BenchConfig(**values))
    try:
        return config.validate()
    except ValueError as error:
        sys.exit(f"error: invalid flags: {error}")


def main(argv):
    del argv
    # A fresh model per measurement re-traces Keras's train function by design: mute the
    # retracing warning (and TensorFlow's info logs) so stderr shows the progress lines.
    tf.get_logger().setLevel("ERROR")
    config = config_from_flags()
    results = tfwd.bench.run(config)
    if FLAGS.json:
        print(json.dumps(results))
    else:
        print(tfwd.bench.format_tables(results))


if __name__ == "__main__":
    app.run(main)
