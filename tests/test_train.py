"""End-to-end checks of train(config, workdir) and the launcher on real MNIST (few, small)."""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from tfwd.launch import train as launcher
from tfwd.train import TrainConfig, TrainStep, train

TINY_MLP = {"depth": 1, "width": 32}


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def test_one_epoch_mlp_on_real_mnist_reaches_95_percent(tmp_path):
    config = TrainConfig.from_flat(dataset="mnist", model="mlp",
                                   model_kwargs={"depth": 2, "width": 256}, optimizer="sgd",
                                   learning_rate=0.1, momentum=0.9, weight_decay=5e-4,
                                   epochs=1, batch_size=128, seed=0, verbose=0)
    results = train(config, str(tmp_path))
    final = results["final"]
    assert final["test_accuracy"] >= 0.95
    on_disk = _results(tmp_path)
    assert on_disk["status"] == "finished"
    assert on_disk["config"]["optimizer"]["name"] == "sgd"  # saved nested, read back whole
    assert TrainConfig.from_dict(on_disk["config"]) == config
    for key in ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy",
                "test_loss", "test_accuracy", "learning_rate", "wall_time_seconds"):
        assert np.isfinite(on_disk["epochs"][0][key]), key
    assert os.path.exists(tmp_path / "model.keras")
    assert os.listdir(tmp_path / "logs")  # TensorBoard event files


def _launch(workdir, epochs):
    command = [sys.executable, "-m", "tfwd.launch.train", f"--workdir={workdir}",
               "--dataset=mnist", "--model=mlp", "--depth=1", "--width=32", "--optimizer=kfac_g",
               "--lr=0.01", "--kl_clip=1e-3", "--weight_decay=1e-3", f"--epochs={epochs}",
               "--batch_size=500", "--cov_every=5", "--inv_every=20", "--kfac_init_batches=2",
               "--seed=3", "--verbose=0"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_from_its_last_checkpoint_with_the_same_numbers(tmp_path):
    interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
    process = _launch(interrupted, epochs=3)
    deadline = time.time() + 600
    while time.time() < deadline:  # kill once the first epoch is on disk
        if os.path.exists(interrupted / "results.json") and _results(interrupted)["epochs"]:
            break
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _results(interrupted)["status"] == "running"
    done_before_kill = len(_results(interrupted)["epochs"])
    assert done_before_kill < 3

    resumed = _launch(interrupted, epochs=3)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert f"Resuming {interrupted} after epoch {done_before_kill}" in output
    assert output.strip().splitlines()[-1].startswith("test_accuracy=")

    reference = _launch(uninterrupted, epochs=3)
    reference_output, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, reference_output
    got, expected = _results(interrupted), _results(uninterrupted)
    assert [e["epoch"] for e in got["epochs"]] == [1, 2, 3]
    for a, b in zip(got["epochs"], expected["epochs"]):
        for key in ("train_loss", "test_loss", "test_accuracy", "validation_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key


@pytest.mark.parametrize("flag_values, named", [
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": 0.0}, "--lr"),
    ({"model": "vgg7"}, "--model"),
    ({"diagnostics": ["jacobian_norm", "nonsense"]}, "--diagnostics"),
    ({"augment": True}, "augment"),
    ({"noise": "diag_fisher", "batch_size": 64, "small_batch_size": 128}, "small_batch_size"),
    ({"adaptive_damping": True, "optimizer": "sgd"}, "adaptive_damping"),
    ({"adaptive_damping": True, "optimizer": "kfac_g", "damping_decay": 1.5}, "damping_decay"),
    ({"adaptive_damping": True, "optimizer": "kfac_g", "damping_interval": 0},
     "damping_interval"),
    ({"adaptive_damping": True, "optimizer": "kfac_f", "max_damping": 1e-4}, "max_damping"),
])
def test_launcher_rejects_bad_values_naming_the_flag(tmp_path, flag_values, named):
    with flagsaver.flagsaver(workdir=str(tmp_path), **flag_values):
        with pytest.raises(SystemExit) as error:
            launcher.validated_config_or_exit()
    assert named in str(error.value)


def test_launcher_enum_flags_reject_unknown_values():
    with pytest.raises(flags.IllegalFlagValueError, match="optimizer"):
        flags.FLAGS["optimizer"].parse("rmsprop")


def test_every_config_field_is_a_flag_of_its_flat_name():
    from tfwd.train.config import FLAT_FIELDS

    # --lr sets learning_rate; --depth, --width, ... fill model_kwargs; evaluate_test is set
    # by the tuner's protocol, not by a flag.
    assert set(FLAT_FIELDS) - {"learning_rate", "model_kwargs", "evaluate_test"} \
        <= set(flags.FLAGS)


@pytest.mark.parametrize("flag_values, sharded", [({}, True), ({"shard_inverses": False}, False)])
def test_shard_inverses_flag_reaches_the_optimizer(flag_values, sharded):
    from tfwd.train.build import make_optimizer

    with flagsaver.flagsaver(optimizer="kfac_g", **flag_values):
        config = launcher.config_from_flags().validate()
    assert config.optimizer.kfac.shard_inverses is sharded
    assert make_optimizer(config, 0.1).shard_inverses is sharded


def _mnist_like(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(96, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 96)


def test_kfac_keras_file_reload_continues_training_exactly(tmp_path):
    import tfwd.models
    import tfwd.optimizers

    x, y = _mnist_like(0)
    model = tfwd.models.build("mlp", input_shape=(28, 28, 1), num_classes=10, batch_norm=False,
                              depth=1, width=16, seed=0)
    optimizer = tfwd.optimizers.KFAC(0.01, cov_every=2, inv_every=3, kl_clip=1e-3,
                                     weight_decay=1e-3, seed=5)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    optimizer.attach(model)
    TrainStep(model).install()
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "kfac.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.optimizer, tfwd.optimizers.KFAC)
    reloaded.optimizer.attach(reloaded)
    TrainStep(reloaded).install()
    for a, b in zip(optimizer.variables, reloaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for m in (model, reloaded):  # 3 more steps: statistics, inverses and momentum all matter
        m.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.trainable_weights, reloaded.trainable_weights):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7)


def test_large_batch_recipes_run_through_train(tmp_path):
    # Batch change (1 epoch at 128, then 1024), ghost BN, sqrt LR scaling with warm-up and
    # diagonal-Fisher noise, all at once, through the custom strategy.run loop.
    config = TrainConfig.from_flat(dataset="mnist", model="mlp", model_kwargs=TINY_MLP, batch_norm=True,
                                   ghost_batch_size=128, optimizer="sgd", learning_rate=0.05,
                                   batch_size=1024, small_batch_size=128, small_batch_epochs=1,
                                   noise="diag_fisher", noise_until_epoch=1, lr_scaling="sqrt",
                                   warmup_epochs=0.5, epochs=2, loop="custom", seed=0, verbose=0)
    results = train(config, str(tmp_path))
    first, second = results["epochs"]
    # The recorded LR is the rate of each epoch's last step: √(128/128)·0.05, then √(1024/128)·0.05.
    assert first["learning_rate"] == pytest.approx(0.05, rel=1e-5)
    assert second["learning_rate"] == pytest.approx(0.05 * np.sqrt(1024 / 128), rel=1e-5)
    assert second["test_accuracy"] > 0.5


def test_launcher_trains_with_two_worker_processes(tmp_path):
    from test_distributed import _free_ports

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "tfwd.launch.train", f"--workdir={tmp_path}",
             "--strategy=multi_worker", "--loop=custom", "--optimizer=kfac_g", "--lr=0.01",
             "--kl_clip=1e-3", "--model=mlp", "--depth=1", "--width=32", "--epochs=1",
             "--batch_size=1000", "--kfac_init_batches=2", "--verbose=0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    # Both workers hold the same model, so they report the same accuracy; only the chief writes.
    last_lines = [output.strip().splitlines()[-1] for output in outputs]
    assert last_lines[0] == last_lines[1] and last_lines[0].startswith("test_accuracy=")
    assert _results(tmp_path)["status"] == "finished"
