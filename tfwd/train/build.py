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
    schedule, base_rate = config.schedule, config.optimizer.learning_rate
    base = optimizers.scaled_learning_rate(
        base_rate, schedule.batch_size, schedule.base_batch_size, schedule.lr_scaling
    )
    first_rate = None
    if schedule.small_batch_epochs:
        first_rate = optimizers.scaled_learning_rate(
            base_rate, schedule.small_batch_size, schedule.base_batch_size, schedule.lr_scaling,
        )
    return optimizers.EpochStepDecay(
        base_learning_rate=base,
        steps_per_epoch=steps_per_epoch,
        decay_every_epochs=schedule.lr_decay_every_epochs,
        decay_factor=schedule.lr_decay_factor,
        warmup_epochs=schedule.warmup_epochs,
        first_phase_epochs=schedule.small_batch_epochs,
        first_phase_steps_per_epoch=small_steps_per_epoch,
        first_phase_learning_rate=first_rate,
    )


def make_optimizer(config, schedule) -> keras.optimizers.Optimizer:
    """The optimizer of ``config.optimizer.name``, K-FAC's options from ``.optimizer.kfac``."""
    name, momentum = config.optimizer.name, config.optimizer.momentum
    decay = dict(
        weight_decay=config.optimizer.weight_decay,
        decay_type=config.optimizer.decay_type,
        decay_group=config.optimizer.decay_group,
    )
    if name == Optimizer.SGD:
        return optimizers.SGD(schedule, momentum=momentum, **decay)
    if name == Optimizer.ADAM:
        return optimizers.Adam(schedule, **decay)
    kfac = config.optimizer.kfac
    adaptation = kfac.adaptive_damping
    return optimizers.KFAC(
        schedule,
        curvature=kfac_curvature(name),
        damping=kfac.damping,
        momentum=momentum,
        cov_decay=kfac.cov_decay,
        cov_every=kfac.cov_every,
        inv_every=kfac.inv_every,
        kl_clip=kfac.kl_clip,
        gauss_newton_samples=kfac.gauss_newton_samples,
        seed=config.runtime.seed,
        adaptive_damping=DampingAdaptation(
            adaptation.interval, adaptation.decay, adaptation.min_damping,
            adaptation.max_damping) if adaptation.enabled else None,
        inverse=kfac.inverse,
        low_rank=kfac.low_rank,
        shard_inverses=kfac.shard_inverses,
        **decay,
    )


def make_model(config, info) -> keras.Model:
    return tfwd.models.build(
        config.model.name,
        input_shape=info.image_shape,
        num_classes=info.num_classes,
        batch_norm=config.model.batch_norm,
        bn_affine=config.model.bn_affine,
        ghost_batch_size=config.model.ghost_batch_size,
        seed=config.runtime.seed,
        **config.model.kwargs,
    )


# The training pipelines of make_pipelines: the run's batches, and the batch change's first
# phase at small_batch_size (the evaluation pipelines are keyed by their Split).
TRAIN_PIPELINE, SMALL_BATCH_PIPELINE = "train", "small_train"


def make_pipelines(config) -> dict:
    """{'train', 'small_train' (batch change only), 'validation', 'test'} pipelines."""
    def pipeline(split, batch_size, training):
        return tfwd.data.input_pipeline(
            config.data.dataset, split, batch_size=batch_size, seed=config.runtime.seed,
            training=training, augment=config.data.augment and training,
            data_dir=config.data.data_dir,
        )

    pipelines = {TRAIN_PIPELINE: pipeline(config.data.train_split, config.schedule.batch_size, True)}
    if config.schedule.small_batch_epochs:
        pipelines[SMALL_BATCH_PIPELINE] = pipeline(config.data.train_split,
                                            config.schedule.small_batch_size, True)
    if config.data.train_split == Split.TRAIN:
        pipelines[Split.VALIDATION] = pipeline(Split.VALIDATION, 1000, False)
    if config.data.evaluate_test:
        pipelines[Split.TEST] = pipeline(Split.TEST, 1000, False)
    return pipelines
