"""TrainConfig: nested parts, one flat vocabulary, both saved forms read back (pure Python)."""
import json

import pytest

from tfwd.train.config import FLAT_FIELDS, TrainConfig

# config.json as tfwd wrote it before the config had parts (flat, and without shard_inverses):
# TrainConfig(dataset="mnist", model="mlp", model_kwargs={"depth": 1, "width": 16},
# batch_size=1000, verbose=0, seed=0, learning_rate=0.05, optimizer="kfac_g").
OLD_FLAT_CONFIG_JSON = """{
  "adaptive_damping": false, "augment": false, "base_batch_size": 128, "batch_norm": false,
  "batch_size": 1000, "bn_affine": false, "cov_decay": 0.95, "cov_every": 10, "damping": 0.001,
  "damping_decay": 0.95, "damping_interval": 5, "data_dir": null, "dataset": "mnist",
  "decay_group": "all", "decay_type": "decoupled", "diagnostics": [],
  "diagnostics_every_epochs": 1, "diagnostics_sample_size": 256, "dtype_policy": "float32",
  "epochs": 10, "evaluate_test": true, "gauss_newton_samples": 1, "ghost_batch_size": null,
  "inv_every": 100, "inverse": "cholesky", "kfac_init_batches": 10, "kl_clip": null,
  "learning_rate": 0.05, "loop": "fit", "low_rank": "auto", "lr_decay_every_epochs": 0,
  "lr_decay_factor": 0.1, "lr_scaling": "none", "max_damping": 100.0, "min_damping": 1e-08,
  "model": "mlp", "model_kwargs": {"depth": 1, "width": 16}, "momentum": 0.9,
  "multiplicative_std": 0.1, "noise": "none", "noise_until_epoch": 50, "num_replicas": 1,
  "optimizer": "kfac_g", "seed": 0, "small_batch_epochs": 0, "small_batch_size": 128,
  "strategy": "default", "test_every_epoch": true, "train_split": "train", "verbose": 0,
  "warmup_epochs": 0.0, "weight_decay": 0.0, "weight_norm_layers": "conv",
  "weight_norm_reference": null
}"""
OLD_FIELDS = dict(dataset="mnist", model="mlp", model_kwargs={"depth": 1, "width": 16},
                  batch_size=1000, verbose=0, seed=0, learning_rate=0.05, optimizer="kfac_g")


def test_flat_names_are_the_old_fields_plus_shard_inverses():
    assert set(FLAT_FIELDS) == set(json.loads(OLD_FLAT_CONFIG_JSON)) | {"shard_inverses"}
    assert FLAT_FIELDS["kfac_init_batches"] == ("optimizer", "kfac", "init_batches")
    assert FLAT_FIELDS["damping_interval"] == ("optimizer", "kfac", "adaptive_damping",
                                               "interval")


def test_an_old_flat_config_reads_as_the_same_config_with_the_new_defaults():
    config = TrainConfig.from_dict(json.loads(OLD_FLAT_CONFIG_JSON))
    assert config == TrainConfig.from_flat(OLD_FIELDS)
    assert (config.optimizer.name, config.optimizer.learning_rate) == ("kfac_g", 0.05)
    assert config.model.kwargs == {"depth": 1, "width": 16}
    assert config.optimizer.kfac.shard_inverses is True  # as KFAC() without the argument


def test_the_nested_form_is_saved_and_read_back(tmp_path):
    config = TrainConfig.from_flat(OLD_FIELDS, shard_inverses=False, damping_interval=3)
    config.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["optimizer"]["kfac"] == {
        "damping": 0.001, "kl_clip": None, "cov_decay": 0.95, "cov_every": 10, "inv_every": 100,
        "gauss_newton_samples": 1, "init_batches": 10, "inverse": "cholesky", "low_rank": "auto",
        "shard_inverses": False,
        "adaptive_damping": {"enabled": False, "interval": 3, "decay": 0.95,
                             "min_damping": 1e-8, "max_damping": 100.0}}
    assert saved["runtime"]["seed"] == 0 and saved["schedule"]["batch_size"] == 1000
    assert TrainConfig.from_dict(saved) == config


@pytest.mark.parametrize("values, unknown", [
    ({"learning_rat": 0.1}, "['learning_rat']"),
    ({"optimizer": {"kfac": {"dampng": 1e-3}}}, "['optimizer.kfac.dampng']"),
    ({"data": {"dataset": "mnist"}, "seed": 1}, "['seed']"),  # the two forms mixed
    ({"runtime": 3, "model": {"name": "mlp"}}, "['runtime']"),
])
def test_anything_else_is_refused_naming_the_unknown_fields(values, unknown):
    with pytest.raises(ValueError, match=r"Unknown TrainConfig fields " + unknown.replace(
            "[", r"\[").replace("]", r"\]")):
        TrainConfig.from_dict(values)


def test_replace_takes_flat_names_and_leaves_the_original():
    config = TrainConfig.from_flat(OLD_FIELDS)
    changed = config.replace(seed=3, damping=1e-2, model_kwargs={"depth": 2})
    assert (changed.runtime.seed, changed.optimizer.kfac.damping) == (3, 1e-2)
    assert changed.model.kwargs == {"depth": 2} and changed.optimizer.name == "kfac_g"
    assert (config.runtime.seed, config.optimizer.kfac.damping) == (0, 1e-3)
    assert config.flat()["model_kwargs"] == {"depth": 1, "width": 16}
    with pytest.raises(ValueError, match="Unknown TrainConfig fields"):
        config.replace(sed=3)


def test_each_part_checks_its_fields_and_errors_name_the_flag():
    with pytest.raises(ValueError, match="kfac_init_batches must be >= 0"):
        TrainConfig.from_flat(kfac_init_batches=-1).validate()
    with pytest.raises(ValueError, match="diagnostics_sample_size must be > 0"):
        TrainConfig.from_flat(diagnostics_sample_size=0).validate()
    with pytest.raises(ValueError, match="noise='loud' is not one of"):
        TrainConfig.from_flat(noise="loud").validate()
    # Across parts: the noise's small batch against the schedule's batch.
    with pytest.raises(ValueError, match="small_batch_size=256 exceeds batch_size=128"):
        TrainConfig.from_flat(noise="trace", small_batch_size=256).validate()
    TrainConfig.from_flat(noise="none", small_batch_size=256).validate()
