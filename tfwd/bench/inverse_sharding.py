"""K-FAC's inverse step on 2 replicas, each computing every inverse or the inverses shared out.

    python -m tfwd.bench.inverse_sharding                 # MLP timed, FLOPs of every model
    python -m tfwd.bench.inverse_sharding --json --timed_models=mlp --rounds=3
    python -m tfwd.bench.inverse_sharding --json --quick  # tiny MLP and LeNet, seconds (the test)

FLOPs: for every model of ``--models``, each replica's inverse work on ``--replicas``
replicas from the blocks' ``inverse_cost`` and the greedy assignment
(``tfwd.optimizers.sharding.sharded_inverse_flops``), without sharding (every replica: Σ c_b)
and with it (replica r: Σ_{o(b)=r} c_b).

Time: for every model of ``--timed_models``, a ``MirroredStrategy`` over ``--replicas``
logical CPU devices of this one process; two K-FAC optimizers on two copies of the model
(``shard_inverses`` True and False), factors filled from one random batch of the benchmark's
shape (``initialize_factors``, which also traces the step); then the inverse step's work,
``refresh_inverses`` (factorizations, and with sharding the all-reduce), is timed in
interleaved rounds (``tfwd.bench.timing``: medians, wall and CPU seconds, load average).
Logical devices share the process's threads and the machine's cores, so this measures the
work sharding saves, not what a second GPU or worker would add: with R devices on one CPU
the unsharded step does R times one replica's work on the same cores.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfwd.bench import steps  # noqa: E402
from tfwd.bench.config import DEFAULT_PLANS, QUICK_PLANS, BenchConfig, ModelPlan  # noqa: E402
from tfwd.bench.timing import Series, interleave, load_average, machine_info, progress, trace  # noqa: E402
from tfwd.choices.models import Architecture  # noqa: E402
from tfwd.choices.optimizers import Optimizer, kfac_curvature  # noqa: E402
from tfwd.choices.runtime import Strategy  # noqa: E402
from tfwd.curvature.registry import split_blocks  # noqa: E402
from tfwd.optimizers.sharding import sharded_inverse_flops  # noqa: E402
from tfwd.train import configure_cpu_devices, make_strategy  # noqa: E402

FLAGS = flags.FLAGS
TIMED_OPTIMIZER = Optimizer.KFAC_G
flags.DEFINE_list("models", None, "Models whose per-replica FLOPs are reported (default: "
                  "every model of the plans).")
flags.DEFINE_list("timed_models", [Architecture.MLP], "Models whose inverse step is "
                  "timed (VGG11's 4608 x 4608 eigendecompositions take minutes per call here).")
flags.DEFINE_bool("quick", False, "The benchmark's tiny --quick plans (mlp, lenet).")
flags.DEFINE_integer("replicas", 2, "Replicas (logical CPU devices).")
flags.DEFINE_integer("batch_size", 128, "Batch of the statistics that fill the factors.")
flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds (one call of each per round).")
flags.DEFINE_integer("seed", 0, "Seed of the models and the random batch.")
flags.DEFINE_bool("json", False, "Print the results as one JSON object on the last line.")


def inverse_flops(plan: ModelPlan, replicas: int, seed: int) -> dict:
    blocks, _ = split_blocks(steps.build_model(plan, seed))
    return sharded_inverse_flops(blocks, replicas)


def _inverse_step(strategy, plan: ModelPlan, config: BenchConfig, shard: bool, batch):
    """A compiled call of ``refresh_inverses`` under ``strategy``, factors filled from ``batch``."""
    with strategy.scope():
        model = steps.compiled_model(TIMED_OPTIMIZER, config, plan)
    model.optimizer.shard_inverses = shard  # read when the inverse step is traced, below
    model.optimizer.initialize_factors(model, tf.data.Dataset.from_tensors(batch), 1)
    function = tf.function(lambda: strategy.run(model.optimizer.refresh_inverses))
    trace(function)
    return function


def time_inverse_step(plan: ModelPlan, replicas: int, batch_size: int, rounds: int,
                      seed: int) -> dict:
    strategy = make_strategy(Strategy.MIRRORED, replicas)
    config = BenchConfig(seed=seed)
    batch = steps.random_batch(plan, batch_size, seed)
    series = {}
    for shard in (True, False):
        progress(f"{plan.name}: filling the factors, shard_inverses={shard}")
        series[shard] = Series(_inverse_step(strategy, plan, config, shard, batch), 1)
    interleave(list(series.values()), rounds)
    result = {"sharded": series[True].to_json(), "unsharded": series[False].to_json()}
    result["unsharded_over_sharded"] = series[False].median / series[True].median
    result["unsharded_over_sharded_cpu"] = series[False].cpu_median / series[True].cpu_median
    progress(f"  {plan.name}: sharded {series[True].median:.3f} s, unsharded "
             f"{series[False].median:.3f} s (CPU {series[True].cpu_median:.2f} / "
             f"{series[False].cpu_median:.2f} s)")
    return result


def main(argv):
    del argv
    plans = QUICK_PLANS if FLAGS.quick else DEFAULT_PLANS
    models = FLAGS.models if FLAGS.models is not None else list(plans)
    unknown = sorted(set(models + FLAGS.timed_models) - set(plans))
    if unknown:
        sys.exit(f"error: unknown models {unknown}; choose from {sorted(plans)}.")
    if FLAGS.replicas < 2 or FLAGS.rounds < 1 or FLAGS.batch_size < 1:
        sys.exit("error: need --replicas >= 2, --rounds >= 1 and --batch_size >= 1.")
    configure_cpu_devices(FLAGS.replicas)  # before TensorFlow's first op
    tf.get_logger().setLevel("ERROR")
    results = {"benchmark": "tfwd.bench.inverse_sharding", "machine": machine_info(),
               "load_average_start": load_average(), "replicas": FLAGS.replicas,
               "batch_size": FLAGS.batch_size, "curvature": kfac_curvature(TIMED_OPTIMIZER),
               "flops": {m: inverse_flops(plans[m], FLAGS.replicas, FLAGS.seed) for m in models},
               "inverse_step": {m: time_inverse_step(plans[m], FLAGS.replicas, FLAGS.batch_size,
                                                     FLAGS.rounds, FLAGS.seed)
                                for m in FLAGS.timed_models}}
    results["load_average_end"] = load_average()
    if FLAGS.json:
        print(json.dumps(results))
        return
    for model, flops in results["flops"].items():
        shared = " / ".join(f"{f / 1e9:,.2f}" for f in flops["sharded_flops_per_replica"])
        print(f"{model}: inverse GFLOP per replica unsharded "
              f"{flops['unsharded_flops_per_replica'] / 1e9:,.2f}, sharded {shared}")
    for model, timing in results["inverse_step"].items():
        print(f"{model}: inverse step {timing['sharded']['median_seconds']:.3f} s sharded, "
              f"{timing['unsharded']['median_seconds']:.3f} s unsharded (wall ratio "
              f"{timing['unsharded_over_sharded']:.2f}, CPU ratio "
              f"{timing['unsharded_over_sharded_cpu']:.2f})")


if __name__ == "__main__":
    app.run(main)
