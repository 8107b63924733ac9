"""How paper 000's entries train: the setups of its tables and the run policy ``run_000``.

``run_000`` builds every run of these entries, so that two entries asking for the same training
get the same configuration (and the runner trains it once): e.g. table 1's SGD runs with and
without decay are also figure 3's effective-learning-rate runs and figure 4's reference.

Decay names (``RunKey.decay``): ``none``; ``wd`` = the paper's decay (L2 through momentum for
SGD as in the authors' code, decoupled for Adam and K-FAC, docs/equations.md §2); ``l2``;
``decoupled``; ``top``/``rest``/``all`` = the paper's decay on that layer group (figs. 2, 6).
"""
from __future__ import annotations

import dataclasses

from tfwd.choices.data import Dataset, Split
from tfwd.choices.decay import DECAY_TYPES, DecayGroup, DecayType
from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.layers import WEIGHT_NORM_LAYERS
from tfwd.choices.models import Architecture
from tfwd.choices.optimizers import is_kfac
from tfwd.choices.schedules import LearningRateScaling
from tfwd.experiments import settings
from tfwd.experiments.spec import Run, RunKey, Scale
from tfwd.train import TrainConfig
from tfwd.tuning import grid as grids

BN_DIAGNOSTICS = (Diagnostic.EFFECTIVE_LR, Diagnostic.WEIGHT_NORMS)
KFAC_BN_DIAGNOSTICS = BN_DIAGNOSTICS + (Diagnostic.EFFECTIVE_DAMPING,)
JACOBIAN_DIAGNOSTICS = (Diagnostic.JACOBIAN_NORM, Diagnostic.KFAC_GAUSS_NEWTON_NORM,
                        Diagnostic.GENERALIZATION_GAP)
# Decay names (module docstring) of "no decay" and "the paper's decay".
NO_DECAY, PAPER_DECAY = "none", "wd"
DECAYS = (NO_DECAY, PAPER_DECAY)  # without and with the paper's decay


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """Data, network, batch norm and augmentation of a row of the paper's tables."""

    dataset: str
    model: str
    batch_norm: bool
    augment: bool
    model_kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        """``RunKey.setting``, e.g. ``cifar10/resnet32(width_factor=4)/bn+aug``."""
        kwargs = ",".join(f"{k}={v}" for k, v in sorted(self.model_kwargs.items()))
        extras = "+".join(name for name, on in (("bn", self.batch_norm), ("aug", self.augment))
                          if on) or "plain"
        return f"{self.dataset}/{self.model}{f'({kwargs})' if kwargs else ''}/{extras}"

    @property
    def published_key(self) -> tuple:
        return (self.dataset, self.model, self.batch_norm, self.augment)


def run_key(setup: Setup, optimizer: str, decay: str | None = None,
            batch_size: int | None = None) -> RunKey:
    """The key of the run of ``setup`` with ``optimizer`` (and ``decay``, ``batch_size``)."""
    return RunKey(setting=setup.label, optimizer=optimizer, decay=decay, batch_size=batch_size)


def paper_setup(dataset: str, model: str, batch_norm: bool, augment: bool) -> Setup:
    return Setup(dataset, model, batch_norm, augment,
                 dict(settings.PAPER_MODEL_KWARGS.get(model, {})))


VGG16_PLAIN = paper_setup(Dataset.CIFAR10, Architecture.VGG16, False, False)
VGG16_BN_AUG = paper_setup(Dataset.CIFAR10, Architecture.VGG16, True, True)
RESNET32_PLAIN = paper_setup(Dataset.CIFAR10, Architecture.RESNET32, False, False)
RESNET32_BN_AUG = paper_setup(Dataset.CIFAR10, Architecture.RESNET32, True, True)


def small_setup(scale: Scale, batch_norm: bool, depth: int | None = None) -> Setup:
    """The MNIST MLP standing in for a paper setup at the smoke/tiny scales."""
    kwargs = dict(settings.small_sizes(scale).mlp)
    if depth is not None:
        kwargs["depth"] = depth
    return Setup(Dataset.MNIST, Architecture.MLP, batch_norm, False, kwargs)


def scaled_setups(scale: Scale, paper_setups) -> list[tuple[Setup, Setup]]:
    """[(setup to train, paper setup it stands for)]: the paper's at paper scale, else one
    MNIST MLP per batch-norm setting, standing for the first paper setup of that setting —
    with augmentation when BN is on (the papers' headline BN + augmentation rows)."""
    if scale.is_paper:
        return [(setup, setup) for setup in paper_setups]
    chosen = {}
    for setup in paper_setups:
        current = chosen.get(setup.batch_norm)
        if current is None or (setup.batch_norm and setup.augment and not current[1].augment):
            chosen[setup.batch_norm] = (small_setup(scale, setup.batch_norm), setup)
    return [chosen[bn] for bn in sorted(chosen)]


def bn_setup(scale: Scale) -> Setup:
    """The BN network of figures 3, 4 and 7 (VGG16 with BN and augmentation at paper scale)."""
    return scaled_setups(scale, (VGG16_BN_AUG,))[0][0]


def family_diagnostics(optimizer: str, batch_norm: bool) -> tuple:
    """What every run records by default: the effective LR and weight norms (figs. 3-4),
    plus the effective damping for K-FAC (fig. 7), in BN networks; the Jacobian, K-FAC GN
    norm and generalization gap (fig. 5, table 2) without BN."""
    if batch_norm:
        return KFAC_BN_DIAGNOSTICS if is_kfac(optimizer) else BN_DIAGNOSTICS
    return JACOBIAN_DIAGNOSTICS


def _decay_type(optimizer: str, decay: str) -> str | None:
    if decay == NO_DECAY:
        return None
    if decay == PAPER_DECAY:
        return settings.paper_decay_type(optimizer)
    if decay in DECAY_TYPES:
        return decay
    raise ValueError(f"decay {decay!r} is not one of {DECAYS + DECAY_TYPES}.")


def _middle(values: tuple) -> float:
    return values[len(values) // 2]


def _common_fields(setup: Setup, optimizer: str, decay_type: str | None, decay_group: str,
                   diagnostics: tuple | None) -> dict:
    """The TrainConfig fields every scale shares: data, network, optimizer, decay."""
    fields = dict(
        dataset=setup.dataset, model=setup.model, model_kwargs=dict(setup.model_kwargs),
        batch_norm=setup.batch_norm, augment=setup.augment, optimizer=optimizer,
        decay_type=decay_type or DecayType.DECOUPLED,
        decay_group=decay_group if decay_type else DecayGroup.ALL,
        diagnostics=list(family_diagnostics(optimizer, setup.batch_norm)
                         if diagnostics is None else diagnostics),
        momentum=settings.SGD_MOMENTUM, verbose=0,
    )
    if is_kfac(optimizer):
        fields.update(settings.KFAC_SETTINGS,
                      kl_clip=settings.kl_clip_000(optimizer, setup.batch_norm))
    return fields


def _paper_hyperparameters(setup: Setup, optimizer: str, decay_type: str | None, batch: int,
                           searchable: bool) -> tuple[dict, dict | None]:
    """(learning rate and γ fields, search grid or None) at paper scale: the authors' values
    where docs/equations.md §9 lists them for this decay form at batch 128, otherwise
    ``tfwd.tuning.grid.paper_000_grid`` (its middle, or the authors' values, as the starting point)."""
    authors = settings.authors_setting(setup.dataset, setup.model, optimizer,
                                       setup.batch_norm, setup.augment)
    same_decay = authors is not None and authors.decay_type == decay_type
    if same_decay and batch == settings.BATCH_SIZE_000:
        return {"learning_rate": authors.learning_rate,
                "weight_decay": authors.weight_decay}, None
    if not searchable:
        return {}, None
    search = grids.paper_000_grid(optimizer, decay_type)
    fields = {"learning_rate": (authors.learning_rate if authors
                                else _middle(search["learning_rate"]))}
    if decay_type:
        fields["weight_decay"] = (authors.weight_decay if same_decay
                                  else _middle(search["weight_decay"]))
    return fields, search


def _paper_fields(setup: Setup, optimizer: str, decay_type: str | None,
                  batch_size: int | None, searchable: bool) -> tuple[dict, int, dict | None]:
    """(fields, base batch, search grid) of paper 000 appendix A for this run."""
    batch = batch_size or settings.BATCH_SIZE_000
    fields = dict(settings.schedule_000(optimizer, batch), batch_size=batch,
                  train_split=settings.PAPER_TRAIN_SPLIT, evaluate_test=True)
    if is_kfac(optimizer):
        fields["kfac_init_batches"] = settings.one_pass_batches(
            setup.dataset, settings.PAPER_TRAIN_SPLIT, batch)
    hyperparameters, search = _paper_hyperparameters(setup, optimizer, decay_type, batch,
                                                     searchable)
    fields.update(hyperparameters)
    return fields, settings.BATCH_SIZE_000, search


def _small_fields(scale: Scale, optimizer: str, decay_type: str | None,
                  batch_size: int | None) -> tuple[dict, int]:
    """(fields, base batch) of the small scales: ``settings.SMALL_HYPERPARAMETERS``."""
    sizes = settings.small_sizes(scale)
    hyper = settings.SMALL_HYPERPARAMETERS[optimizer]
    fields = dict(epochs=settings.small_epochs(scale), batch_size=batch_size or sizes.batch_size,
                  learning_rate=hyper["learning_rate"], train_split=Split.TRAIN,
                  evaluate_test=True)
    if decay_type:
        fields["weight_decay"] = hyper[decay_type]
    if is_kfac(optimizer):
        fields["kfac_init_batches"] = sizes.kfac_init_batches
    return fields, sizes.batch_size


def _transfer_fields(transfer_from: Run, decay_type: str | None, layers: str) -> dict:
    """Figure 4: the decayed run's learning rate (and γ, for decay on the top layer)."""
    fields = {"learning_rate": transfer_from.config.optimizer.learning_rate,
              "weight_norm_layers": layers}
    if decay_type:
        fields["weight_decay"] = transfer_from.config.optimizer.weight_decay
    return fields


def run_000(scale: Scale, key: RunKey, setup: Setup, optimizer: str, decay: str = PAPER_DECAY,
            *, decay_group: str = DecayGroup.ALL, batch_size: int | None = None,
            diagnostics: tuple | None = None, constant_lr: bool = False,
            transfer_from: Run | None = None, transfer_layers: str = WEIGHT_NORM_LAYERS) -> Run:
    """One run of paper 000 at ``scale`` (module docstring for ``decay``).

    Paper scale: appendix A's schedule for the optimizer and batch; the authors' learning
    rate and γ where docs/equations.md §9 lists them for this (data, model, optimizer, BN,
    augmentation, decay form) at batch 128, otherwise ``tfwd.tuning.grid.paper_000_grid`` with
    retraining on train + validation. ``batch_size`` other than 128 rescales the searched
    rates by √(B/128). Small scales: ``settings.SMALL_HYPERPARAMETERS``, no LR decay.
    ``transfer_from``: the decayed run whose weight norms this run copies after every epoch
    (fig. 4); it takes that run's learning rate (and γ, for decay on the top layer).
    """
    decay_type = _decay_type(optimizer, decay)
    fields = _common_fields(setup, optimizer, decay_type, decay_group, diagnostics)
    search = None
    if scale.is_paper:
        scaled, base_batch, search = _paper_fields(setup, optimizer, decay_type, batch_size,
                                                   searchable=transfer_from is None)
    else:
        scaled, base_batch = _small_fields(scale, optimizer, decay_type, batch_size)
    fields.update(scaled)
    if fields["batch_size"] != base_batch:
        fields.update(lr_scaling=LearningRateScaling.SQRT, base_batch_size=base_batch)
    if constant_lr:
        fields["lr_decay_every_epochs"] = 0
    if transfer_from is not None:
        fields.update(_transfer_fields(transfer_from, decay_type, transfer_layers))
    return Run(key, TrainConfig.from_flat(fields), seeds=settings.seeds(scale), search=search,
               reference=None if transfer_from is None else transfer_from.key)
