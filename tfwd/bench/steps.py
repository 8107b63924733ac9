"""Training steps on random data: the models, optimizers and step series both parts share.

A step is ``Model.train_on_batch`` on one fixed random batch of the dataset's shape — the
same compiled train function ``fit`` runs (Keras's own step, or the taped step that K-FAC's
``tfwd.train.TrainStep`` installs for K-FAC and the noise), without any input pipeline. Loss: softmax
cross-entropy on logits; no metrics.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

import tfwd.models
from tfwd import optimizers
from tfwd.bench.config import BenchConfig, ModelPlan
from tfwd.bench.timing import Sample, Series, timed_call
from tfwd.choices.kfac import AUTHORS_KL_CLIP
from tfwd.choices.optimizers import MOMENTUM, Optimizer
from tfwd.train import TrainConfig, TrainStep, build

# Learning rates only keep the steps on random data finite; they do not affect speed.
LEARNING_RATES = {Optimizer.SGD: 1e-2, Optimizer.ADAM: 1e-3, Optimizer.KFAC_G: 1e-3,
                  Optimizer.KFAC_F: 1e-3}


def build_model(plan: ModelPlan, seed: int) -> keras.Model:
    return tfwd.models.build(
        plan.name, input_shape=plan.input_shape, num_classes=plan.num_classes,
        batch_norm=plan.batch_norm, seed=seed, **plan.model_kwargs,
    )


def random_batch(plan: ModelPlan, batch_size: int, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Standard-normal images and uniform integer labels of the plan's shapes."""
    x = tf.random.stateless_normal([batch_size, *plan.input_shape], seed=[seed, 1])
    y = tf.random.stateless_uniform([batch_size], seed=[seed, 2], minval=0,
                                    maxval=plan.num_classes, dtype=tf.int32)
    return x, y


def kl_clip(name: str, plan: ModelPlan) -> float | None:
    """The KL clip c of optimizer ``name`` on ``plan``'s model: the authors' for K-FAC, none
    with batch norm (as theirs) or for SGD and Adam."""
    return None if plan.batch_norm else AUTHORS_KL_CLIP.get(name)


def make_optimizer(name: str, config: BenchConfig, plan: ModelPlan) -> keras.optimizers.Optimizer:
    """The optimizer a run of ``name`` trains with (``tfwd.train.build``), with the
    benchmark's K-FAC settings and no weight decay."""
    run = TrainConfig.from_flat(
        optimizer=name, learning_rate=LEARNING_RATES[name], momentum=MOMENTUM,
        damping=config.damping, cov_every=config.cov_every, inv_every=config.inv_every,
        kl_clip=kl_clip(name, plan), gauss_newton_samples=config.gauss_newton_samples,
        inverse=config.inverse, low_rank=config.low_rank, seed=config.seed)
    return build.make_optimizer(run, run.optimizer.learning_rate)


def compiled_model(optimizer_name: str, config: BenchConfig, plan: ModelPlan) -> keras.Model:
    """A fresh seeded model compiled with the optimizer (K-FAC attached)."""
    model = build_model(plan, config.seed)
    optimizer = make_optimizer(optimizer_name, config, plan)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if isinstance(optimizer, optimizers.KFAC):
        optimizer.attach(model)
        TrainStep(model).install()
    return model


def step_series(model: keras.Model, x, y, per_round: int) -> Series:
    """Consecutive steps; the first one traces and is discarded."""
    return Series(lambda: model.train_on_batch(x, y), per_round, always_discard_first=True)


def step_at(model: keras.Model, x, y, iteration: int) -> Sample:
    """One step, run with the optimizer's step counter set to ``iteration`` (not timed)."""
    model.optimizer.iterations.assign(iteration)
    return timed_call(lambda: model.train_on_batch(x, y))


# ------------------------------------------------------------------ K-FAC step kinds
STEP_KINDS = ("ordinary", "statistics", "inverse")


def step_kind(iteration: int, cov_every: int, inv_every: int) -> str:
    """What K-FAC does at the step whose counter reads ``iteration`` (before the step).

    "inverse": damped inverses recomputed (with statistics too when cov_every divides it);
    "statistics": factors updated; "ordinary": neither.
    """
    if iteration % inv_every == 0:
        return "inverse"
    return "statistics" if iteration % cov_every == 0 else "ordinary"


def period_fractions(cov_every: int, inv_every: int) -> dict[str, float]:
    """Share of each step kind over a whole number of periods (lcm of the two periods)."""
    length = math.lcm(cov_every, inv_every)
    counts = dict.fromkeys(STEP_KINDS, 0)
    for iteration in range(1, length + 1):
        counts[step_kind(iteration, cov_every, inv_every)] += 1
    return {kind: count / length for kind, count in counts.items()}


class KfacSteps(Series):
    """K-FAC steps, sorted by kind; one round is

    * ``whole_periods=True``: one whole period as in training — the counter restarts at 1
      and ``inv_every`` consecutive steps run (counters 1 … inv_every);
    * ``whole_periods=False``: ``ordinary_per_round`` ordinary and ``statistics_per_round``
      statistics steps, each run in place by setting the step counter before it (outside
      the timed call); ``time_inverse_step`` then times one inverse step, after the
      statistics steps have filled the factors.

    Warm-up (discarded): an ordinary step (traces the train function); with whole periods
    also a statistics step, so the first timed inverse sees real factors.
    """

    def __init__(self, model, x, y, config: BenchConfig, *, whole_periods: bool,
                 ordinary_per_round: int, statistics_per_round: int):
        super().__init__(lambda: model.train_on_batch(x, y), per_round=1,
                         always_discard_first=True)
        self.model, self.x, self.y = model, x, y
        self.cov_every, self.inv_every = config.cov_every, config.inv_every
        self.whole_periods = whole_periods
        self.ordinary_per_round, self.statistics_per_round = ordinary_per_round, statistics_per_round
        period = range(1, math.lcm(self.cov_every, self.inv_every) + 1)
        self._counters = {kind: [i for i in period if self._kind(i) == kind] for kind in STEP_KINDS}
        if not whole_periods and not (self._counters["ordinary"] and self._counters["statistics"]):
            raise ValueError("Timing steps in place needs cov_every > 1 and inv_every not a "
                             f"divisor of cov_every; got {self.cov_every}, {self.inv_every}.")
        self._next = dict.fromkeys(STEP_KINDS, 0)
        self.by_kind = {kind: [] for kind in STEP_KINDS}

    def _kind(self, iteration: int) -> str:
        return step_kind(iteration, self.cov_every, self.inv_every)

    def _step(self, kind: str) -> None:
        counters = self._counters[kind]
        iteration = counters[self._next[kind] % len(counters)]
        self._next[kind] += 1
        sample = step_at(self.model, self.x, self.y, iteration)
        self.by_kind[kind].append(sample)
        self.samples.append(sample)

    def warm_up(self) -> None:
        self.model.optimizer.iterations.assign(1)  # counter 0 would be an inverse step
        super().warm_up()
        if self.whole_periods:
            step_at(self.model, self.x, self.y, self.cov_every)

    def _round(self) -> None:
        if self.whole_periods:
            self.model.optimizer.iterations.assign(1)
            for iteration in range(1, self.inv_every + 1):
                sample = timed_call(self.call)
                self.by_kind[self._kind(iteration)].append(sample)
                self.samples.append(sample)
            return
        for _ in range(self.ordinary_per_round):
            self._step("ordinary")
        for _ in range(self.statistics_per_round):
            self._step("statistics")

    def time_inverse_step(self) -> None:
        self.sample_round(lambda: self._step("inverse"))
