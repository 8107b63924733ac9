"""Part 1: steady-state step time of SGD, Adam, KFAC-G and KFAC-F, and K-FAC's floor.

K-FAC step time. Statistics (every ``cov_every`` steps) and inverse (every ``inv_every``)
steps are rare but expensive, so K-FAC's steady-state step time is the mean over whole
periods, computed from per-step times with the rare steps included at their exact share:

    t_K-FAC = Σ_kind f_kind · t_kind,     kind ∈ {ordinary, statistics, inverse},

f_kind the share of each kind of step in a period (``steps.period_fractions``; 0.90, 0.09,
0.01 for the authors' 10 and 100) and t_kind the median step time of that kind. Medians,
like SGD's and Adam's (median of consecutive steps), so that a stall caused by another job on
the machine weighs on neither side of a ratio. With ``kfac_whole_periods`` the steps are
whole periods of consecutive steps as in training, and their plain mean (stalls included)
is reported as well (``period_mean_seconds``); otherwise each kind is run in place
(``steps.KfacSteps``).

Floor. What K-FAC cannot avoid on top of an SGD step, each part timed in isolation
(compiled ``tf.function`` s on tensors of the real shapes, warm-up excluded, medians):

    floor = t_SGD − t_dropped + t_precondition + t_statistics / cov_every + t_inverse / inv_every

* t_precondition: every K-FAC block's preconditioning by the route the optimizer takes at
  this batch size: A⁻¹ ∇W̃ G⁻¹ (``precondition``, ``tfwd.curvature.block``), or for Dense
  blocks whose gradient rank B·T makes it cheaper (``low_rank``, ``tfwd.curvature.low_rank``)
  (A⁻¹Ãᵀ)(ĜG⁻¹) from factors of the real shapes; with KL clipping (the benchmark's K-FAC
  without batch norm) also each block's Σ g̃ᵀP, on the low-rank route from its two N × N
  products.
* t_dropped: the dense kernel gradients ∇W̃ = ÃᵀĜ of the blocks on the low-rank route. They
  are part of the SGD step, but K-FAC's step needs them for nothing, so its graph drops them.
* t_statistics: ``tfwd.curvature.statistics.block_factors`` in training mode minus the
  same captured forward pass alone — the extra backward pass and the statistics products.
* t_inverse: every block's ``damped_inverses`` in one compiled call, on real statistics of
  the benchmark batch (one replica), by the optimizer's inverse method (``inverse``: Cholesky
  by default). With it, the FLOPs (``inverse_cost``) each of ``sharded_replicas`` replicas
  would compute with the inverses shared out across them (``tfwd.optimizers.sharding``);
  ``tfwd.bench.inverse_sharding`` times that on 2 devices.

Everything entering one model and batch size's ratios (the four optimizers' steps, t_precondition,
t_statistics) is timed in interleaved rounds (``tfwd.bench.timing``), so all see the same
machine load. t_inverse depends on the layer shapes only and takes minutes for VGG11: it is
timed once per model, on its own, after the first batch size.
``ratio_to_floor`` = t_K-FAC / floor; ``ratio_to_sgd`` = t_K-FAC / t_SGD of the same model
and batch size in the same interleaved rounds; ``ordinary_ratio`` = t_ordinary /
(t_SGD − t_dropped + t_precondition) isolates the per-step overhead of the ordinary steps. Each also in CPU seconds (``*_cpu``,
``tfwd.bench.timing``), which other jobs on the machine disturb much less.
"""
from __future__ import annotations

import math

import tensorflow as tf

from tfwd.bench import steps
from tfwd.bench.config import BenchConfig
from tfwd.bench.timing import Sample, Series, interleave, measure, medians, progress, trace
from tfwd.choices.optimizers import Optimizer, is_kfac, kfac_curvature
from tfwd.curvature.block import BlockOptions
from tfwd.curvature.capture import LayerCapture
from tfwd.curvature.inverse import inner_product
from tfwd.curvature.low_rank import GradientFactors, gradient_matrix, prefers_low_rank
from tfwd.curvature.registry import split_blocks
from tfwd.curvature.statistics import block_factors
from tfwd.optimizers.sharding import sharded_inverse_flops

STEP_TIME_DEFINITION = (
    "SGD/Adam: median of consecutive train_on_batch steps (first, tracing step discarded). "
    "K-FAC: mean step time over whole periods with the rare steps included at their exact "
    "share, sum_kind f_kind * t_kind over kinds {ordinary, statistics (every cov_every steps), "
    "inverse (every inv_every steps)}, f_kind = period_fractions, t_kind = median step time of "
    "that kind, timed over whole periods of consecutive steps ('periods', whose plain mean is "
    "period_mean_seconds) or with each kind run in place by setting the step counter "
    "('in place'). Wall seconds; *_cpu_seconds are the process's CPU seconds."
)
FLOOR_DEFINITION = (
    "floor = t_SGD - t_dropped + t_precondition + t_statistics / cov_every + t_inverse / "
    "inv_every; t_SGD the SGD step above; the others compiled tf.functions timed in isolation "
    "(medians, warm-up excluded): t_dropped the dense kernel gradients A~^T G_b of the Dense "
    "blocks on the low-rank route (in the SGD step, dropped from K-FAC's); preconditioning of "
    "all K-FAC blocks by the route the optimizer takes at this batch size (A^-1 grad G^-1, or "
    "(A^-1 A~^T)(G_b G^-1) for Dense blocks where the low_rank cost model prefers it), with "
    "KL clipping also sum(grad * P) per block (low-rank: from two N x N products); "
    "block_factors in training mode minus the same captured forward pass; damped_inverses of "
    "all blocks in one call by the optimizer's inverse method (settings.inverse). "
    "ratio_to_sgd = K-FAC step / SGD step of the same model and batch, same interleaved rounds."
)


def _blocks(model) -> list:
    blocks, _ = split_blocks(model)
    return blocks


# ------------------------------------------------------------------ floor components
def _gradient_factors(block, batch_size: int) -> GradientFactors:
    """Random Ã, Ĝ of a Dense block at ``batch_size`` (B·T rows, T its input positions)."""
    positions = math.prod(block.layer.input.shape[1:-1])
    rows = batch_size * positions
    return GradientFactors(tf.random.normal([rows, block.input_dim]),
                           tf.random.normal([rows, block.output_dim]))


def _low_rank_factors(blocks, batch_size: int, low_rank: str) -> dict:
    """Random (Ã, Ĝ) of the Dense blocks the cost model sends on the low-rank route."""
    factors = {b.name: _gradient_factors(b, batch_size) for b in blocks
               if hasattr(b, "gradient_factors")}
    return {name: (f.inputs, f.output_gradients) for name, f in factors.items()
            if prefers_low_rank(low_rank, f, has_l2_term=False)}


def precondition_series(model, per_round: int, batch_size: int, low_rank: str,
                        kl_clip: bool) -> Series:
    """Every block's preconditioning by the optimizer's route at ``batch_size`` (with
    ``kl_clip``, and its Σ g̃ᵀP); random tensors of the real shapes as arguments (never
    captured constants, which graph optimisation could fold away)."""
    blocks = _blocks(model)
    gradients = [[tf.random.normal(v.shape) for v in b.variables] for b in blocks]
    inverses = [[tf.random.normal(spec.shape) if spec.initializer == "identity"
                 else tf.random.uniform(spec.shape) for spec in b.inverse_specs()] for b in blocks]
    factors = _low_rank_factors(blocks, batch_size, low_rank)

    def precondition_block(block, gradients, inverses, factors):
        if block.name in factors:
            direction = block.precondition_low_rank(GradientFactors(*factors[block.name]),
                                                    inverses)
            return (block.low_rank_variables(direction),
                    [direction.inner_product] if kl_clip else [])
        directions = block.precondition(gradients, inverses)
        return directions, ([inner_product(g, p) for g, p in zip(gradients, directions)]
                            if kl_clip else [])

    function = tf.function(lambda gradients, inverses, factors: [
        precondition_block(*arguments, factors) for arguments in zip(blocks, gradients, inverses)])
    trace(function, gradients, inverses, factors)
    series = Series(lambda: function(gradients, inverses, factors), per_round)
    series.low_rank_blocks = sorted(factors)
    return series


def dropped_gradient_series(model, per_round: int, batch_size: int, low_rank: str):
    """t_dropped: ∇W̃ = ÃᵀĜ of the blocks on the low-rank route (None if there are none)."""
    factors = _low_rank_factors(_blocks(model), batch_size, low_rank)
    if not factors:
        return None
    function = tf.function(lambda factors: [gradient_matrix(GradientFactors(*pair))
                                            for pair in factors.values()])
    trace(function, factors)
    return Series(lambda: function(factors), per_round)


def forward_series(model, x, per_round: int) -> Series:
    """The captured forward pass in training mode (what statistics add to)."""
    blocks = _blocks(model)

    @tf.function
    def forward(x):
        with LayerCapture(blocks):
            return model(x, training=True)

    trace(forward, x)
    return Series(lambda: forward(x), per_round)


def statistics_function(model, curvature: str, config: BenchConfig):
    """Compiled (x, y) -> [statistics per block]: forward pass + statistics, training mode."""
    blocks = _blocks(model)

    @tf.function
    def forward_and_statistics(x, y):
        return block_factors(model, blocks, x, y, curvature, seed=config.seed,
                             gauss_newton_samples=config.gauss_newton_samples, training=True)

    return forward_and_statistics


def inverse_cost(model, factors: list, config: BenchConfig, repeats: int) -> dict:
    """t_inverse: every block's ``damped_inverses`` in one compiled call, as the inverse step
    runs them."""
    blocks, _ = split_blocks(model, BlockOptions(inverse=config.inverse))
    function = tf.function(lambda factors: [b.damped_inverses(f, config.damping)
                                            for b, f in zip(blocks, factors)])
    trace(function, factors)
    series = measure(lambda: function(factors), repeats)
    progress(f"  inverses of {len(blocks)} blocks: {series.median:.3f} s")
    return {"wall": series.median, "cpu": series.cpu_median, **series.to_json(),
            "factor_shapes": [[list(f.shape) for f in block_factors] for block_factors in factors],
            "inverse_flops_estimate": sum(b.inverse_cost() for b in blocks),
            # What each replica would compute with inverses shared out (tfwd.optimizers.sharding).
            "inverse_flops_by_replica": sharded_inverse_flops(blocks, config.sharded_replicas)}


# ------------------------------------------------------------------ entries
def kfac_entry(run: steps.KfacSteps, config: BenchConfig, inverse_extra: Sample | None) -> dict:
    """Step times of one K-FAC run; ``inverse_extra`` stands in for an untimed inverse step."""
    fractions = steps.period_fractions(config.cov_every, config.inv_every)
    kinds = {kind: medians(run.by_kind[kind]) for kind in steps.STEP_KINDS}
    inverse_how = "measured"
    if kinds["inverse"] is None:
        kinds["inverse"] = Sample(kinds["statistics"].wall + inverse_extra.wall,
                                  kinds["statistics"].cpu + inverse_extra.cpu)
        inverse_how = "composed: this configuration's statistics step + inverse_extra_seconds"
    step = Sample(sum(fractions[k] * kinds[k].wall for k in steps.STEP_KINDS),
                  sum(fractions[k] * kinds[k].cpu for k in steps.STEP_KINDS))
    counts = {kind: len(run.by_kind[kind]) for kind in steps.STEP_KINDS}
    entry = {
        "step_seconds": step.wall,
        "step_cpu_seconds": step.cpu,
        "step_time_method": (
            f"{'periods' if run.whole_periods else 'in place'}: sum of period_fractions x "
            "per-kind median of " + ", ".join(f"{n} {k}" for k, n in counts.items()) + " steps"
            + (f" ({counts['inverse']} whole periods of consecutive steps)"
               if run.whole_periods else " (each run with the step counter set before it)")),
        "ordinary_step_median_seconds": kinds["ordinary"].wall,
        "statistics_step_median_seconds": kinds["statistics"].wall,
        "inverse_step_seconds": kinds["inverse"].wall,
        "ordinary_step_median_cpu_seconds": kinds["ordinary"].cpu,
        "statistics_step_median_cpu_seconds": kinds["statistics"].cpu,
        "inverse_step_cpu_seconds": kinds["inverse"].cpu,
        "inverse_step": inverse_how,
        "step_counts": counts,
        "period_fractions": fractions,
        "load_average": run.load_average,
        "cpu_share": run.cpu_share,
    }
    if run.whole_periods:  # the plain mean over the whole periods, stalls included
        entry["period_mean_seconds"] = sum(s.wall for s in run.samples) / len(run.samples)
    return entry


def floor_entry(entry: dict, ordinary: Sample, sgd: Series, components: dict, name: str,
                inverse: dict, config: BenchConfig) -> dict:
    """The floor of K-FAC entry ``name``, in wall and in CPU seconds, and the ratios to it;
    ``components``: the interleaved series of ``benchmark_model`` (``name``: its statistics)."""
    def floor_of(clock):
        def median(series):
            return getattr(medians(series.samples), clock) if series is not None else 0.0

        statistics_cost = max(median(components[name]) - median(components["forward"]), 0.0)
        parts = {"sgd_step": median(sgd), "dropped_gradients": median(components["dropped"]),
                 "precondition": median(components["precondition"]),
                 "statistics": statistics_cost, "inverse": inverse[clock]}
        ordinary_floor = parts["sgd_step"] - parts["dropped_gradients"] + parts["precondition"]
        total = (ordinary_floor + statistics_cost / config.cov_every
                 + parts["inverse"] / config.inv_every)
        return total, ordinary_floor, parts

    floor, ordinary_floor, parts = floor_of("wall")
    floor_cpu, ordinary_floor_cpu, parts_cpu = floor_of("cpu")
    result = {
        "floor_seconds": floor,
        "ratio_to_floor": entry["step_seconds"] / floor,
        "floor_cpu_seconds": floor_cpu,
        "ratio_to_floor_cpu": entry["step_cpu_seconds"] / floor_cpu,
        "ordinary_ratio": ordinary.wall / ordinary_floor,
        "ordinary_ratio_cpu": ordinary.cpu / ordinary_floor_cpu,
        "floor_components": {
            **{f"{part}_seconds": value for part, value in parts.items()},
            "statistics_per_step_seconds": parts["statistics"] / config.cov_every,
            "inverse_per_step_seconds": parts["inverse"] / config.inv_every,
            **{f"{part}_cpu_seconds": value for part, value in parts_cpu.items()},
            **{key: components[key].to_json() for key in ("precondition", "dropped")
               if components[key] is not None},
            "low_rank_blocks": components["precondition"].low_rank_blocks,
            "forward_and_statistics": components[name].to_json(),
            "forward_only": components["forward"].to_json(),
            "inverse": {k: v for k, v in inverse.items() if k not in ("wall", "cpu")},
        },
    }
    if "period_mean_seconds" in entry:
        result["period_mean_ratio_to_floor"] = entry["period_mean_seconds"] / floor
    return result


# ------------------------------------------------------------------ the benchmark
def _timed_runs(model_name: str, timed: list, kfac_names: list, config: BenchConfig, x, y):
    """Each optimizer's step series on (x, y) (K-FAC: ``steps.KfacSteps``)."""
    plan = config.plan(model_name)
    runs = {}
    for name in timed:
        model = steps.compiled_model(name, config, plan)
        runs[name] = (steps.KfacSteps(model, x, y, config, whole_periods=plan.kfac_whole_periods,
                                      ordinary_per_round=plan.steps_per_round,
                                      statistics_per_round=plan.kfac_statistics_per_round)
                      if name in kfac_names else
                      steps.step_series(model, x, y, plan.steps_per_round))
    return runs


def _floor_series(probe, model_name: str, kfac_names: list, config: BenchConfig, x, y):
    """The floor's isolated components of one batch size (``floor_entry``), and each K-FAC
    entry's compiled statistics function."""
    plan = config.plan(model_name)
    batch_size, per_round = int(x.shape[0]), plan.component_per_round
    components = {
        "precondition": precondition_series(
            probe, per_round, batch_size, config.low_rank,
            kl_clip=any(steps.kl_clip(name, plan) is not None for name in kfac_names)),
        "dropped": dropped_gradient_series(probe, per_round, batch_size, config.low_rank),
        "forward": forward_series(probe, x, per_round)}
    statistics = {}
    for name in kfac_names:
        statistics[name] = statistics_function(probe, kfac_curvature(name), config)
        trace(statistics[name], x, y)
        components[name] = Series(lambda f=statistics[name]: f(x, y), per_round)
    return components, statistics


def _time_inverse_in_place(runs: dict, kfac_names: list) -> Sample:
    """One in-place inverse step of the first K-FAC run: its cost over a statistics step."""
    name = kfac_names[0]
    progress(f"  {name}: one inverse step in place")
    runs[name].time_inverse_step()
    inverse_step = runs[name].by_kind["inverse"][0]
    statistics_step = medians(runs[name].by_kind["statistics"])
    return Sample(inverse_step.wall - statistics_step.wall,
                  inverse_step.cpu - statistics_step.cpu)


def _entry(name: str, runs: dict, components: dict, inverse: dict, inverse_extra,
           config: BenchConfig) -> dict:
    """The JSON entry of optimizer ``name`` (K-FAC: with its floor and ratios)."""
    run = runs[name]
    if not isinstance(run, steps.KfacSteps):  # SGD, Adam
        return {"step_seconds": run.median, "step_cpu_seconds": run.cpu_median,
                "step_time_method": "median of consecutive steps", "steps": len(run.samples),
                "load_average": run.load_average, "cpu_share": run.cpu_share}
    entry = kfac_entry(run, config, inverse_extra)
    entry["inverse_extra_seconds"] = None if inverse_extra is None else inverse_extra.wall
    entry["inverse_extra_cpu_seconds"] = None if inverse_extra is None else inverse_extra.cpu
    entry.update(floor_entry(entry, medians(run.by_kind["ordinary"]), runs[Optimizer.SGD], components,
                             name, inverse, config))
    sgd = medians(runs[Optimizer.SGD].samples)
    entry["ratio_to_sgd"] = entry["step_seconds"] / sgd.wall
    entry["ratio_to_sgd_cpu"] = entry["step_cpu_seconds"] / sgd.cpu
    return entry


def benchmark_model(model_name: str, config: BenchConfig) -> list[dict]:
    """All requested optimizers at all batch sizes on one model; K-FAC with its floor."""
    plan = config.plan(model_name)
    kfac_names = [o for o in config.optimizers if is_kfac(o)]
    timed = list(config.optimizers)
    if kfac_names and Optimizer.SGD not in timed:
        timed.insert(0, Optimizer.SGD)  # the floor needs the SGD step
    probe = steps.build_model(plan, config.seed)  # the isolated components run on it
    inverse, inverse_extra = None, None
    entries = []
    for batch_size in config.batch_sizes:
        progress(f"{model_name} batch {batch_size}: {', '.join(timed)}")
        x, y = steps.random_batch(plan, batch_size, config.seed)
        runs = _timed_runs(model_name, timed, kfac_names, config, x, y)
        components, statistics = (_floor_series(probe, model_name, kfac_names, config, x, y)
                                  if kfac_names else ({}, {}))
        interleave([*runs.values(), *(c for c in components.values() if c is not None)],
                   plan.rounds)
        if kfac_names and not plan.kfac_whole_periods and inverse_extra is None:
            inverse_extra = _time_inverse_in_place(runs, kfac_names)
        if kfac_names and inverse is None:
            progress("  damped inverses in isolation (once per model)")
            inverse = inverse_cost(probe, statistics[kfac_names[0]](x, y), config,
                                   plan.inverse_repeats)
        for name in (o for o in timed if o in config.optimizers):
            entry = _entry(name, runs, components, inverse, inverse_extra, config)
            entries.append({"model": model_name, "batch_size": batch_size, "optimizer": name,
                            **entry})
            progress(f"  {name}: {entry['step_seconds']:.4f} s"
                     + (f", ratio_to_floor {entry['ratio_to_floor']:.2f}, ratio_to_sgd "
                        f"{entry['ratio_to_sgd']:.2f}" if "ratio_to_floor" in entry else ""))
        del runs, components, statistics
    return entries
