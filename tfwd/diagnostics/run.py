"""``train_with_diagnostics``: ``tfwd.train.train`` plus the diagnostics a config names.

Diagnostics sit above training (STYLE rule 1), so this is where a config's
``diagnostics`` names and ``weight_norm_reference`` become callbacks. Launchers, the tuner
and experiments call it instead of ``train``.
"""
from __future__ import annotations

import os

import tfwd.data
from tfwd.choices.data import Split
from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.layers import LAYER_GROUPS
from tfwd.diagnostics.norm_transfer import WeightNormTransfer
from tfwd.diagnostics.registry import build_callbacks
from tfwd.train import TrainConfig, train


def _first_examples(config: TrainConfig, split: str, training: bool, count: int | None):
    """The first ``count`` examples (None: all) of epoch 0 of ``split`` as one (x, y) batch."""
    pipeline = tfwd.data.input_pipeline(
        config.data.dataset, split, batch_size=config.schedule.batch_size,
        seed=config.runtime.seed, training=training, data_dir=config.data.data_dir, drop_remainder=False,
    )
    batches = pipeline.epoch(0)
    if count is not None:
        batches = batches.unbatch().take(count).batch(count)
    else:
        batches = batches.unbatch().batch(1 << 30)
    return next(iter(batches))


def diagnostic_callbacks(config: TrainConfig, workdir: str) -> list:
    """The callbacks for ``config.diagnostics.names`` (fixed sample batches) and norm transfer."""
    callbacks = []
    if config.diagnostics.names:
        held_out = Split.TEST if config.data.evaluate_test else Split.VALIDATION
        sample = config.diagnostics.sample_size
        # hessian_eigenvalue fits its temperature on the whole held-out split (paper 002).
        held_out_count = None if Diagnostic.HESSIAN_EIGENVALUE in config.diagnostics.names else sample
        callbacks += build_callbacks(
            list(config.diagnostics.names),
            train_batch=_first_examples(config, config.data.train_split, True, sample),
            test_batch=_first_examples(config, held_out, False, held_out_count),
            log_dir=os.path.join(workdir, "logs"),
            seed=config.runtime.seed,
            damping=config.optimizer.kfac.damping,
            sample_size=sample,
            every_epochs=config.diagnostics.every_epochs,
            total_epochs=config.schedule.epochs,
        )
    reference = config.diagnostics.weight_norm_reference
    if reference:
        layers = config.diagnostics.weight_norm_layers
        if layers not in LAYER_GROUPS:
            layers = [name.strip() for name in layers.split(",") if name.strip()]
        callbacks.append(WeightNormTransfer(reference, layers=layers))
    return callbacks


def train_with_diagnostics(config: TrainConfig, workdir: str, callbacks=None) -> dict:
    """``train(config, workdir)`` with the diagnostics callbacks of ``config`` added."""
    config.validate()
    return train(config, workdir, list(callbacks or []) + diagnostic_callbacks(config, workdir))
