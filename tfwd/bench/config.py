"""What the benchmark runs: one ``BenchConfig`` of plain data (STYLE rule 6).

The default plan is sized for the full run to take about 20 minutes on a 2-core CPU. The
cost that shapes it is VGG11's K-FAC inverse step: three of its input factors are
4608 × 4608 (3×3×512 patches), and ``tf.linalg.eigh`` of one takes 1–2 minutes there. So:

* MLP: K-FAC is timed over whole periods of ``inv_every`` consecutive steps (one per round).
* VGG11 (``kfac_whole_periods=False``): each kind of step (ordinary, statistics, inverse)
  is timed in place by setting the optimizer's step counter before the step, and the kinds
  are weighted by their exact share of a period. The inverse step is timed once per model,
  for its first K-FAC configuration; the others add the inverse cost it measured
  (inverse step − statistics step) to their own statistics step.
"""
from __future__ import annotations

import dataclasses

from tfwd.choices import kfac
from tfwd.choices.models import Architecture
from tfwd.choices.noise import ADDED_NOISE_KINDS, LARGE_BATCH_SIZE, SMALL_BATCH_SIZE
from tfwd.choices.optimizers import OPTIMIZERS
from tfwd.curvature.inverse import check_inverse_method
from tfwd.curvature.low_rank import check_low_rank_mode


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """One architecture on random data of its dataset's shape, and how much to time it.

    Measurements run in ``rounds`` interleaved rounds (``tfwd.bench.timing``). Per round:
    ``steps_per_round`` SGD/Adam steps (and K-FAC ordinary steps when timed in place);
    K-FAC one whole period (``kfac_whole_periods``) or, in place, ``steps_per_round``
    ordinary and ``kfac_statistics_per_round`` statistics steps; ``component_per_round``
    calls of each isolated floor component. The damped inverses in isolation (all layers in
    one call) are timed ``inverse_repeats`` times, once per model.
    """

    name: str
    input_shape: tuple
    num_classes: int = 10
    batch_norm: bool = False
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    rounds: int = 2
    steps_per_round: int = 10
    kfac_whole_periods: bool = True
    kfac_statistics_per_round: int = 1
    component_per_round: int = 5
    inverse_repeats: int = 3


MNIST_SHAPE, CIFAR_SHAPE = (28, 28, 1), (32, 32, 3)

MLP, LENET, VGG11, TRANSFORMER = (Architecture.MLP, Architecture.LENET, Architecture.VGG11,
                                  Architecture.TRANSFORMER)

DEFAULT_PLANS = {
    MLP: ModelPlan(MLP, MNIST_SHAPE, model_kwargs={"depth": 2, "width": 1000},
                   rounds=2, steps_per_round=15, component_per_round=5, inverse_repeats=3),
    VGG11: ModelPlan(VGG11, CIFAR_SHAPE, batch_norm=True, rounds=2, steps_per_round=2,
                     kfac_whole_periods=False, kfac_statistics_per_round=1,
                     component_per_round=1, inverse_repeats=1),
    LENET: ModelPlan(LENET, MNIST_SHAPE, rounds=2, steps_per_round=10),
    # The MNIST transformer of tfwd.models (28 row tokens, d = 64, 2 blocks): every K-FAC
    # block kind but the convolutions (Dense on tokens, EinsumDense, LayerNorm, Embedding).
    TRANSFORMER: ModelPlan(TRANSFORMER, MNIST_SHAPE, rounds=2, steps_per_round=10),
}

# --quick: tiny shapes and short periods, so the test runs the whole pipeline in seconds.
QUICK_PLANS = {
    MLP: ModelPlan(MLP, MNIST_SHAPE, model_kwargs={"depth": 2, "width": 32}, rounds=1,
                   steps_per_round=2, component_per_round=1, inverse_repeats=1),
    LENET: ModelPlan(LENET, MNIST_SHAPE, rounds=1, steps_per_round=2,
                     kfac_whole_periods=False, component_per_round=1, inverse_repeats=1),
}


@dataclasses.dataclass
class BenchConfig:
    """Everything one benchmark run does (``python -m tfwd.bench`` fills it from flags)."""

    models: tuple = (MLP, VGG11)
    batch_sizes: tuple = (128, 640)
    optimizers: tuple = OPTIMIZERS
    # K-FAC: the authors' periods and settings (tfwd.choices.kfac).
    cov_every: int = kfac.COV_EVERY
    inv_every: int = kfac.INV_EVERY
    damping: float = kfac.DAMPING
    gauss_newton_samples: int = kfac.GAUSS_NEWTON_SAMPLES
    # Replicas among which the per-replica inverse FLOPs are reported (inverses shared out).
    sharded_replicas: int = 2
    inverse: str = kfac.INVERSE
    low_rank: str = kfac.LOW_RANK
    # Part 2: large-batch SGD with curvature noise vs plain large-batch SGD.
    noise: bool = True
    noise_models: tuple = (MLP, LENET)
    noise_kinds: tuple = ADDED_NOISE_KINDS
    large_batch_size: int = LARGE_BATCH_SIZE
    small_batch_size: int = SMALL_BATCH_SIZE
    noise_rounds: int = 3
    noise_steps_per_round: int = 3
    # Timing.
    plans: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_PLANS))
    steps: int | None = None  # overrides every plan's steps_per_round
    rounds: int | None = None  # overrides every plan's rounds
    seed: int = 0

    def plan(self, model: str) -> ModelPlan:
        if model not in self.plans:
            raise ValueError(f"No benchmark plan for model {model!r}; known: {sorted(self.plans)}.")
        plan = self.plans[model]
        if self.steps is not None:
            plan = dataclasses.replace(plan, steps_per_round=self.steps)
        if self.rounds is not None:
            plan = dataclasses.replace(plan, rounds=self.rounds)
        return plan

    def validate(self) -> "BenchConfig":
        for model in (*self.models, *(self.noise_models if self.noise else ())):
            self.plan(model)
        unknown = sorted(set(self.optimizers) - set(OPTIMIZERS))
        if unknown:
            raise ValueError(f"Unknown optimizers {unknown}; choose from {OPTIMIZERS}.")
        unknown = sorted(set(self.noise_kinds) - set(ADDED_NOISE_KINDS))
        if unknown:
            raise ValueError(f"Unknown noise kinds {unknown}; choose from {ADDED_NOISE_KINDS}.")
        if any(b < 1 for b in self.batch_sizes) or not self.batch_sizes:
            raise ValueError(f"batch_sizes must be positive integers, got {self.batch_sizes}.")
        for name in ("steps", "rounds"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.sharded_replicas < 1:
            raise ValueError(f"sharded_replicas must be >= 1, got {self.sharded_replicas}.")
        check_inverse_method(self.inverse)
        check_low_rank_mode(self.low_rank)
        if not 1 <= self.small_batch_size <= self.large_batch_size:
            raise ValueError("Need 1 <= small_batch_size <= large_batch_size.")
        return self

    @classmethod
    def quick(cls, **overrides) -> "BenchConfig":
        """Tiny shapes, batch 16, periods of 4 steps: the whole pipeline in well under a minute."""
        values = dict(models=(MLP, LENET), batch_sizes=(16,), cov_every=2, inv_every=4,
                      noise_models=(MLP,), large_batch_size=64, small_batch_size=16,
                      noise_rounds=1, noise_steps_per_round=2, plans=dict(QUICK_PLANS))
        values.update(overrides)
        return cls(**values)
