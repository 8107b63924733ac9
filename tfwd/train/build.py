"""Build a run's pieces from its config: data pipelines, model, optimizer, consumers."""
from __future__ import annotations

import keras

import tfwd.data
import tfwd.models
from tfwd import optimizers
from tfwd.choices.data import Split
from tfwd.choices.optimizers import Optimizer, kfac_curvature
from tfwd.optimizers.damping import DampingAdaptation


def learning_rate_schedule(config, steps_per_epoch: int, small_steps_per_epoch: int):
    """The epoch-based schedule, with batch-size scaling applied to the base rate."""
    base = optimizers.scaled_learning_rate(
        config.learning_rate, config.batch_size, config.base_batch_size, config.lr_scaling
    )
    first_rate = None
    if config.small_batch_epochs:
        first_rate = optimizers.scaled_learning_rate(
            config.learning_rate, config.small_batch_size, config.base_batch_size,
            config.lr_scaling,
        )
    return optimizers.EpochStepDecay(
        base_learning_rate=base,
        steps_per_epoch=steps_per_epoch,
        decay_every_epochs=config.lr_decay_every_epochs,
        decay_factor=config.lr_decay_factor,
        warmup_epochs=config.warmup_epochs,
        first_phase_epochs=config.small_batch_epochs,
        first_phase_steps_per_epoch=small_steps_per_epoch,
        first_phase_learning_rate=first_rate,
    )


def make_optimizer(config, schedule) -> keras.optimizers.Optimizer:
    decay = dict(
        weight_decay=config.weight_decay,
        decay_type=config.decay_type,
        decay_group=config.decay_group,
    )
    if config.optimizer == Optimizer.SGD:
        return optimizers.SGD(schedule, momentum=config.momentum, **decay)
    if config.optimizer == Optimizer.ADAM:
        return optimizers.Adam(schedule, **decay)
    return optimizers.KFAC(
        schedule,
        curvature=kfac_curvature(config.optimizer),
        damping=config.damping,
        momentum=config.momentum,
        cov_decay=config.cov_decay,
        cov_every=config.cov_every,
        inv_every=config.inv_every,
        kl_clip=config.kl_clip,
        gauss_newton_samples=config.gauss_newton_samples,
        seed=config.seed,
        adaptive_damping=DampingAdaptation(
            config.damping_interval, config.damping_decay, config.min_damping,
            config.max_damping) if config.adaptive_damping else None,
        inverse=config.inverse,
        low_rank=config.low_rank,
        **decay,
    )


def make_model(config, info) -> keras.Model:
    return tfwd.models.build(
        config.model,
        input_shape=info.image_shape,
        num_classes=info.num_classes,
        batch_norm=config.batch_norm,
        bn_affine=config.bn_affine,
        ghost_batch_size=config.ghost_batch_size,
        seed=config.seed,
        **config.model_kwargs,
    )


def make_pipelines(config) -> dict:
    """{'train', 'small_train' (batch change only), 'validation', 'test'} pipelines."""
    def pipeline(split, batch_size, training):
        return tfwd.data.input_pipeline(
            config.dataset, split, batch_size=batch_size, seed=config.seed,
            training=training, augment=config.augment and training,
            data_dir=config.data_dir,
        )

    pipelines = {"train": pipeline(config.train_split, config.batch_size, True)}
    if config.small_batch_epochs:
        pipelines["small_train"] = pipeline(config.train_split, config.small_batch_size, True)
    if config.train_split == Split.TRAIN:
        pipelines["validation"] = pipeline(Split.VALIDATION, 1000, False)
    if config.evaluate_test:
        pipelines["test"] = pipeline(Split.TEST, 1000, False)
    return pipelines
