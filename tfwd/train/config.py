"""One run's configuration: plain data, validated before any work, saved beside the results.

Launchers fill it from flags, the tuner from a grid, experiments from their registry; ``train``
is the only consumer (STYLE rule 6). Every field has the meaning of the flag of the same name
in ``tfwd.launch.train``.
"""
from __future__ import annotations

import dataclasses
import json
import math

from tfwd.choices import damping as adaptive_damping_options
from tfwd.choices import decay, kfac
from tfwd.choices.data import DATASETS, TRAIN_SPLITS, Dataset, Split
from tfwd.choices.decay import DECAY_GROUPS, DECAY_TYPES
from tfwd.choices.diagnostics import DIAGNOSTIC_NAMES, SAMPLE_SIZE
from tfwd.choices.kfac import INVERSE_METHODS, LOW_RANK_MODES
from tfwd.choices.layers import WEIGHT_NORM_LAYERS
from tfwd.choices.models import ARCHITECTURES, BATCH_NORM, Architecture
from tfwd.choices.noise import (MULTIPLICATIVE_STD, NOISE_KINDS, NOISE_UNTIL_EPOCH,
                                SMALL_BATCH_SIZE, NoiseKind)
from tfwd.choices.optimizers import MOMENTUM, OPTIMIZERS, Optimizer, is_kfac
from tfwd.choices.runtime import DTYPE_POLICIES, LOOPS, STRATEGIES, DtypePolicy, Loop, Strategy
from tfwd.choices.schedules import LR_SCALINGS, LearningRateScaling
from tfwd.data.catalog import dataset_info

# Fields that do not change a run's numbers: ignored when a rerun is compared with a saved run.
COSMETIC_FIELDS = ("verbose", "data_dir")


@dataclasses.dataclass
class TrainConfig:
    # What to train on.
    dataset: str = Dataset.MNIST
    model: str = Architecture.MLP
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    batch_norm: bool = BATCH_NORM
    bn_affine: bool = False
    ghost_batch_size: int | None = None
    augment: bool = False
    train_split: str = Split.TRAIN  # Split.TRAIN_FULL = train + validation, for final retraining
    evaluate_test: bool = True  # the tuner switches it off: the search never reads test
    test_every_epoch: bool = True  # False: the test set is evaluated once, after the last epoch
    data_dir: str | None = None
    # How to optimize.
    optimizer: str = Optimizer.SGD
    learning_rate: float = 0.1
    momentum: float = MOMENTUM
    weight_decay: float = decay.WEIGHT_DECAY
    decay_type: str = decay.DECAY_TYPE
    decay_group: str = decay.DECAY_GROUP
    epochs: int = 10
    batch_size: int = 128
    lr_decay_every_epochs: int = 0
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0.0
    # Rescale learning_rate from base_batch_size to batch_size.
    lr_scaling: str = LearningRateScaling.NONE
    base_batch_size: int = 128
    # K-FAC (tfwd.choices.kfac: the authors' defaults, docs/equations.md §4).
    damping: float = kfac.DAMPING
    kl_clip: float | None = kfac.KL_CLIP
    cov_decay: float = kfac.COV_DECAY
    cov_every: int = kfac.COV_EVERY
    inv_every: int = kfac.INV_EVERY
    gauss_newton_samples: int | None = kfac.GAUSS_NEWTON_SAMPLES
    kfac_init_batches: int = 10
    # Levenberg–Marquardt damping (tfwd.optimizers.damping.DampingAdaptation; defaults and
    # checks in tfwd.choices.damping, so that flags validate before TensorFlow is imported).
    adaptive_damping: bool = False
    damping_interval: int = adaptive_damping_options.INTERVAL
    damping_decay: float = adaptive_damping_options.DECAY
    min_damping: float = adaptive_damping_options.MINIMUM
    max_damping: float = adaptive_damping_options.MAXIMUM
    inverse: str = kfac.INVERSE  # how K-FAC inverts its damped factors
    low_rank: str = kfac.LOW_RANK  # Dense blocks: precondition through the gradient's factors
    # Large-batch regimes (paper 002).
    noise: str = NoiseKind.NONE
    small_batch_size: int = SMALL_BATCH_SIZE
    noise_until_epoch: int = NOISE_UNTIL_EPOCH
    multiplicative_std: float = MULTIPLICATIVE_STD
    small_batch_epochs: int = 0  # batch change: this many epochs at small_batch_size first
    # Measurement (tfwd.diagnostics names), and paper 000 fig. 4's weight-norm transfer:
    # rescale weight_norm_layers ("conv", "all", or comma-separated names) after every epoch
    # to the norms recorded (diagnostic "weight_norms") in the reference run's results.json.
    diagnostics: list = dataclasses.field(default_factory=list)
    diagnostics_every_epochs: int = 1  # and always after the last epoch
    diagnostics_sample_size: int = SAMPLE_SIZE  # training (and held-out) examples they measure on
    weight_norm_reference: str | None = None
    weight_norm_layers: str = WEIGHT_NORM_LAYERS
    # Where and how to run.
    strategy: str = Strategy.DEFAULT
    num_replicas: int = 1
    loop: str = Loop.FIT
    dtype_policy: str = DtypePolicy.FLOAT32  # tfwd.train.precision: float32, float64, mixed_*16
    seed: int = 0
    verbose: int = 1

    def _validate_adaptive_damping(self) -> None:
        if not is_kfac(self.optimizer):
            raise ValueError(f"adaptive_damping adapts K-FAC's damping; optimizer is "
                             f"{self.optimizer!r} (use kfac_g or kfac_f, or drop the flag).")
        adaptive_damping_options.check_adaptation(self.damping_interval, self.damping_decay,
                                                  self.min_damping, self.max_damping)
        adaptive_damping_options.check_initial_damping(self.damping, self.min_damping,
                                                       self.max_damping)

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the field and the fix; called before any work."""
        def choice(name, allowed):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {allowed}.")

        def positive(name):
            if getattr(self, name) is None or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")

        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value!r}.")
        choice("dataset", DATASETS)
        choice("model", ARCHITECTURES)
        unknown = sorted(set(self.diagnostics) - set(DIAGNOSTIC_NAMES))
        if unknown:
            raise ValueError(f"diagnostics has unknown names {unknown}; valid: "
                             f"{sorted(DIAGNOSTIC_NAMES)}.")
        choice("optimizer", OPTIMIZERS)
        choice("strategy", STRATEGIES)
        choice("loop", LOOPS)
        choice("dtype_policy", DTYPE_POLICIES)
        choice("train_split", TRAIN_SPLITS)
        choice("decay_type", DECAY_TYPES)
        choice("decay_group", DECAY_GROUPS)
        choice("lr_scaling", LR_SCALINGS)
        choice("noise", NOISE_KINDS)
        choice("inverse", INVERSE_METHODS)
        choice("low_rank", LOW_RANK_MODES)
        for name in ("learning_rate", "epochs", "batch_size", "base_batch_size", "damping",
                     "cov_every", "inv_every", "small_batch_size", "num_replicas",
                     "diagnostics_every_epochs", "diagnostics_sample_size"):
            positive(name)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}.")
        if self.kl_clip is not None and self.kl_clip <= 0:
            raise ValueError("kl_clip must be > 0 (or unset).")
        kfac.check_gauss_newton_samples(self.gauss_newton_samples)
        if self.adaptive_damping:
            self._validate_adaptive_damping()
        if self.augment and not dataset_info(self.dataset).augmentable:
            raise ValueError(f"augment is for CIFAR only; dataset is {self.dataset!r}.")
        if self.batch_size % self.num_replicas:
            raise ValueError(
                f"batch_size={self.batch_size} must be divisible by num_replicas="
                f"{self.num_replicas} (each replica gets an equal share)."
            )
        if self.ghost_batch_size is not None and (
            self.ghost_batch_size <= 0 or (self.batch_size // self.num_replicas) % self.ghost_batch_size
        ):
            raise ValueError(
                f"ghost_batch_size={self.ghost_batch_size} must divide the per-replica batch "
                f"{self.batch_size // self.num_replicas}."
            )
        if self.ghost_batch_size is not None and not self.batch_norm:
            raise ValueError("ghost_batch_size needs batch_norm=True.")
        if self.noise != NoiseKind.NONE and self.small_batch_size > self.batch_size:
            raise ValueError(
                f"small_batch_size={self.small_batch_size} exceeds batch_size={self.batch_size}: "
                "curvature noise imitates a smaller batch inside a larger one."
            )
        if self.small_batch_epochs < 0 or self.small_batch_epochs >= self.epochs and self.small_batch_epochs:
            raise ValueError("small_batch_epochs must be in [0, epochs).")
        if self.strategy == Strategy.DEFAULT and self.num_replicas != 1:
            raise ValueError("num_replicas > 1 needs strategy='mirrored'.")
        if self.strategy == Strategy.MULTI_WORKER and self.loop != Loop.CUSTOM:
            raise ValueError(
                "strategy='multi_worker' needs loop='custom': Keras 3 Model.fit does not run "
                "under MultiWorkerMirroredStrategy (keras-team/keras#20585)."
            )
        if self.kfac_init_batches < 0:
            raise ValueError("kfac_init_batches must be >= 0.")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig fields {unknown}; valid: {sorted(known)}.")
        return cls(**values)

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
