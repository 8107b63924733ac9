"""Part 2: cost of curvature noise (paper 002) on large-batch SGD.

    noise_step_ratio = t(LB SGD + noise kind) / t(plain LB SGD)

at large batch M_L = ``large_batch_size`` emulating small batch M_S = ``small_batch_size``;
both medians of consecutive ``train_on_batch`` steps on the same random batch, timed in
interleaved rounds (``tfwd.bench.timing``). Plain LB SGD is Keras's own train step; the
noisy one is ``tfwd.curvature.step``'s taped step with the ``tfwd.noise.make_noise`` consumer
installed, which is what training with noise runs. The noise stays on for every timed step
(``noise_until_epoch`` · ``steps_per_epoch`` is checked to exceed them).
"""
from __future__ import annotations

from tfwd.bench import steps
from tfwd.bench.config import BenchConfig
from tfwd.bench.timing import interleave, progress
from tfwd.choices.data import Dataset, Split
from tfwd.choices.noise import NOISE_UNTIL_EPOCH
from tfwd.choices.optimizers import Optimizer
from tfwd.data.catalog import dataset_info
from tfwd.train import TrainStep
from tfwd.noise import make_noise

# MNIST's whole training set: sets steps_per_epoch as in training.
TRAIN_EXAMPLES = dataset_info(Dataset.MNIST).split_sizes[Split.TRAIN_FULL]


def noise_step_ratios(config: BenchConfig) -> list[dict]:
    entries = []
    for model_name in config.noise_models:
        plan = config.plan(model_name)
        steps_per_epoch = max(1, TRAIN_EXAMPLES // config.large_batch_size)
        timed_steps = 1 + config.noise_rounds * config.noise_steps_per_round
        if NOISE_UNTIL_EPOCH * steps_per_epoch <= timed_steps:
            raise ValueError(
                f"Noise would switch off after {NOISE_UNTIL_EPOCH * steps_per_epoch} steps, "
                f"before the {timed_steps} steps timed for {model_name}; time fewer steps."
            )
        progress(f"noise {model_name} batch {config.large_batch_size}: plain SGD, "
                 f"{', '.join(config.noise_kinds)}")
        x, y = steps.random_batch(plan, config.large_batch_size, config.seed)
        runs = {"plain": steps.step_series(steps.compiled_model(Optimizer.SGD, config, plan), x, y,
                                           config.noise_steps_per_round)}
        for kind in config.noise_kinds:
            model = steps.compiled_model(Optimizer.SGD, config, plan)
            noise = make_noise(kind, model, large_batch_size=config.large_batch_size,
                               small_batch_size=config.small_batch_size,
                               steps_per_epoch=steps_per_epoch,
                               noise_until_epoch=NOISE_UNTIL_EPOCH, seed=config.seed)
            TrainStep(model, [noise]).install()
            runs[kind] = steps.step_series(model, x, y, config.noise_steps_per_round)
        interleave(list(runs.values()), config.noise_rounds)
        plain = runs["plain"]
        for kind in config.noise_kinds:
            run = runs[kind]
            entries.append({
                "model": model_name,
                "kind": kind,
                "large_batch_size": config.large_batch_size,
                "small_batch_size": config.small_batch_size,
                "step_seconds": run.median,
                "plain_sgd_step_seconds": plain.median,
                "noise_step_ratio": run.median / plain.median,
                "step_cpu_seconds": run.cpu_median,
                "plain_sgd_step_cpu_seconds": plain.cpu_median,
                "noise_step_ratio_cpu": run.cpu_median / plain.cpu_median,
                "steps": len(run.samples),
                "plain_steps": len(plain.samples),
                "load_average": run.load_average,
                "cpu_share": run.cpu_share,
            })
            progress(f"  {kind}: {run.median:.4f} s, ratio {entries[-1]['noise_step_ratio']:.2f}")
    return entries
