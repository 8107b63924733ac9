"""``train(config, workdir)``: the one training entry point of every launcher, tuner and experiment.

Per epoch: train (Keras ``fit`` with progress bar and TensorBoard, or the custom
``strategy.run`` loop that multi-worker runs need), evaluate validation and test, write
``results.json`` (config, per-epoch losses/accuracies/learning rate/wall time, diagnostics) and
a checkpoint of model + optimizer. A rerun with the same workdir resumes after the last
finished epoch; data order and all sampling are derived from (seed, epoch, step), so a resumed
run computes the same numbers as an uninterrupted one. A partly trained epoch is redone.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfwd.curvature.step import forward_backward, install_train_step
from tfwd.noise import make_noise
from tfwd.train.build import learning_rate_schedule, make_model, make_optimizer, make_pipelines
from tfwd.train.config import TrainConfig
from tfwd.train.files import write_json_atomically
from tfwd.train.strategy import is_chief, make_strategy

RESULTS_FILE = "results.json"


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_evaluator(model):
    """``dataset -> (mean loss, accuracy)`` of ``model`` in inference mode over a finite
    dataset, traced once: a new tf.function per evaluation retraces the model every epoch,
    0.4-1.1 s per validation pass of a small MNIST MLP on a loaded CPU (REPRODUCTION.md §1b)
    against epochs of 1-3 s."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    @tf.function
    def batch_totals(x, y):
        logits = model(x, training=False)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                 tf.cast(y, tf.int32)), tf.float64))
        return tf.cast(loss_fn(y, logits), tf.float64), correct, tf.cast(tf.shape(y)[0], tf.float64)

    def evaluate_dataset(dataset) -> tuple[float, float]:
        totals = np.zeros(3)
        for x, y in dataset:
            totals += [float(t) for t in batch_totals(x, y)]
        return float(totals[0] / totals[2]), float(totals[1] / totals[2])

    return evaluate_dataset


def evaluate(model, dataset) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` in inference mode over a finite dataset (one call;
    repeated evaluations of one model use ``make_evaluator``)."""
    return make_evaluator(model)(dataset)


class _CustomLoop:
    """One epoch of ``strategy.run`` steps; the multi-worker path (Keras fit cannot run there)."""

    def __init__(self, model, optimizer, consumers, strategy):
        self.model, self.optimizer, self.strategy = model, optimizer, strategy

        def replica_step(x, y):
            y_pred, loss, gradients = forward_backward(model, optimizer, consumers, x, y)
            optimizer.apply(gradients, model.trainable_weights)
            correct = tf.reduce_sum(tf.cast(
                tf.equal(tf.argmax(y_pred, -1, output_type=tf.int32), tf.cast(y, tf.int32)),
                tf.float32))
            return loss, correct, tf.cast(tf.shape(y)[0], tf.float32)

        @tf.function
        def step(x, y):
            loss, correct, count = strategy.run(replica_step, args=(x, y))
            # Keras divided each replica's loss by the replica count: the SUM is the mean.
            return (strategy.reduce("SUM", loss, axis=None),
                    strategy.reduce("SUM", correct, axis=None),
                    strategy.reduce("SUM", count, axis=None))

        self.step = step

    def run_epoch(self, dataset, steps, verbose) -> dict:
        progress = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["loss", "accuracy"])
        loss_sum, correct, count = 0.0, 0.0, 0.0
        for index, (x, y) in enumerate(self.strategy.experimental_distribute_dataset(dataset)):
            loss, batch_correct, batch_count = self.step(x, y)
            loss_sum += float(loss)
            correct += float(batch_correct)
            count += float(batch_count)
            progress.update(index + 1, [("loss", loss_sum / (index + 1)), ("accuracy", correct / count)])
        return {"loss": loss_sum / max(steps, 1), "accuracy": correct / max(count, 1.0)}


def _noise_consumer(config, model, steps_per_epoch):
    return make_noise(
        config.noise, model,
        large_batch_size=config.batch_size, small_batch_size=config.small_batch_size,
        steps_per_epoch=steps_per_epoch, noise_until_epoch=config.noise_until_epoch,
        seed=config.seed, multiplicative_std=config.multiplicative_std,
    )


def _diagnostics(callbacks) -> list:
    """Callbacks that report a diagnostic (``diagnostic_name`` + ``history``, tfwd.diagnostics)."""
    return [cb for cb in callbacks if hasattr(cb, "diagnostic_name") and hasattr(cb, "history")]


def train(config: TrainConfig, workdir: str, callbacks=None) -> dict:
    """Train, evaluate and checkpoint one run in ``workdir``; returns the results dict.

    ``callbacks``: extra Keras callbacks (``fit`` loop: passed to fit; custom loop: their
    epoch hooks are called). Those with a ``diagnostic_name`` and a ``history`` (the
    callbacks of ``tfwd.diagnostics``, which builds them from ``config.diagnostics`` in
    ``tfwd.diagnostics.train_with_diagnostics``) are written to results.json under
    ``diagnostics.<name>``. Returns the same dict that is written to results.json.
    """
    config.validate()
    chief = is_chief()
    os.makedirs(workdir, exist_ok=True)
    # Non-chief workers still take part in checkpoint writes (collectives), into a scratch dir.
    write_dir = workdir if chief else tempfile.mkdtemp(prefix="tfwd-worker-")
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()

    strategy = make_strategy(config.strategy, config.num_replicas)
    pipelines = make_pipelines(config)  # fails fast when data is missing
    train_pipe = pipelines["train"]
    small_pipe = pipelines.get("small_train")
    schedule = learning_rate_schedule(
        config, train_pipe.steps_per_epoch, small_pipe.steps_per_epoch if small_pipe else 1
    )
    with strategy.scope():
        model = make_model(config, train_pipe)
        optimizer = make_optimizer(config, schedule)
        model.compile(optimizer=optimizer, loss=_loss(), metrics=["accuracy"])
        consumers = []
        if config.optimizer.startswith("kfac"):
            optimizer.attach(model)
            consumers.append(optimizer)
        else:
            optimizer.build(model.trainable_variables)
        noise = _noise_consumer(config, model, train_pipe.steps_per_epoch)
        if noise is not None:
            consumers.append(noise)
        if consumers:
            install_train_step(model, consumers)
    # Outside the scope: a plain host variable, not a per-replica one.
    epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epochs_done=epochs_done)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(write_dir, "checkpoints"), 2)
    results_path = os.path.join(workdir, RESULTS_FILE)
    results = {"config": config.to_dict(), "epochs": [], "status": "running"}
    extra_callbacks = list(callbacks or [])
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        if os.path.exists(results_path):
            with open(results_path) as f:
                previous = json.load(f)
            results["epochs"] = previous["epochs"][: int(epochs_done)]
            for callback in _diagnostics(extra_callbacks):
                # JSON turned the epoch keys into strings.
                earlier = previous.get("diagnostics", {}).get(callback.diagnostic_name, {})
                callback.history.update(
                    {int(k): v for k, v in earlier.items() if int(k) <= int(epochs_done)})
        # Always said, even at verbose=0: a resumed run must never pass for a fresh one.
        print(f"Resuming {workdir} after epoch {int(epochs_done)}.", flush=True)
    elif config.optimizer.startswith("kfac") and config.kfac_init_batches:
        # The authors initialise the factors with a pass over the training data.
        optimizer.initialize_factors(model, train_pipe.epoch(0), config.kfac_init_batches)

    log_dir = os.path.join(write_dir, "logs")
    if chief:
        config.save(os.path.join(workdir, "config.json"))
    custom = _CustomLoop(model, optimizer, consumers, strategy) if config.loop == "custom" else None
    fit_callbacks = [keras.callbacks.TensorBoard(log_dir=log_dir)] + extra_callbacks
    callback_list = keras.callbacks.CallbackList(extra_callbacks, model=model)
    summary_writer = tf.summary.create_file_writer(os.path.join(log_dir, "epochs"))
    evaluate_model = make_evaluator(model)

    for epoch in range(int(epochs_done), config.epochs):
        pipe = small_pipe if epoch < config.small_batch_epochs else train_pipe
        start = time.time()
        if custom is None:
            history = model.fit(pipe.epoch(epoch), initial_epoch=epoch, epochs=epoch + 1,
                                verbose=config.verbose, callbacks=fit_callbacks, shuffle=False)
            train_metrics = {k: float(v[-1]) for k, v in history.history.items()}
        else:
            if config.verbose:
                print(f"Epoch {epoch + 1}/{config.epochs}")
            callback_list.on_epoch_begin(epoch)
            train_metrics = custom.run_epoch(pipe.epoch(epoch), pipe.steps_per_epoch, config.verbose)
            callback_list.on_epoch_end(epoch, dict(train_metrics))
        train_seconds = time.time() - start
        record = {
            "epoch": epoch + 1,
            "train_loss": train_metrics["loss"],
            "train_accuracy": train_metrics["accuracy"],
            "learning_rate": float(keras.ops.convert_to_numpy(
                schedule(optimizer.iterations - 1))),
            "wall_time_seconds": train_seconds,
        }
        last_epoch = epoch == config.epochs - 1
        for split in ("validation", "test"):
            if split == "test" and not (config.test_every_epoch or last_epoch):
                continue
            if split in pipelines:
                loss, accuracy = evaluate_model(pipelines[split].epoch(0))
                record[f"{split}_loss"], record[f"{split}_accuracy"] = loss, accuracy
        with summary_writer.as_default(step=epoch + 1):
            for key, value in record.items():
                if key != "epoch":
                    tf.summary.scalar(key, value)
        results["epochs"].append(record)
        epochs_done.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
        results["diagnostics"] = {cb.diagnostic_name: cb.history for cb in _diagnostics(extra_callbacks)}
        if chief:
            write_json_atomically(results_path, results, indent=2, sort_keys=True)
        if config.verbose:
            shown = {k: round(v, 4) for k, v in record.items() if k.endswith(("loss", "accuracy"))}
            print(f"epoch {epoch + 1}: {shown}")

    results["status"] = "finished"
    results["final"] = dict(results["epochs"][-1]) if results["epochs"] else {}
    if chief:
        write_json_atomically(results_path, results, indent=2, sort_keys=True)
        model.save(os.path.join(workdir, "model.keras"))
    return results
