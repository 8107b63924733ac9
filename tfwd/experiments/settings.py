"""The training settings of the entries at each scale: one owner for every shared number.

Paper scale (docs/equations.md §9, paper 000 appendix A, paper 002 §4):

* Paper 000: batch 128; SGD/Adam 200 epochs with ×0.1 every 60 epochs (every 80 at batch
  2000), K-FAC 100 epochs with ×0.1 every 40; K-FAC damping 1e-3, momentum 0.9, factor decay
  0.95, statistics every 10 and inverses every 100 iterations, factors initialised by one pass
  over the training data, KL clipping 1e-4 (G) / 1e-5 (F) without batch norm; batch norm
  without γ/β; hyper-parameters: the authors' published ones where docs/equations.md §9 lists them
  (``AUTHORS_HYPERPARAMETERS``), otherwise a grid search on the held-out 5k split followed by
  retraining on train + validation (``tfwd.tuning.grid.paper_000_grid``: that module owns
  every grid; the papers do not publish their grids, so ours are stated there and always
  contain the authors' values). Large batches (table 3)
  adjust the search range by square-root scaling from batch 128 (Hoffer et al. 2017).
* Paper 002: M_L = 4096, M_S = 128, ghost batch norm of 128 for the large-batch regimes, linear
  LR scaling (square root in its table 3) with a 5-epoch warm-up (Goyal et al.), noise off
  after epoch 50, 200 epochs for every regime (its BatchChange is 50 SB + 150 LB epochs), three
  seeds. Not stated in paper 002, and chosen here: SGD with momentum 0.9, base LR 0.1 at
  batch 128, L2 5e-4, ×0.1 every 60 epochs (paper 000's SGD schedule), augmentation on CIFAR.

Small scales (``SmallSizes``): real MNIST, an MLP standing in for VGG/ResNet, fixed
hyper-parameters (``SMALL_HYPERPARAMETERS``; no search), no LR decay for paper 000's entries
(two epochs) and paper 002's schedule shrunk in proportion to the epochs for its entries.
"""
from __future__ import annotations

import dataclasses
import math

from tfwd.choices import kfac, noise
from tfwd.choices.data import Dataset, Split
from tfwd.choices.decay import DecayType
from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.kfac import AUTHORS_KL_CLIP
from tfwd.choices.models import Architecture
from tfwd.choices.optimizers import MOMENTUM, Optimizer, is_kfac
from tfwd.choices.scales import ScaleName
from tfwd.data import dataset_info
from tfwd.experiments import published
from tfwd.experiments.spec import Scale

# Short names for the tables below.
_SGD, _ADAM, _KFAC_G, _KFAC_F = Optimizer.SGD, Optimizer.ADAM, Optimizer.KFAC_G, Optimizer.KFAC_F
_L2, _DECOUPLED = DecayType.L2, DecayType.DECOUPLED

# ------------------------------------------------------------------------------ paper 000

BATCH_SIZE_000 = 128
LARGE_BATCH_SIZES_000 = (128, 640, 2000)
# The authors' K-FAC settings, which are tfwd.choices.kfac's defaults.
KFAC_SETTINGS = {"damping": kfac.DAMPING, "momentum": MOMENTUM, "cov_decay": kfac.COV_DECAY,
                 "cov_every": kfac.COV_EVERY, "inv_every": kfac.INV_EVERY}
SGD_MOMENTUM = MOMENTUM
# Retraining split of the paper-scale runs (appendix A: retrain on train + validation).
PAPER_TRAIN_SPLIT = Split.TRAIN_FULL
# model -> model_kwargs at paper scale (ResNet32 is the ×4 widened one, docs/equations.md §9).
PAPER_MODEL_KWARGS = {Architecture.RESNET32: {"width_factor": 4},
                      Architecture.RESNET44: {"width_factor": 1},
                      published.RESNET44_X2: {"width_factor": 2}}
# Paper 000, fig. 5: the authors' MNIST MLP is 784-1000-...-10 (tfwd.models.mlp).
MNIST_MLP_WIDTH_000 = 1000


def schedule_000(optimizer: str, batch_size: int) -> dict:
    """Epochs and step decay of paper 000 appendix A for ``optimizer`` at ``batch_size``."""
    if is_kfac(optimizer):
        return {"epochs": 100, "lr_decay_every_epochs": 40, "lr_decay_factor": 0.1}
    every = 80 if batch_size >= 2000 else 60
    return {"epochs": 200, "lr_decay_every_epochs": every, "lr_decay_factor": 0.1}


def kl_clip_000(optimizer: str, batch_norm: bool) -> float | None:
    """KL clipping bound of the authors' runs without batch norm (docs/equations.md §9)."""
    if batch_norm or not is_kfac(optimizer):
        return None
    return AUTHORS_KL_CLIP[optimizer]


def paper_decay_type(optimizer: str) -> str:
    """The papers' "wd": L2 through momentum for SGD (the authors' code), decoupled otherwise."""
    return _L2 if optimizer == _SGD else _DECOUPLED


def one_pass_batches(dataset: str, split: str, batch_size: int) -> int:
    """Batches in one pass over ``split`` (K-FAC factor initialisation, docs/equations.md §9)."""
    return dataset_info(dataset).split_sizes[split] // batch_size


@dataclasses.dataclass(frozen=True)
class AuthorsSetting:
    """One row of docs/equations.md §9's table of the authors' best hyper-parameters (batch 128)."""

    dataset: str
    model: str
    optimizer: str
    batch_norm: bool
    augment: bool
    learning_rate: float
    decay_type: str
    weight_decay: float
    kl_clip: float | None = None


_CIFAR10, _VGG16, _RESNET32 = Dataset.CIFAR10, Architecture.VGG16, Architecture.RESNET32
AUTHORS_HYPERPARAMETERS = (
    AuthorsSetting(_CIFAR10, _VGG16, _SGD, True, True, 0.1, _L2, 1e-3),
    AuthorsSetting(_CIFAR10, _VGG16, _ADAM, False, False, 3e-4, _DECOUPLED, 0.3),
    AuthorsSetting(_CIFAR10, _VGG16, _KFAC_G, True, False, 0.03, _DECOUPLED, 3e-2),
    # "no BN" (augmentation not stated): read as table 1's first row, no BN and no augmentation.
    AuthorsSetting(_CIFAR10, _VGG16, _KFAC_F, False, False, 1e-3, _DECOUPLED, 1.0, 1e-5),
    AuthorsSetting(_CIFAR10, _RESNET32, _SGD, True, True, 0.01, _L2, 3e-3),
    AuthorsSetting(_CIFAR10, _RESNET32, _KFAC_G, False, False, 0.03, _DECOUPLED, 3e-2, 1e-4),
    AuthorsSetting(_CIFAR10, _RESNET32, _KFAC_F, True, True, 3e-4, _DECOUPLED, 1.0),
    AuthorsSetting(Dataset.CIFAR100, _RESNET32, _KFAC_G, True, True, 0.05, _DECOUPLED, 1e-2),
)


def authors_setting(dataset: str, model: str, optimizer: str, batch_norm: bool,
                    augment: bool) -> AuthorsSetting | None:
    for setting in AUTHORS_HYPERPARAMETERS:
        if (setting.dataset, setting.model, setting.optimizer, setting.batch_norm,
                setting.augment) == (dataset, model, optimizer, batch_norm, augment):
            return setting
    return None


# ------------------------------------------------------------------------------ paper 002

LARGE_BATCH_002 = noise.LARGE_BATCH_SIZE
SMALL_BATCH_002 = noise.SMALL_BATCH_SIZE
GHOST_BATCH_002 = 128
EPOCHS_002 = 200
NOISE_UNTIL_EPOCH_002 = noise.NOISE_UNTIL_EPOCH
WARMUP_EPOCHS_002 = 5.0
SMALL_BATCH_EPOCHS_002 = 50  # BatchChange: 50 SB epochs, then 150 LB epochs
SEEDS_002 = (0, 1, 2)
# Chosen here (not stated in paper 002): see the module docstring.
SGD_SETTINGS_002 = {"optimizer": _SGD, "learning_rate": 0.1, "momentum": MOMENTUM,
                    "weight_decay": 5e-4, "decay_type": _L2}
LR_DECAY_EVERY_EPOCHS_002 = 60

# ------------------------------------------------------------------------------ mnist_paper

# Paper 002 table 1's MNIST rows with every setting above (200 epochs, M_L, M_S, GBN, linear
# scaling with 5 warm-up epochs, noise until epoch 50, ×0.1 every 60, 3 seeds); the paper does
# not give its MLP, so its size is ours: two hidden layers (the smoke scale's depth) as narrow
# as keeps the whole MLP row, grid included, within ~2 CPU-hours (REPRODUCTION.md §1b).
MNIST_PAPER_MLP = {"depth": 2, "width": 64}
# The learning rates searched per regime: ``tfwd.tuning.grid.MNIST_PAPER_LEARNING_RATES``.
# Figure 3's diagnostics recorded by every run at epochs 50 (noise off), 100, 150, 200: their
# cost at every epoch would rival training (REPRODUCTION.md §1b states it).
MNIST_PAPER_DIAGNOSTICS = (Diagnostic.HESSIAN_EIGENVALUE, Diagnostic.FISHER_NORMS,
                           Diagnostic.GRADIENT_VARIANCE)
MNIST_PAPER_DIAGNOSTICS_EVERY_EPOCHS = 50

# ------------------------------------------------------------------------------ small scales


@dataclasses.dataclass(frozen=True)
class SmallSizes:
    """The MNIST stand-ins of a small scale.

    Attributes:
      mlp: model_kwargs of the MLP that replaces VGG/ResNet.
      epochs: training epochs (``Scale.epochs`` overrides).
      batch_size: the papers' batch 128 (paper 000) — also paper 002's M_S and ghost batch.
      batch_sizes_000: paper 000 table 3's 128 / 640 / 2000.
      large_batch: paper 002's M_L = 4096.
      depths: MLP depths of paper 000 fig. 5.
      kfac_init_batches: batches of the K-FAC factor initialisation.
      conv_model: the model standing in for LeNet ("mlp" at tiny scale, where a conv epoch
        over MNIST would take longer than the whole test).
      optimizers: None keeps an entry's whole optimizer list; otherwise a preference order,
        and only the first optimizer of it that the entry's list holds is kept. The tiny scale
        keeps SGD, or KFAC-G in the K-FAC-only entries: enough to run every report's code.
    """

    mlp: dict
    epochs: int
    batch_size: int
    batch_sizes_000: tuple
    large_batch: int
    depths: tuple
    kfac_init_batches: int
    conv_model: str
    optimizers: tuple | None = None


SMALL_SIZES = {
    # The papers' batch sizes.
    ScaleName.SMOKE: SmallSizes(mlp={"depth": 2, "width": 256}, epochs=2,
                                batch_size=BATCH_SIZE_000, batch_sizes_000=LARGE_BATCH_SIZES_000,
                                large_batch=LARGE_BATCH_002, depths=(1, 2, 3),
                                kfac_init_batches=10, conv_model=Architecture.LENET),
    # Two batch sizes in all, so that a test decodes MNIST for as few pipelines as possible.
    ScaleName.TINY: SmallSizes(mlp={"depth": 1, "width": 16}, epochs=1, batch_size=4096,
                               batch_sizes_000=(4096, 8192), large_batch=8192, depths=(1, 2),
                               kfac_init_batches=1, conv_model=Architecture.MLP,
                               optimizers=(_SGD, _KFAC_G)),
}

# Fixed hyper-parameters of the small scales (not tuned; chosen for MNIST MLPs):
# optimizer -> learning rate and γ per decay type. Decoupled SGD γ is 10x the L2 γ (momentum
# 0.9, see tfwd.tuning.grid.PAPER_000_DECAYS).
SMALL_HYPERPARAMETERS = {
    _SGD: {"learning_rate": 0.1, _L2: 1e-3, _DECOUPLED: 1e-2},
    _ADAM: {"learning_rate": 1e-3, _L2: 1e-4, _DECOUPLED: 0.3},
    _KFAC_G: {"learning_rate": 0.03, _L2: 1e-4, _DECOUPLED: 3e-2},
    _KFAC_F: {"learning_rate": 3e-3, _L2: 1e-4, _DECOUPLED: 0.3},
}


def small_sizes(scale: Scale) -> SmallSizes:
    if scale.name not in SMALL_SIZES:
        raise ValueError("small_sizes is for the smoke and tiny scales.")
    return SMALL_SIZES[scale.name]


def optimizers_for(scale: Scale, optimizers: tuple) -> tuple:
    """``optimizers`` at this scale: all of them, except at the tiny scale (``SmallSizes``),
    which keeps the first of its preferences that the list holds (else the list's first)."""
    if scale.is_paper or small_sizes(scale).optimizers is None:
        return tuple(optimizers)
    for preferred in small_sizes(scale).optimizers:
        if preferred in optimizers:
            return (preferred,)
    return tuple(optimizers[:1])


def small_epochs(scale: Scale) -> int:
    return scale.epochs or small_sizes(scale).epochs


def small_phase_epochs(epochs: int) -> int:
    """Paper 002's 50 of 200 epochs (noise phase, BatchChange's SB phase), at least one."""
    return max(1, math.ceil(epochs * NOISE_UNTIL_EPOCH_002 / EPOCHS_002))


def small_warmup_epochs(epochs: int) -> float:
    """Paper 002's 5 of 200 warm-up epochs, but at least one epoch: M_L = 4096 leaves only
    13 steps per MNIST epoch, and a few-step ramp to 32× the small-batch rate derails."""
    return max(1.0, epochs * WARMUP_EPOCHS_002 / EPOCHS_002)


def small_lr_decay_every_epochs(epochs: int) -> int:
    """×0.1 every 60 of 200 epochs, in proportion (at least every epoch): the step decay lets
    the large-batch runs settle, without which their batch-norm moving averages — updated
    only 13 times per MNIST epoch — lag the weights and the test accuracy swings."""
    return max(1, round(epochs * LR_DECAY_EVERY_EPOCHS_002 / EPOCHS_002))


def seeds(scale: Scale, paper_seeds: tuple = (0,)) -> tuple[int, ...]:
    """The seeds of a run: the paper's at the paper scales, else 0..scale.seeds-1 (default
    one)."""
    if scale.name in (ScaleName.PAPER, ScaleName.MNIST_PAPER):
        return tuple(paper_seeds)
    return tuple(range(scale.seeds or 1))
