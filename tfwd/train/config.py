"""One run's configuration: plain data, validated before any work, saved beside the results.

Launchers fill it from flags, the tuner from a grid, experiments from their registry; ``train``
is the only consumer (STYLE rule 6). A ``TrainConfig`` is made of typed parts, each checking its
own fields (``validate``; checks that involve two parts are in ``TrainConfig.validate``)::

    config.data          DataConfig         dataset, splits, augmentation, data directory
    config.model         ModelConfig        network name and keyword arguments, batch norm
    config.schedule      ScheduleConfig     epochs, batch sizes, learning-rate schedule
    config.optimizer     OptimizerConfig    SGD / Adam / K-FAC, learning rate, weight decay
      .kfac              KFACConfig         K-FAC: damping, periods, inverses (equations.md §4)
        .adaptive_damping  AdaptiveDampingConfig  Levenberg–Marquardt damping (§4.9)
    config.noise         NoiseConfig        curvature noise of paper 002's regimes
    config.diagnostics   DiagnosticsConfig  what is measured, and the weight-norm transfer
    config.runtime       RuntimeConfig      strategy, replicas, loop, dtype policy, seed

**Flat names.** Every field also has a flat name, the one vocabulary of the flags of
``tfwd.launch.train``, of the tuner's grid points and of the experiment entries: the field's own
name unless the field says otherwise (``model.name`` is ``model``, ``optimizer.kfac.init_batches``
is ``kfac_init_batches``, ...). ``FLAT_FIELDS`` maps each flat name to its path, derived from the
dataclasses below. ``TrainConfig.from_flat(values)``, ``config.flat()`` and
``config.replace(**flat_values)`` speak flat names; validation errors name flat names, as the
flags do.

**Saved form.** ``to_dict`` / ``save`` write the nested form (config.json, results.json's
``config``); ``from_dict`` reads it, and also the flat form that earlier versions saved.
"""
from __future__ import annotations

import copy
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

# Fields (flat names) that do not change a run's numbers: ignored when a rerun is compared
# with a saved run.
COSMETIC_FIELDS = ("verbose", "data_dir")

_FLAT_NAME = "flat_name"  # a field's metadata key for a flat name other than its own


def _flat_named(flat_name: str, **field_options):
    """A dataclass field whose flat name (flag) is ``flat_name``."""
    return dataclasses.field(metadata={_FLAT_NAME: flat_name}, **field_options)


def _part_class(field: dataclasses.Field):
    """The part dataclass a field holds (its default factory), or None for a plain value."""
    factory = field.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def _flat_name(field: dataclasses.Field) -> str:
    return field.metadata.get(_FLAT_NAME, field.name)


class _Part:
    """Checks shared by the parts; every message names the flat name (the flag)."""

    def _flat(self, name: str) -> str:
        return _flat_name(next(f for f in dataclasses.fields(self) if f.name == name))

    def _choice(self, name: str, allowed) -> None:
        value = getattr(self, name)
        if value not in allowed:
            raise ValueError(f"{self._flat(name)}={value!r} is not one of {allowed}.")

    def _positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if value is None or value <= 0:
                raise ValueError(f"{self._flat(name)} must be > 0, got {value!r}.")


@dataclasses.dataclass
class DataConfig(_Part):
    """What to train and evaluate on."""

    dataset: str = Dataset.MNIST
    train_split: str = Split.TRAIN  # Split.TRAIN_FULL = train + validation, for final retraining
    augment: bool = False
    evaluate_test: bool = True  # the tuner switches it off: the search never reads test
    test_every_epoch: bool = True  # False: the test set is evaluated once, after the last epoch
    data_dir: str | None = None

    def validate(self) -> None:
        self._choice("dataset", DATASETS)
        self._choice("train_split", TRAIN_SPLITS)
        if self.augment and not dataset_info(self.dataset).augmentable:
            raise ValueError(f"augment is for CIFAR only; dataset is {self.dataset!r}.")


@dataclasses.dataclass
class ModelConfig(_Part):
    """The network: a ``tfwd.models`` name, its keyword arguments, batch normalization."""

    name: str = _flat_named("model", default=Architecture.MLP)
    kwargs: dict = _flat_named("model_kwargs", default_factory=dict)
    batch_norm: bool = BATCH_NORM
    bn_affine: bool = False
    ghost_batch_size: int | None = None

    def validate(self) -> None:
        self._choice("name", ARCHITECTURES)
        if self.ghost_batch_size is not None and not self.batch_norm:
            raise ValueError("ghost_batch_size needs batch_norm=True.")


@dataclasses.dataclass
class ScheduleConfig(_Part):
    """How long and in which batches: epochs, batch sizes, the learning-rate schedule
    (``tfwd.optimizers.EpochStepDecay``; the base rate is ``optimizer.learning_rate``)."""

    epochs: int = 10
    batch_size: int = 128
    # Paper 002: the small batch M_S that curvature noise imitates, and the batch change's
    # first phase (small_batch_epochs epochs at small_batch_size).
    small_batch_size: int = SMALL_BATCH_SIZE
    small_batch_epochs: int = 0
    lr_decay_every_epochs: int = 0
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0.0
    # Rescale learning_rate from base_batch_size to batch_size.
    lr_scaling: str = LearningRateScaling.NONE
    base_batch_size: int = 128

    def validate(self) -> None:
        self._positive("epochs", "batch_size", "base_batch_size", "small_batch_size")
        self._choice("lr_scaling", LR_SCALINGS)
        if self.small_batch_epochs < 0 or (
                self.small_batch_epochs and self.small_batch_epochs >= self.epochs):
            raise ValueError("small_batch_epochs must be in [0, epochs).")


@dataclasses.dataclass
class AdaptiveDampingConfig(_Part):
    """Levenberg–Marquardt damping (``tfwd.optimizers.damping.DampingAdaptation``; defaults and
    checks in ``tfwd.choices.damping``, so that flags validate before TensorFlow is imported)."""

    enabled: bool = _flat_named("adaptive_damping", default=False)
    interval: int = _flat_named("damping_interval", default=adaptive_damping_options.INTERVAL)
    decay: float = _flat_named("damping_decay", default=adaptive_damping_options.DECAY)
    min_damping: float = adaptive_damping_options.MINIMUM
    max_damping: float = adaptive_damping_options.MAXIMUM

    def validate(self) -> None:
        adaptive_damping_options.check_adaptation(self.interval, self.decay, self.min_damping,
                                                  self.max_damping)


@dataclasses.dataclass
class KFACConfig(_Part):
    """K-FAC's options (the authors' defaults, docs/equations.md §4); used by kfac_g, kfac_f."""

    damping: float = kfac.DAMPING
    kl_clip: float | None = kfac.KL_CLIP
    cov_decay: float = kfac.COV_DECAY
    cov_every: int = kfac.COV_EVERY
    inv_every: int = kfac.INV_EVERY
    gauss_newton_samples: int | None = kfac.GAUSS_NEWTON_SAMPLES
    init_batches: int = _flat_named("kfac_init_batches", default=10)
    inverse: str = kfac.INVERSE  # how K-FAC inverts its damped factors
    low_rank: str = kfac.LOW_RANK  # Dense blocks: precondition through the gradient's factors
    # Under a multi-replica strategy each replica inverts a share of the blocks (§4.8).
    shard_inverses: bool = kfac.SHARD_INVERSES
    adaptive_damping: AdaptiveDampingConfig = dataclasses.field(
        default_factory=AdaptiveDampingConfig)

    def validate(self) -> None:
        self._positive("damping", "cov_every", "inv_every")
        self._choice("inverse", INVERSE_METHODS)
        self._choice("low_rank", LOW_RANK_MODES)
        if self.kl_clip is not None and self.kl_clip <= 0:
            raise ValueError("kl_clip must be > 0 (or unset).")
        if self.init_batches < 0:
            raise ValueError("kfac_init_batches must be >= 0.")
        kfac.check_gauss_newton_samples(self.gauss_newton_samples)
        adaptation = self.adaptive_damping
        if adaptation.enabled:
            adaptation.validate()
            adaptive_damping_options.check_initial_damping(self.damping, adaptation.min_damping,
                                                           adaptation.max_damping)


@dataclasses.dataclass
class OptimizerConfig(_Part):
    """The optimizer (``tfwd.optimizers``), its learning rate η and weight decay γ."""

    name: str = _flat_named("optimizer", default=Optimizer.SGD)
    learning_rate: float = 0.1
    momentum: float = MOMENTUM
    weight_decay: float = decay.WEIGHT_DECAY
    decay_type: str = decay.DECAY_TYPE
    decay_group: str = decay.DECAY_GROUP
    kfac: KFACConfig = dataclasses.field(default_factory=KFACConfig)

    def validate(self) -> None:
        self._choice("name", OPTIMIZERS)
        self._choice("decay_type", DECAY_TYPES)
        self._choice("decay_group", DECAY_GROUPS)
        self._positive("learning_rate")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}.")
        if self.kfac.adaptive_damping.enabled and not is_kfac(self.name):
            raise ValueError(f"adaptive_damping adapts K-FAC's damping; optimizer is "
                             f"{self.name!r} (use kfac_g or kfac_f, or drop the flag).")
        self.kfac.validate()


@dataclasses.dataclass
class NoiseConfig(_Part):
    """Curvature noise imitating a small batch (``schedule.small_batch_size``) inside a
    large one (paper 002; ``tfwd.noise``)."""

    kind: str = _flat_named("noise", default=NoiseKind.NONE)
    until_epoch: int = _flat_named("noise_until_epoch", default=NOISE_UNTIL_EPOCH)
    multiplicative_std: float = MULTIPLICATIVE_STD

    def validate(self) -> None:
        self._choice("kind", NOISE_KINDS)


@dataclasses.dataclass
class DiagnosticsConfig(_Part):
    """Measurements (``tfwd.diagnostics`` names), and paper 000 fig. 4's weight-norm transfer:
    rescale ``weight_norm_layers`` ("conv", "all", or comma-separated names) after every epoch
    to the norms recorded (diagnostic "weight_norms") in the reference run's results.json."""

    names: list = _flat_named("diagnostics", default_factory=list)
    every_epochs: int = _flat_named("diagnostics_every_epochs", default=1)  # and after the last
    # Training (and held-out) examples they measure on.
    sample_size: int = _flat_named("diagnostics_sample_size", default=SAMPLE_SIZE)
    weight_norm_reference: str | None = None
    weight_norm_layers: str = WEIGHT_NORM_LAYERS

    def validate(self) -> None:
        unknown = sorted(set(self.names) - set(DIAGNOSTIC_NAMES))
        if unknown:
            raise ValueError(f"diagnostics has unknown names {unknown}; valid: "
                             f"{sorted(DIAGNOSTIC_NAMES)}.")
        self._positive("every_epochs", "sample_size")


@dataclasses.dataclass
class RuntimeConfig(_Part):
    """Where and how to run: distribution strategy, training loop, dtype policy, seed."""

    strategy: str = Strategy.DEFAULT
    num_replicas: int = 1
    loop: str = Loop.FIT
    dtype_policy: str = DtypePolicy.FLOAT32  # tfwd.train.precision: float32, float64, mixed_*16
    seed: int = 0
    verbose: int = 1

    def validate(self) -> None:
        self._choice("strategy", STRATEGIES)
        self._choice("loop", LOOPS)
        self._choice("dtype_policy", DTYPE_POLICIES)
        self._positive("num_replicas")
        if self.strategy == Strategy.DEFAULT and self.num_replicas != 1:
            raise ValueError("num_replicas > 1 needs strategy='mirrored'.")
        if self.strategy == Strategy.MULTI_WORKER and self.loop != Loop.CUSTOM:
            raise ValueError(
                "strategy='multi_worker' needs loop='custom': Keras 3 Model.fit does not run "
                "under MultiWorkerMirroredStrategy (keras-team/keras#20585)."
            )


def _leaf_paths(cls, prefix: tuple = ()) -> dict[str, tuple[str, ...]]:
    """{flat name: attribute path} of every plain field under the dataclass ``cls``."""
    paths = {}
    for field in dataclasses.fields(cls):
        part = _part_class(field)
        if part is not None:
            paths.update(_leaf_paths(part, prefix + (field.name,)))
        elif _flat_name(field) in paths:
            raise TypeError(f"two fields have the flat name {_flat_name(field)!r}.")
        else:
            paths[_flat_name(field)] = prefix + (field.name,)
    return paths


def _from_flat(cls, values: dict):
    """An instance of the dataclass ``cls`` taking the (known) flat ``values``, else defaults."""
    arguments = {}
    for field in dataclasses.fields(cls):
        part = _part_class(field)
        if part is not None:
            arguments[field.name] = _from_flat(part, values)
        elif _flat_name(field) in values:
            arguments[field.name] = values[_flat_name(field)]
    return cls(**arguments)


def _from_nested(cls, values: dict, prefix: str, unknown: list):
    """An instance of ``cls`` from a nested dict; unknown keys (dotted) go to ``unknown``."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    arguments = {}
    for key, value in values.items():
        field = fields.get(key)
        part = None if field is None else _part_class(field)
        if field is None or (part is not None and not isinstance(value, dict)):
            unknown.append(prefix + key)
        elif part is not None:
            arguments[key] = _from_nested(part, value, f"{prefix}{key}.", unknown)
        else:
            arguments[key] = value
    return cls(**arguments)


@dataclasses.dataclass
class TrainConfig:
    """One run: its parts (module docstring). ``TrainConfig()`` is the default run; build one
    from flat names with ``TrainConfig.from_flat``, or from its parts."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    diagnostics: DiagnosticsConfig = dataclasses.field(default_factory=DiagnosticsConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the field (flat name) and the fix; called before any work.

        Each part checks its own fields; the checks across parts are here."""
        for name, value in self.flat().items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}.")
        for part in (self.data, self.model, self.schedule, self.optimizer, self.noise,
                     self.diagnostics, self.runtime):
            part.validate()
        batch_size, replicas = self.schedule.batch_size, self.runtime.num_replicas
        if batch_size % replicas:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by num_replicas={replicas} "
                "(each replica gets an equal share)."
            )
        ghost = self.model.ghost_batch_size
        if ghost is not None and (ghost <= 0 or (batch_size // replicas) % ghost):
            raise ValueError(f"ghost_batch_size={ghost} must divide the per-replica batch "
                             f"{batch_size // replicas}.")
        if self.noise.kind != NoiseKind.NONE and self.schedule.small_batch_size > batch_size:
            raise ValueError(
                f"small_batch_size={self.schedule.small_batch_size} exceeds batch_size="
                f"{batch_size}: curvature noise imitates a smaller batch inside a larger one."
            )
        return self

    def flat(self) -> dict:
        """{flat name: value} of every field (copies): the flags' vocabulary."""
        values = {}
        for name, path in FLAT_FIELDS.items():
            value = self
            for attribute in path:
                value = getattr(value, attribute)
            values[name] = copy.deepcopy(value)
        return values

    @classmethod
    def from_flat(cls, values: dict | None = None, /, **flat_values) -> "TrainConfig":
        """The config with these flat-named values (``values`` and keywords), defaults
        elsewhere; an unknown name is refused, naming it."""
        merged = {**(values or {}), **flat_values}
        unknown = sorted(set(merged) - set(FLAT_FIELDS))
        if unknown:
            raise ValueError(f"Unknown TrainConfig fields {unknown}; valid flat names: "
                             f"{sorted(FLAT_FIELDS)}.")
        return _from_flat(cls, merged)

    def replace(self, **flat_values) -> "TrainConfig":
        """A copy with these flat-named fields replaced (``self`` is unchanged)."""
        return TrainConfig.from_flat(self.flat(), **flat_values)

    def to_dict(self) -> dict:
        """The nested form: {part: {field: value}}, as saved."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """A config from its nested form (``to_dict``) or the flat form of earlier versions'
        config.json / results.json; anything else is refused, naming the unknown fields."""
        parts = {field.name for field in dataclasses.fields(cls)}
        if not any(key in parts and isinstance(value, dict) for key, value in values.items()):
            return cls.from_flat(values)
        unknown = []
        config = _from_nested(cls, values, "", unknown)
        if unknown:
            raise ValueError(
                f"Unknown TrainConfig fields {sorted(unknown)}: a config is either nested, "
                f"{{part: {{field: value}}}} with parts {sorted(parts)} (as TrainConfig.to_dict "
                "writes it), or flat, {flat name: value} with the flag names; rename or remove "
                "these fields.")
        return config

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)


# {flat name: attribute path}, e.g. "kfac_init_batches": ("optimizer", "kfac", "init_batches").
FLAT_FIELDS = _leaf_paths(TrainConfig)
