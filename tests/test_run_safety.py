"""Runs that never lie: divergence, resume mismatches, corrupt files, fail-fast data and flags.

Pure-Python checks first (seconds); then a few tiny runs on real MNIST, in-process where the
run ends normally, in a subprocess where the process itself has to exit non-zero.
"""
import json
import os
import socket
import subprocess
import sys
import time
import warnings

import keras
import numpy as np
import pytest

from tfwd.train import TrainConfig, train
from tfwd.train import workdir as workdir_lib
from tfwd.train.files import finite_payload, write_json_atomically

TINY = dict(dataset="mnist", model="mlp", model_kwargs={"depth": 1, "width": 16},
            batch_size=1000, verbose=0, seed=0)


def _strict_json(path):
    with open(path) as f:
        text = f.read()

    def refuse(constant):
        raise ValueError(f"{path} holds the non-JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------ JSON and flags


def test_results_json_has_null_for_non_finite_numbers_and_names_them(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomically(str(path), {"epochs": [{"loss": float("nan"), "acc": 0.5}],
                                      "final": {"loss": float("inf")}, "n": 3})
    written = _strict_json(path)
    assert written["epochs"] == [{"loss": None, "acc": 0.5}] and written["final"]["loss"] is None
    assert written["nonfinite_values"] == ["epochs[0].loss", "final.loss"]
    assert "nonfinite_values" not in finite_payload({"a": 1.0})


@pytest.mark.parametrize("field", ["learning_rate", "weight_decay", "damping", "momentum"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_config_rejects_non_finite_numbers(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a finite number"):
        TrainConfig.from_flat(**{field: value}).validate()


def test_launcher_name_lists_agree_with_the_registries():
    import tfwd.diagnostics
    import tfwd.models

    from tfwd.choices.diagnostics import DIAGNOSTIC_NAMES
    from tfwd.choices.models import ARCHITECTURES

    # The TF-free lists the launchers validate against, in the order that seeds diagnostics.
    assert sorted(ARCHITECTURES) == tfwd.models.available()
    assert DIAGNOSTIC_NAMES == tfwd.diagnostics.DIAGNOSTICS


def test_kfac_inverse_and_low_rank_flags_reach_the_optimizer():
    from tfwd.train.build import make_optimizer

    config = TrainConfig.from_flat(optimizer="kfac_g", inverse="eigh", low_rank="never").validate()
    optimizer = make_optimizer(config, 0.1)
    assert (optimizer.block_options.inverse, optimizer.low_rank) == ("eigh", "never")
    with pytest.raises(ValueError, match="inverse='lu' is not one of"):
        TrainConfig.from_flat(inverse="lu").validate()


_FLAG_CHECK = """
import sys
from absl import flags
import tfwd.launch.train as launcher
flags.FLAGS(["train"] + sys.argv[1:])
try:
    launcher.validated_config_or_exit()
except SystemExit as stop:
    print("exit:", stop)
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("flag, named", [
    ("--lr=nan", "--lr must be a finite number"),
    ("--weight_decay=inf", "--weight_decay must be"),
    ("--model=vgg7", "--model='vgg7'"),
    ("--data_dir={tmp}/empty", "python -m tfwd.data.prepare mnist --data_dir={tmp}/empty"),
])
def test_flag_and_data_errors_come_before_tensorflow_is_imported(tmp_path, flag, named):
    output = subprocess.run([sys.executable, "-c", _FLAG_CHECK, f"--workdir={tmp_path}/run",
                             flag.format(tmp=tmp_path)],
                            capture_output=True, text=True, check=True).stdout
    named = named.format(tmp=tmp_path)
    assert named in output and "tensorflow imported: False" in output, output


# ---------------------------------------------------------------------- workdirs


def _fake_run(workdir, **fields):
    """A workdir as train() leaves it after an epoch: config.json, results.json, a checkpoint."""
    config = TrainConfig.from_flat(**{**TINY, **fields})
    os.makedirs(workdir / "checkpoints")
    (workdir / "checkpoints" / "checkpoint").write_text("")
    config.save(workdir / "config.json")
    write_json_atomically(str(workdir / "results.json"),
                          {"config": config.to_dict(), "epochs": [{}], "status": "running"})
    return config


def test_rerun_with_other_settings_is_refused_naming_fields_and_the_way_out(tmp_path):
    _fake_run(tmp_path, learning_rate=0.05)
    with pytest.raises(workdir_lib.WorkdirError) as error:
        workdir_lib.prepare_workdir(TrainConfig.from_flat(**{**TINY, "learning_rate": 0.1,
                                                             "model_kwargs": {"width": 8}}),
                                    str(tmp_path))
    assert "learning_rate: 0.05 -> 0.1" in str(error.value)
    assert "model_kwargs" in str(error.value) and "--overwrite" in str(error.value)


def test_rerun_may_change_epochs_and_cosmetic_fields(tmp_path):
    config = _fake_run(tmp_path, epochs=2)
    workdir_lib.prepare_workdir(config.replace(epochs=5, verbose=2, data_dir="/elsewhere"),
                                str(tmp_path))


def test_a_run_saved_with_the_old_flat_config_resumes_with_the_nested_one(tmp_path):
    from test_config import OLD_FIELDS, OLD_FLAT_CONFIG_JSON

    config = _fake_run(tmp_path, **OLD_FIELDS)
    (tmp_path / "config.json").write_text(OLD_FLAT_CONFIG_JSON)  # as earlier versions wrote it
    workdir_lib.prepare_workdir(config, str(tmp_path))  # no refusal
    (tmp_path / "config.json").unlink()  # then results.json's config is the saved one
    write_json_atomically(str(tmp_path / "results.json"), {
        "config": json.loads(OLD_FLAT_CONFIG_JSON), "epochs": [{}], "status": "running"})
    workdir_lib.prepare_workdir(config.replace(epochs=3), str(tmp_path))
    with pytest.raises(workdir_lib.WorkdirError, match="shard_inverses: True -> False"):
        workdir_lib.prepare_workdir(config.replace(shard_inverses=False), str(tmp_path))
    (tmp_path / "results.json").write_text(json.dumps({"config": {"lr": 0.05}}))
    with pytest.raises(workdir_lib.WorkdirError, match=r"cannot read.*\['lr'\].*--overwrite"):
        workdir_lib.prepare_workdir(config, str(tmp_path))


def test_overwrite_deletes_only_the_runs_files(tmp_path):
    _fake_run(tmp_path, learning_rate=0.05)
    (tmp_path / "notes.txt").write_text("mine")
    workdir_lib.prepare_workdir(TrainConfig.from_flat(**TINY), str(tmp_path), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_unreadable_config_is_refused_naming_the_files(tmp_path):
    _fake_run(tmp_path)
    (tmp_path / "config.json").write_text("{garbage")
    (tmp_path / "results.json").unlink()
    with pytest.raises(workdir_lib.WorkdirError, match="config.json is unreadable.*JSONDecodeError"):
        workdir_lib.prepare_workdir(TrainConfig.from_flat(**TINY), str(tmp_path))


def test_workdir_that_is_a_file_or_cannot_be_created_is_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(workdir_lib.WorkdirError, match="is a file"):
        workdir_lib.check_writable(str(a_file))
    with pytest.raises(workdir_lib.WorkdirError, match="cannot be created"):
        workdir_lib.check_writable(str(a_file / "below"))
    with pytest.raises(workdir_lib.WorkdirError, match="not writable"):
        workdir_lib.check_writable("/proc/self")  # read-only even for root


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("name, hint", [("mnist", "python -m tfwd.data.prepare mnist"),
                                        ("cifar10", "tfds build cifar10")])
def test_missing_offline_data_fails_at_once_without_a_download(tmp_path, monkeypatch, name, hint):
    from tfwd.data import sources

    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(sources.DataNotFoundError) as error:
        sources.find_builder(name, str(tmp_path), download=True)
    assert hint in str(error.value) and str(tmp_path) in str(error.value)
    assert error.value.__cause__ is None  # raised before a download, not after its failure


def test_decoded_split_cache_is_used_only_while_the_files_are_unchanged(tmp_path):
    from tfwd.data import decoded

    records = tmp_path / "toy-train.tfrecord-00000-of-00001"
    records.write_bytes(b"one")
    arrays = {"image": np.arange(12, dtype=np.uint8).reshape(3, 2, 2, 1), "label": np.arange(3)}
    assert decoded.load(tmp_path, "toy", "train") is None
    decoded.save(tmp_path, "toy", "train", arrays)
    loaded = decoded.load(tmp_path, "toy", "train")
    assert set(loaded) == {"image", "label"}
    np.testing.assert_array_equal(loaded["image"], arrays["image"])
    records.write_bytes(b"re-prepared")  # another size: the cache no longer describes the files
    assert decoded.load(tmp_path, "toy", "train") is None
    assert decoded.load(tmp_path, "toy", "test") is None  # no files of that split


# -------------------------------------------------------------------- tiny runs


def _launch(workdir, *flags):
    command = [sys.executable, "-m", "tfwd.launch.train", f"--workdir={workdir}",
               "--dataset=mnist", "--model=mlp", "--depth=1", "--width=16", "--epochs=1",
               "--batch_size=1000", "--verbose=0", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_diverging_run_exits_non_zero_with_valid_results_and_refuses_other_flags(tmp_path):
    diverged = _launch(tmp_path, "--optimizer=sgd", "--lr=1e6")
    assert diverged.returncode == 3, diverged.stdout + diverged.stderr
    assert "training diverged at epoch 1, step" in diverged.stderr
    assert "Likely fix: lower --lr" in diverged.stderr
    results = _strict_json(tmp_path / "results.json")
    assert results["status"] == "diverged" and results["epochs"] == []
    assert results["divergence"]["epoch"] == 1
    assert 1 <= results["divergence"]["step"] <= 55  # 55 steps per epoch at batch 1000
    assert not os.path.exists(tmp_path / "model.keras")
    refused = _launch(tmp_path, "--optimizer=sgd", "--lr=0.1")  # before TensorFlow: fast
    assert refused.returncode == 1 and "learning_rate: 1000000.0 -> 0.1" in refused.stderr


def test_kfac_divergence_between_inverse_steps_is_caught_in_the_custom_loop(tmp_path):
    config = TrainConfig.from_flat(**{**TINY, "epochs": 1}, optimizer="kfac_g",
                                   learning_rate=100.0, inv_every=1000, kfac_init_batches=1,
                                   loop="custom")
    results = train(config, str(tmp_path))
    assert results["status"] == "diverged"
    assert results["divergence"]["global_step"] < 1000  # before K-FAC's next inverse step
    assert "raise --damping" in results["divergence"]["message"]


def test_corrupt_newest_checkpoint_and_results_fall_back_and_rebuild(tmp_path):
    config = TrainConfig.from_flat(**{**TINY, "epochs": 2}, optimizer="sgd", learning_rate=0.1)
    first = train(config, str(tmp_path))
    logs = os.listdir(tmp_path / "logs" / "epochs")
    assert len(logs) == 1  # one TensorBoard event file for the whole run
    for record in first["epochs"]:
        assert 0 < record["step_seconds"] <= record["wall_time_seconds"]
        assert record["evaluation_seconds"] > 0
    # The process's CPU time when the run's first step began: recorded, and not later than now.
    assert 0 < first["timing"]["cpu_seconds_to_first_step"] <= time.process_time()
    newest = tmp_path / "checkpoints" / "ckpt-2.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[:100])  # a crash mid-write
    (tmp_path / "results.json").write_text('{"epochs": [')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train(config.replace(epochs=3), str(tmp_path))
    messages = [str(w.message) for w in caught]
    assert any("ckpt-2" in m and "ckpt-1" in m for m in messages), messages
    assert any("results.json is unreadable" in m and "rebuilt" in m for m in messages), messages
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3]
    assert resumed["epochs"][0] == first["epochs"][0]  # the history before the bad checkpoint
    # Epoch 2 was redone from epoch 1's checkpoint: the same numbers as the first time.
    assert resumed["epochs"][1]["train_loss"] == pytest.approx(first["epochs"][1]["train_loss"],
                                                               rel=1e-6)
    assert _strict_json(tmp_path / "results.json")["status"] == "finished"
