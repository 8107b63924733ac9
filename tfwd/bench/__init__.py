"""Speed benchmark: optimizer step times, K-FAC against its floor, curvature-noise overhead.

    python -m tfwd.bench            # human-readable tables
    python -m tfwd.bench --json     # the same results as ONE JSON object on the last line

``run(config)`` returns the results dict (``BenchConfig`` says what runs; ``optimizer_speed``
defines step time and floor; ``noise_speed`` the noise ratio; ``timing`` how time and machine
load are measured). Random data of the datasets' shapes: no dataset is needed.
"""
from __future__ import annotations

import time

from tfwd.bench.config import BenchConfig
from tfwd.bench.noise_speed import noise_step_ratios
from tfwd.bench.optimizer_speed import FLOOR_DEFINITION, STEP_TIME_DEFINITION, benchmark_model
from tfwd.bench.report import format_tables
from tfwd.bench.timing import load_average, machine_info

KFAC_TARGET_RATIO = 1.25  # K-FAC step / floor
NOISE_TARGET_RATIO = 1.5  # LB SGD + noise / plain LB SGD

__all__ = ["BenchConfig", "format_tables", "run"]


def _target(ratios, limit) -> dict:
    return {"max_ratio": limit, "worst": max(ratios) if ratios else None,
            "met": all(r <= limit for r in ratios) if ratios else None}


def run(config: BenchConfig) -> dict:
    config.validate()
    start, load_at_start = time.perf_counter(), load_average()
    results = {
        "benchmark": "tfwd.bench",
        "machine": machine_info(),
        "settings": {
            "models": list(config.models), "batch_sizes": list(config.batch_sizes),
            "optimizers": list(config.optimizers), "cov_every": config.cov_every,
            "inv_every": config.inv_every, "damping": config.damping,
            "gauss_newton_samples": config.gauss_newton_samples,
            "sharded_replicas": config.sharded_replicas,
            "inverse": config.inverse, "low_rank": config.low_rank,
            "large_batch_size": config.large_batch_size, "small_batch_size": config.small_batch_size,
            "noise_rounds": config.noise_rounds,
            "noise_steps_per_round": config.noise_steps_per_round,
            "plans": {name: vars(config.plan(name)) for name in
                      dict.fromkeys((*config.models, *config.noise_models))},
            "seed": config.seed,
        },
        "step_time_definition": STEP_TIME_DEFINITION,
        "floor_definition": FLOOR_DEFINITION,
        "steps": [],
        "noise": [],
    }
    for model in config.models:
        results["steps"].extend(benchmark_model(model, config))
    if config.noise:
        results["noise"] = noise_step_ratios(config)
    kfac_ratios = [e["ratio_to_floor"] for e in results["steps"] if "ratio_to_floor" in e]
    noise_ratios = [e["noise_step_ratio"] for e in results["noise"]]
    results["targets"] = {"kfac_ratio_to_floor": _target(kfac_ratios, KFAC_TARGET_RATIO),
                          "noise_step_ratio": _target(noise_ratios, NOISE_TARGET_RATIO)}
    results["machine"].update(load_average_start=load_at_start, load_average_end=load_average())
    results["wall_seconds"] = time.perf_counter() - start
    return results
