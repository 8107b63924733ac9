"""Train one model from the shell: absl flags → TrainConfig → tfwd.train.train.

    python -m tfwd.launch.train --workdir=runs/mnist_kfac --dataset=mnist --model=mlp \\
        --optimizer=kfac_g --weight_decay=3e-2 --decay_type=decoupled --epochs=5 --lr=0.03

``--flagfile=FILE`` reads flags from a file. Bad values, and a ``--workdir`` that is not a
writable directory or holds a run with another config, stop the run with exit status 1 before
TensorFlow is imported, with a message naming the flag. The last line printed is
``test_accuracy=<value>`` (or ``validation_accuracy=<value>`` when the test set is not
evaluated). A run that diverges exits with status 3 after writing results.json.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from tfwd.choices.data import DATASETS, TRAIN_SPLITS
from tfwd.choices.decay import DECAY_GROUPS, DECAY_TYPES
from tfwd.choices.kfac import EXACT_GAUSS_NEWTON, INVERSE_METHODS, LOW_RANK_MODES
from tfwd.choices.noise import NOISE_KINDS
from tfwd.choices.optimizers import OPTIMIZERS
from tfwd.choices.runtime import DTYPE_POLICIES, LOOPS, STRATEGIES, Strategy
from tfwd.choices.schedules import LR_SCALINGS
from tfwd.data import availability, locations
from tfwd.train import config as config_lib
from tfwd.train import workdir as workdir_lib

FLAGS = flags.FLAGS
_DEFAULTS = config_lib.TrainConfig()

flags.DEFINE_string("workdir", None, "Directory for results.json, checkpoints, logs, model.")
flags.DEFINE_bool("overwrite", False, "Delete the run already in --workdir and start over "
                  "(without it, a rerun resumes that run, or is refused if its config differs).")
flags.DEFINE_enum("dataset", _DEFAULTS.data.dataset, DATASETS, "Dataset.")
flags.DEFINE_string("model", _DEFAULTS.model.name, "Model name from tfwd.models.available().")
flags.DEFINE_integer("depth", None, "MLP: number of hidden layers; transformer: encoder blocks.")
flags.DEFINE_integer("width", None, "MLP: hidden width; transformer: token width d_model.")
flags.DEFINE_integer("num_heads", None, "Transformer: attention heads per block.")
flags.DEFINE_integer("mlp_width", None, "Transformer: hidden width of each block's MLP.")
flags.DEFINE_integer("width_factor", None, "ResNet: width multiplier.")
flags.DEFINE_bool("batch_norm", _DEFAULTS.model.batch_norm,
                  "Batch norm after each conv/dense layer.")
flags.DEFINE_bool("bn_affine", _DEFAULTS.model.bn_affine, "Batch norm with gamma/beta.")
flags.DEFINE_integer("ghost_batch_size", None, "Ghost batch norm virtual batch size.")
flags.DEFINE_bool("augment", _DEFAULTS.data.augment, "CIFAR crop+flip augmentation.")
flags.DEFINE_enum("train_split", _DEFAULTS.data.train_split, TRAIN_SPLITS,
                  "train (held-out 5k excluded) or train_full (retraining).")
flags.DEFINE_bool("test_every_epoch", _DEFAULTS.data.test_every_epoch,
                  "Evaluate the test set after every epoch (--notest_every_epoch: only after the last).")
flags.DEFINE_enum("optimizer", _DEFAULTS.optimizer.name, OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("lr", _DEFAULTS.optimizer.learning_rate,
                   "Base learning rate (at base_batch_size).")
flags.DEFINE_float("momentum", _DEFAULTS.optimizer.momentum, "Momentum (SGD and K-FAC).")
flags.DEFINE_float("weight_decay", _DEFAULTS.optimizer.weight_decay, "Weight decay γ.")
flags.DEFINE_enum("decay_type", _DEFAULTS.optimizer.decay_type, DECAY_TYPES, "Decay form.")
flags.DEFINE_enum("decay_group", _DEFAULTS.optimizer.decay_group, DECAY_GROUPS,
                  "Layers that decay.")
flags.DEFINE_integer("epochs", _DEFAULTS.schedule.epochs, "Epochs.")
flags.DEFINE_integer("batch_size", _DEFAULTS.schedule.batch_size, "Global batch size.")
flags.DEFINE_integer("lr_decay_every_epochs", _DEFAULTS.schedule.lr_decay_every_epochs,
                     "Multiply the LR by lr_decay_factor every N epochs (0: never).")
flags.DEFINE_float("lr_decay_factor", _DEFAULTS.schedule.lr_decay_factor, "Step-decay factor.")
flags.DEFINE_float("warmup_epochs", _DEFAULTS.schedule.warmup_epochs, "Linear warm-up epochs.")
flags.DEFINE_enum("lr_scaling", _DEFAULTS.schedule.lr_scaling, LR_SCALINGS,
                  "Scale lr from base_batch_size to batch_size.")
flags.DEFINE_integer("base_batch_size", _DEFAULTS.schedule.base_batch_size, "Batch size lr refers to.")
flags.DEFINE_float("damping", _DEFAULTS.optimizer.kfac.damping, "K-FAC damping λ.")
flags.DEFINE_float("kl_clip", _DEFAULTS.optimizer.kfac.kl_clip,
                   "K-FAC KL clipping bound (unset: off).")
flags.DEFINE_bool("adaptive_damping", _DEFAULTS.optimizer.kfac.adaptive_damping.enabled,
                  "K-FAC: adapt --damping (the initial λ) by the Levenberg-Marquardt rule "
                  "(Martens & Grosse 2015 §6.5; tfwd.optimizers.damping).")
flags.DEFINE_integer("damping_interval", _DEFAULTS.optimizer.kfac.adaptive_damping.interval,
                     "Adaptive damping: steps between adaptations (T1).")
flags.DEFINE_float("damping_decay", _DEFAULTS.optimizer.kfac.adaptive_damping.decay,
                   "Adaptive damping: λ is scaled by ω = decay**interval or 1/ω.")
flags.DEFINE_float("min_damping", _DEFAULTS.optimizer.kfac.adaptive_damping.min_damping,
                   "Adaptive damping: lower bound on λ.")
flags.DEFINE_float("max_damping", _DEFAULTS.optimizer.kfac.adaptive_damping.max_damping,
                   "Adaptive damping: upper bound on λ.")
flags.DEFINE_float("cov_decay", _DEFAULTS.optimizer.kfac.cov_decay,
                   "K-FAC factor moving-average decay.")
flags.DEFINE_integer("cov_every", _DEFAULTS.optimizer.kfac.cov_every,
                     "K-FAC statistics period (steps).")
flags.DEFINE_integer("inv_every", _DEFAULTS.optimizer.kfac.inv_every,
                     "K-FAC inverse period (steps).")
flags.DEFINE_integer("gauss_newton_samples", _DEFAULTS.optimizer.kfac.gauss_newton_samples,
                     "KFAC-G Rademacher vectors per statistics step; 0: the exact Gauss-Newton "
                     "factors (one backward pass per class).")
flags.DEFINE_integer("kfac_init_batches", _DEFAULTS.optimizer.kfac.init_batches,
                     "Batches used to initialise K-FAC factors.")
flags.DEFINE_enum("inverse", _DEFAULTS.optimizer.kfac.inverse, INVERSE_METHODS,
                  "How K-FAC inverts its damped factors: cholesky (fast) or eigh.")
flags.DEFINE_enum("low_rank", _DEFAULTS.optimizer.kfac.low_rank, LOW_RANK_MODES,
                  "K-FAC Dense layers: precondition the gradient through its per-example "
                  "factors when cheaper (auto), never or always.")
flags.DEFINE_bool("shard_inverses", _DEFAULTS.optimizer.kfac.shard_inverses,
                  "K-FAC under a multi-replica strategy: each replica inverts a share of the "
                  "blocks and the inverses are exchanged (--noshard_inverses: every replica "
                  "inverts every block; docs/equations.md §4.8).")
flags.DEFINE_enum("noise", _DEFAULTS.noise.kind, NOISE_KINDS, "Curvature noise kind.")
flags.DEFINE_integer("small_batch_size", _DEFAULTS.schedule.small_batch_size,
                     "Small batch M_S the noise imitates (and of the batch-change phase).")
flags.DEFINE_integer("noise_until_epoch", _DEFAULTS.noise.until_epoch, "Noise off after it.")
flags.DEFINE_float("multiplicative_std", _DEFAULTS.noise.multiplicative_std,
                   "σ of multiplicative noise.")
flags.DEFINE_integer("small_batch_epochs", _DEFAULTS.schedule.small_batch_epochs,
                     "Batch change: epochs at small_batch_size before the large batch.")
flags.DEFINE_list("diagnostics", [], "Diagnostics to record (tfwd.diagnostics names), e.g. "
                  "effective_lr,jacobian_norm,gauss_newton_norm.")
flags.DEFINE_integer("diagnostics_every_epochs", _DEFAULTS.diagnostics.every_epochs,
                     "Measure the diagnostics every N epochs (and after the last).")
flags.DEFINE_integer("diagnostics_sample_size", _DEFAULTS.diagnostics.sample_size,
                     "Training examples the diagnostics measure on (and held-out examples of "
                     "generalization_gap; hessian_eigenvalue's temperature fit uses the whole "
                     "held-out split).")
flags.DEFINE_string("weight_norm_reference", None, "results.json of a run whose recorded "
                    "weight_norms this run's layers are rescaled to after every epoch (fig. 4).")
flags.DEFINE_string("weight_norm_layers", _DEFAULTS.diagnostics.weight_norm_layers,
                    "Layers for --weight_norm_reference: conv, "
                    "all, dense, normalized or comma-separated names.")
flags.DEFINE_enum("strategy", _DEFAULTS.runtime.strategy, STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_integer("num_replicas", _DEFAULTS.runtime.num_replicas, "Replicas for mirrored.")
flags.DEFINE_enum("loop", _DEFAULTS.runtime.loop, LOOPS, "Keras fit or custom strategy.run.")
flags.DEFINE_enum("dtype_policy", _DEFAULTS.runtime.dtype_policy, DTYPE_POLICIES,
                  "Keras dtype policy: float32, float64 or mixed precision (float32 variables).")
flags.DEFINE_integer("seed", _DEFAULTS.runtime.seed, "Seed of everything random.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default $TFWD_DATA_DIR or "
                    "~/tensorflow_datasets).")
flags.DEFINE_integer("verbose", _DEFAULTS.runtime.verbose, "Keras verbosity (0, 1, 2).")

DIVERGED_EXIT_STATUS = 3
# --gauss_newton_samples=0 spells TrainConfig's gauss_newton_samples=None, the exact factors
# (an integer flag cannot be unset); negative values reach TrainConfig.validate, which refuses them.
EXACT_GAUSS_NEWTON_FLAG = 0
# Flags that are not spelled as the TrainConfig field's flat name.
_RENAMED = {"lr": "learning_rate"}
_MODEL_KWARGS = ("depth", "width", "width_factor", "num_heads", "mlp_width")


def config_from_flags() -> config_lib.TrainConfig:
    values = {}
    for field in config_lib.FLAT_FIELDS:
        flag = next((f for f, target in _RENAMED.items() if target == field), field)
        if flag in FLAGS:
            values[field] = FLAGS[flag].value
    values["model_kwargs"] = {k: FLAGS[k].value for k in _MODEL_KWARGS if FLAGS[k].value is not None}
    values["diagnostics"] = list(FLAGS.diagnostics)
    if values.get("gauss_newton_samples") == EXACT_GAUSS_NEWTON_FLAG:
        values["gauss_newton_samples"] = EXACT_GAUSS_NEWTON
    return config_lib.TrainConfig.from_flat(values)


def checked_config_or_exit() -> config_lib.TrainConfig:
    """The config from the flags, or exit 1 naming the offending flag (before TF is imported).

    Also exits when the dataset is neither prepared in --data_dir nor downloadable.
    """
    try:
        config = config_from_flags().validate()
    except ValueError as error:
        message = str(error)
        for flag, field in _RENAMED.items():
            message = message.replace(field, flag)
        sys.exit(f"error: invalid flags: --{message}")
    try:
        availability.check_available(config.data.dataset,
                                     locations.resolve_data_dir(config.data.data_dir))
    except availability.DataNotFoundError as error:
        sys.exit(f"error: --dataset={config.data.dataset}: {error}")
    return config


def validated_config_or_exit() -> config_lib.TrainConfig:
    """``checked_config_or_exit`` plus a --workdir that can hold this run (else exit 1)."""
    if not FLAGS.workdir:
        sys.exit("error: --workdir is required.")
    config = checked_config_or_exit()
    try:
        workdir_lib.prepare_workdir(config, FLAGS.workdir, overwrite=FLAGS.overwrite)
    except workdir_lib.WorkdirError as error:
        sys.exit(f"error: --workdir: {error}")
    return config


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TFDS logs every split it opens at INFO
    config = validated_config_or_exit()
    from tfwd.diagnostics import train_with_diagnostics
    from tfwd.train import configure_cpu_devices

    if config.runtime.strategy == Strategy.MIRRORED:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            configure_cpu_devices(config.runtime.num_replicas)
    results = train_with_diagnostics(config, FLAGS.workdir)
    if results["status"] == "diverged":
        print(f"error: {results['divergence']['message']}", file=sys.stderr)
        sys.exit(DIVERGED_EXIT_STATUS)
    final = results["final"]
    key = "test_accuracy" if "test_accuracy" in final else "validation_accuracy"
    print(f"{key}={final.get(key, float('nan')):.4f}")


if __name__ == "__main__":
    app.run(main)
