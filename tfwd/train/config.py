"""One run's configuration: plain data, validated before any work, saved beside the results.

Launchers fill it from flags, the tuner from a grid, experiments from their registry; ``train``
is the only consumer (STYLE rule 6). Every field has the meaning of the flag of the same name
in ``tfwd.launch.train``.
"""
from __future__ import annotations

import dataclasses
import json
import math

OPTIMIZERS = ("sgd", "adam", "kfac_g", "kfac_f")
STRATEGIES = ("default", "mirrored", "multi_worker")
LOOPS = ("fit", "custom")
DTYPE_POLICIES = ("float32", "float64", "mixed_float16", "mixed_bfloat16")  # tfwd.train.precision
TRAIN_SPLITS = ("train", "train_full")
DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
NOISE_KINDS = ("none", "diag_fisher", "full_fisher", "trace", "kfac", "multiplicative")
# K-FAC's choices, spelled as in tfwd.curvature.inverse.INVERSE_METHODS and
# tfwd.curvature.low_rank.LOW_RANK_MODES (tests check they agree).
KFAC_INVERSES = ("cholesky", "eigh")
KFAC_LOW_RANK = ("auto", "never", "always")
# The names of tfwd.models.available() and tfwd.diagnostics.DIAGNOSTICS, spelled here too so
# that launchers validate flags without importing TensorFlow (tests check they agree).
MODELS = ("alexnet", "lenet", "mlp", "resnet32", "resnet44", "transformer", "vgg11", "vgg13", "vgg16",
          "vgg19")
DIAGNOSTIC_NAMES = (
    "effective_lr", "weight_norms", "jacobian_norm", "gauss_newton_norm",
    "kfac_gauss_newton_norm", "generalization_gap", "fisher_norms", "effective_damping",
    "gradient_variance", "hessian_eigenvalue",
)
# Fields that do not change a run's numbers: ignored when a rerun is compared with a saved run.
COSMETIC_FIELDS = ("verbose", "data_dir")


@dataclasses.dataclass
class TrainConfig:
    # What to train on.
    dataset: str = "mnist"
    model: str = "mlp"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    batch_norm: bool = False
    bn_affine: bool = False
    ghost_batch_size: int | None = None
    augment: bool = False
    train_split: str = "train"  # "train_full" = train + validation, for final retraining
    evaluate_test: bool = True  # the tuner switches it off: the search never reads test
    test_every_epoch: bool = True  # False: the test set is evaluated once, after the last epoch
    data_dir: str | None = None
    # How to optimize.
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    decay_type: str = "decoupled"
    decay_group: str = "all"
    epochs: int = 10
    batch_size: int = 128
    lr_decay_every_epochs: int = 0
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0.0
    lr_scaling: str = "none"  # rescale learning_rate from base_batch_size to batch_size
    base_batch_size: int = 128
    # K-FAC (the authors' defaults, docs/equations.md §4).
    damping: float = 1e-3
    kl_clip: float | None = None
    cov_decay: float = 0.95
    cov_every: int = 10
    inv_every: int = 100
    gauss_newton_samples: int | None = 1
    kfac_init_batches: int = 10
    # Levenberg–Marquardt damping (tfwd.optimizers.damping.DampingAdaptation, whose defaults
    # these are; spelled here too so that flags validate before TensorFlow is imported).
    adaptive_damping: bool = False
    damping_interval: int = 5
    damping_decay: float = 0.95
    min_damping: float = 1e-8
    max_damping: float = 1e2
    inverse: str = "cholesky"  # how K-FAC inverts its damped factors
    low_rank: str = "auto"  # Dense blocks: precondition through the gradient's factors
    # Large-batch regimes (paper 002).
    noise: str = "none"
    small_batch_size: int = 128
    noise_until_epoch: int = 50
    multiplicative_std: float = 0.1
    small_batch_epochs: int = 0  # batch change: this many epochs at small_batch_size first
    # Measurement (tfwd.diagnostics names), and paper 000 fig. 4's weight-norm transfer:
    # rescale weight_norm_layers ("conv", "all", or comma-separated names) after every epoch
    # to the norms recorded (diagnostic "weight_norms") in the reference run's results.json.
    diagnostics: list = dataclasses.field(default_factory=list)
    diagnostics_every_epochs: int = 1  # and always after the last epoch
    diagnostics_sample_size: int = 256  # training (and held-out) examples they measure on
    weight_norm_reference: str | None = None
    weight_norm_layers: str = "conv"
    # Where and how to run.
    strategy: str = "default"
    num_replicas: int = 1
    loop: str = "fit"
    dtype_policy: str = "float32"  # tfwd.train.precision: float32, float64, mixed_*16
    seed: int = 0
    verbose: int = 1

    def _validate_adaptive_damping(self) -> None:
        if not self.optimizer.startswith("kfac"):
            raise ValueError(f"adaptive_damping adapts K-FAC's damping; optimizer is "
                             f"{self.optimizer!r} (use kfac_g or kfac_f, or drop the flag).")
        if isinstance(self.damping_interval, bool) or not isinstance(self.damping_interval, int) \
                or self.damping_interval < 1:
            raise ValueError(f"damping_interval must be an integer >= 1, got "
                             f"{self.damping_interval!r}.")
        if not 0 < self.damping_decay < 1:
            raise ValueError(f"damping_decay must be in (0, 1), got {self.damping_decay!r}.")
        if not 0 < self.min_damping <= self.max_damping:
            raise ValueError(f"Need 0 < min_damping <= max_damping, got {self.min_damping!r}, "
                             f"{self.max_damping!r}.")
        if not self.min_damping <= self.damping <= self.max_damping:
            raise ValueError(f"damping={self.damping!r} must lie in [min_damping, max_damping] "
                             f"= [{self.min_damping!r}, {self.max_damping!r}].")

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
        choice("model", MODELS)
        unknown = sorted(set(self.diagnostics) - set(DIAGNOSTIC_NAMES))
        if unknown:
            raise ValueError(f"diagnostics has unknown names {unknown}; valid: "
                             f"{sorted(DIAGNOSTIC_NAMES)}.")
        choice("optimizer", OPTIMIZERS)
        choice("strategy", STRATEGIES)
        choice("loop", LOOPS)
        choice("dtype_policy", DTYPE_POLICIES)
        choice("train_split", TRAIN_SPLITS)
        choice("decay_type", ("decoupled", "l2"))
        choice("decay_group", ("all", "top", "rest"))
        choice("lr_scaling", ("none", "linear", "sqrt"))
        choice("noise", NOISE_KINDS)
        choice("inverse", KFAC_INVERSES)
        choice("low_rank", KFAC_LOW_RANK)
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
        if self.adaptive_damping:
            self._validate_adaptive_damping()
        if self.augment and self.dataset not in ("cifar10", "cifar100"):
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
        if self.noise != "none" and self.small_batch_size > self.batch_size:
            raise ValueError(
                f"small_batch_size={self.small_batch_size} exceeds batch_size={self.batch_size}: "
                "curvature noise imitates a smaller batch inside a larger one."
            )
        if self.small_batch_epochs < 0 or self.small_batch_epochs >= self.epochs and self.small_batch_epochs:
            raise ValueError("small_batch_epochs must be in [0, epochs).")
        if self.strategy == "default" and self.num_replicas != 1:
            raise ValueError("num_replicas > 1 needs strategy='mirrored'.")
        if self.strategy == "multi_worker" and self.loop != "custom":
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
