"""How paper 002's entries train: its regimes and the run policy ``run_002``.

Regimes (``REGIMES``; labels as in the paper's tables): SB = batch M_S = 128; LB = batch
M_L = 4096; "+GBN" = ghost batch norm of 128; Trace / Diag-F / K-FAC / Multiplicative = that
curvature noise (``tfwd.noise``) added to the large-batch gradient until epoch 50; BatchChange =
50 SB epochs, then LB. LB regimes of the tables scale the learning rate linearly (square
root in table 3) with warm-up; figure 3 (a-c) gives every regime the same learning rate
("for a fair comparison") and no ghost batch norm.
"""
from __future__ import annotations

import dataclasses

from tfwd.choices.data import Dataset, Split
from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.models import Architecture
from tfwd.choices.noise import NoiseKind
from tfwd.choices.regimes import RegimeName
from tfwd.choices.scales import ScaleName
from tfwd.choices.schedules import LearningRateScaling
from tfwd.data.catalog import dataset_info
from tfwd.experiments import published, settings
from tfwd.experiments.spec import Run, RunKey, Scale
from tfwd.train import TrainConfig
from tfwd.tuning import grid as grids


@dataclasses.dataclass(frozen=True)
class Regime:
    """How a regime trains: large batch?, ghost BN?, which noise, same LR as SB?, BatchChange?"""

    large_batch: bool
    ghost: bool = False
    noise: str = NoiseKind.NONE
    same_learning_rate: bool = False
    batch_change: bool = False


_R = RegimeName
REGIMES = {
    _R.SB: Regime(large_batch=False),
    _R.LB_GBN: Regime(large_batch=True, ghost=True),
    _R.TRACE: Regime(large_batch=True, ghost=True, noise=NoiseKind.TRACE),
    _R.DIAG_F: Regime(large_batch=True, ghost=True, noise=NoiseKind.DIAG_FISHER),
    _R.KFAC: Regime(large_batch=True, ghost=True, noise=NoiseKind.KFAC),
    _R.MULTIPLICATIVE: Regime(large_batch=True, ghost=True, noise=NoiseKind.MULTIPLICATIVE),
    _R.BATCH_CHANGE: Regime(large_batch=True, ghost=True, batch_change=True),
    # Figure 3 (a-c): one learning rate for all, no ghost batch norm.
    _R.LB: Regime(large_batch=True, same_learning_rate=True),
    _R.FULL_F: Regime(large_batch=True, noise=NoiseKind.FULL_FISHER, same_learning_rate=True),
    _R.DIAG_F_PLAIN: Regime(large_batch=True, noise=NoiseKind.DIAG_FISHER, same_learning_rate=True),
    _R.KFAC_PLAIN: Regime(large_batch=True, noise=NoiseKind.KFAC, same_learning_rate=True),
}
# Every table run also serves figure 3d.
TABLE_DIAGNOSTICS = (Diagnostic.HESSIAN_EIGENVALUE,)
DEFAULT_LR_SCALING = LearningRateScaling.LINEAR
SMALL_TABLE1_ROWS = ((Dataset.MNIST, Architecture.MLP), (Dataset.MNIST, Architecture.LENET))
SMALL_CIFAR_STAND_IN = ((Dataset.MNIST, Architecture.MLP),)


def run_key(row: tuple, regime: str, lr_scaling: str = DEFAULT_LR_SCALING,
            panel: str | None = None) -> RunKey:
    """The key of ``row`` = (dataset, network) in ``regime``; ``panel``: e.g. ``"abc"``."""
    return RunKey(panel=panel, setting="/".join(row), regime=regime,
                  lr_scaling=None if lr_scaling == DEFAULT_LR_SCALING else lr_scaling)


def rows(scale: Scale, paper_rows, small_rows) -> list[tuple]:
    """The (dataset, network) rows of a table at ``scale``: the paper's, the small scales'
    MNIST stand-ins, or at the mnist_paper scale the paper's MNIST rows (``scale.networks``)."""
    if scale.is_paper:
        return list(paper_rows)
    if scale.name == ScaleName.MNIST_PAPER:
        return [row for row in paper_rows if row[0] == Dataset.MNIST
                and (scale.networks is None or row[1] in scale.networks)]
    return list(small_rows)


def _paper_model(model: str) -> tuple[str, dict]:
    """'resnet44x2' -> ('resnet44', {'width_factor': 2}); others with their paper kwargs."""
    base = Architecture.RESNET44 if model == published.RESNET44_X2 else model
    return base, dict(settings.PAPER_MODEL_KWARGS.get(model, {}))


@dataclasses.dataclass(frozen=True)
class _Sizes:
    """Batches, epochs and phases of a scale (paper 002 §4 or its small-scale stand-in)."""

    small: int
    large: int
    ghost: int
    epochs: int
    phase: int
    warmup: float
    batch_change_epochs: int


PAPER_SIZES = _Sizes(settings.SMALL_BATCH_002, settings.LARGE_BATCH_002,
                     settings.GHOST_BATCH_002, settings.EPOCHS_002,
                     settings.NOISE_UNTIL_EPOCH_002, settings.WARMUP_EPOCHS_002,
                     settings.SMALL_BATCH_EPOCHS_002)


def _small_sizes(scale: Scale) -> _Sizes:
    sizes = settings.small_sizes(scale)
    epochs = settings.small_epochs(scale)
    phase = settings.small_phase_epochs(epochs)
    return _Sizes(sizes.batch_size, sizes.large_batch, sizes.batch_size, epochs, phase,
                  settings.small_warmup_epochs(epochs),
                  min(phase, epochs - 1))  # at least one large-batch epoch


def _paper_fields(scale: Scale, row: tuple) -> tuple[dict, dict | None]:
    """(data and network fields, search grid) at the paper and mnist_paper scales."""
    dataset, model = row
    fields = {"lr_decay_every_epochs": settings.LR_DECAY_EVERY_EPOCHS_002}
    if scale.is_paper:
        model_name, kwargs = _paper_model(model)
        fields.update(dataset=dataset, model=model_name, model_kwargs=kwargs,
                      augment=dataset_info(dataset).augmentable,
                      train_split=settings.PAPER_TRAIN_SPLIT)
        return fields, None
    fields.update(_mnist_paper_fields(model))
    return fields, {"learning_rate": grids.MNIST_PAPER_LEARNING_RATES}


def _small_fields(scale: Scale, row: tuple, epochs: int) -> dict:
    """The small scales' MNIST network standing in for the row's."""
    sizes = settings.small_sizes(scale)
    trained = sizes.conv_model if row[1] == Architecture.LENET else Architecture.MLP
    return dict(dataset=Dataset.MNIST, model=trained,
                model_kwargs=dict(sizes.mlp) if trained == Architecture.MLP else {},
                augment=False, train_split=Split.TRAIN,
                lr_decay_every_epochs=settings.small_lr_decay_every_epochs(epochs))


def _mnist_paper_fields(model: str) -> dict:
    """The mnist_paper scale's network, data and diagnostics: seeds train on ``train`` so that
    the held-out split that chose their learning rate is also reported (test once, at the
    end), and figure 3's diagnostics are recorded sparsely (``settings``)."""
    return dict(dataset=Dataset.MNIST, model=model,
                model_kwargs=dict(settings.MNIST_PAPER_MLP) if model == Architecture.MLP else {},
                augment=False, train_split=Split.TRAIN, test_every_epoch=False,
                diagnostics=list(settings.MNIST_PAPER_DIAGNOSTICS),
                diagnostics_every_epochs=settings.MNIST_PAPER_DIAGNOSTICS_EVERY_EPOCHS)


def _regime_fields(spec: Regime, sizes: _Sizes, lr_scaling: str) -> dict:
    """Batch, ghost batch norm, learning-rate rule and BatchChange of the regime."""
    fields = dict(epochs=sizes.epochs, small_batch_size=sizes.small,
                  noise_until_epoch=sizes.phase, base_batch_size=sizes.small,
                  evaluate_test=True, batch_size=sizes.large if spec.large_batch else sizes.small)
    if spec.large_batch and not spec.same_learning_rate:
        fields.update(lr_scaling=lr_scaling, warmup_epochs=sizes.warmup)
    if spec.ghost:
        fields["ghost_batch_size"] = sizes.ghost
    if spec.batch_change:
        fields["small_batch_epochs"] = sizes.batch_change_epochs
    return fields


def run_002(scale: Scale, row: tuple, regime: str, *, lr_scaling: str = DEFAULT_LR_SCALING,
            diagnostics: tuple = TABLE_DIAGNOSTICS, panel: str | None = None) -> Run:
    """One run of paper 002: ``row`` = (dataset, model) of the paper's tables (at small scales
    the MNIST row whose model is trained: "mlp", or "lenet" — an MLP at tiny scale)."""
    spec = REGIMES[regime]
    fields = dict(settings.SGD_SETTINGS_002, batch_norm=True, bn_affine=False,
                  noise=spec.noise, diagnostics=list(diagnostics), verbose=0)
    search = None
    if scale.name in (ScaleName.PAPER, ScaleName.MNIST_PAPER):
        sizes = PAPER_SIZES
        scaled, search = _paper_fields(scale, row)
        seeds = settings.seeds(scale, settings.SEEDS_002)
    else:
        sizes = _small_sizes(scale)
        scaled = _small_fields(scale, row, sizes.epochs)
        seeds = settings.seeds(scale)
    fields.update(scaled)
    fields.update(_regime_fields(spec, sizes, lr_scaling))
    return Run(run_key(row, regime, lr_scaling, panel), TrainConfig.from_flat(fields),
               seeds=seeds, search=search, search_once=search is not None)
