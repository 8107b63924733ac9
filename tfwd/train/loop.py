"""``train(config, workdir)``: the one training entry point of every launcher, tuner and experiment.

Per epoch: train (Keras ``fit`` with progress bar and TensorBoard, or the custom
``strategy.run`` loop that multi-worker runs need), evaluate validation and test, write
``results.json`` (config, per-epoch losses/accuracies/learning rate/wall time, diagnostics) and
a checkpoint of model + optimizer (+ the history, ``tfwd.train.resume``). A rerun with the same
workdir and config resumes after the last finished epoch (``tfwd.train.workdir`` refuses
another config); data order and all sampling are derived from (seed, epoch, step), so a
resumed run computes the same numbers as an uninterrupted one. A partly trained epoch is
redone. A non-finite loss or update stops the run with status "diverged"
(``tfwd.train.divergence``).
"""
from __future__ import annotations

import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfwd.choices.optimizers import is_kfac
from tfwd.noise import make_noise
from tfwd.train.build import learning_rate_schedule, make_model, make_optimizer, make_pipelines
from tfwd.train.config import TrainConfig
from tfwd.train import divergence, resume, timing
from tfwd.train.files import write_json_atomically
from tfwd.train.precision import dtype_policy
from tfwd.train.step import TrainStep
from tfwd.train.strategy import is_chief, make_strategy
from tfwd.train.workdir import RESULTS_FILE, prepare_workdir


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

    def __init__(self, train_step: TrainStep, strategy, monitor):
        self.strategy, self.monitor = strategy, monitor

        def replica_step(x, y):
            y_pred, loss = train_step.replica_step(x, y)
            monitor.record(loss)
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
            if (index + 1) % divergence.DIVERGENCE_CHECK_STEPS == 0 and self.monitor.diverged_at():
                break
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


def _steps_done(optimizer) -> int:
    # int() of a Keras variable fails when it holds a MirroredVariable (multi-device runs).
    return int(keras.ops.convert_to_numpy(keras.ops.convert_to_tensor(optimizer.iterations)))


def _divergence(config, monitor, optimizer, train_metrics, failure, epoch, first_step):
    """results.json's ``divergence`` entry after an epoch's training, or None if all is finite."""
    global_step = monitor.diverged_at()
    if global_step is not None:
        cause = "the loss or the weights became non-finite (NaN or infinity)"
    elif failure is not None:
        global_step, cause = _steps_done(optimizer), failure
    elif not all(np.isfinite(v) for v in train_metrics.values()):
        global_step, cause = _steps_done(optimizer), "the epoch's training metrics are not finite"
    else:
        state = divergence.nonfinite_optimizer_state(optimizer)
        if not state:
            return None
        global_step, cause = _steps_done(optimizer), f"optimizer variables {state} are not finite"
    return divergence.divergence_record(config, epoch=epoch + 1, step=global_step - first_step,
                                        global_step=global_step, cause=cause)


def _timing(started, step_timer) -> dict:
    """results.json's ``timing``: the run's start and first step (``time.time()``) and more."""
    return {"started": started, "first_step_started": step_timer.first_step_started,
            "first_step_seconds": step_timer.first_step_seconds,
            "cpu_seconds_to_first_step": step_timer.cpu_seconds_to_first_step}


def train(config: TrainConfig, workdir: str, callbacks=None, overwrite: bool = False) -> dict:
    """Train, evaluate and checkpoint one run in ``workdir``; returns the results dict.

    The run builds and trains under ``config.dtype_policy`` (``tfwd.train.precision``); the
    previous Keras policy and floatx are restored afterwards.

    ``callbacks``: extra Keras callbacks (``fit`` loop: passed to fit; custom loop: their
    epoch hooks are called). Those with a ``diagnostic_name`` and a ``history`` (the
    callbacks of ``tfwd.diagnostics``, which builds them from ``config.diagnostics`` in
    ``tfwd.diagnostics.train_with_diagnostics``) are written to results.json under
    ``diagnostics.<name>``. Returns the same dict that is written to results.json; its
    ``status`` is "finished" or "diverged" (then ``divergence`` says where and what to try).
    ``overwrite`` deletes a previous run in ``workdir``; without it a run with another config
    there is refused (``tfwd.train.workdir.WorkdirError``) before any work.
    """
    config.validate()
    with dtype_policy(config.dtype_policy):
        return _train(config, workdir, callbacks, overwrite)


def _train(config: TrainConfig, workdir: str, callbacks, overwrite: bool) -> dict:
    chief = is_chief()
    prepare_workdir(config, workdir, overwrite)
    started = time.time()
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
        if is_kfac(config.optimizer):
            optimizer.attach(model)
        if not model.optimizer.built:
            # Under mixed_float16 model.optimizer is Keras's LossScaleOptimizer around ours.
            # Its variables must exist before a multi-replica step is traced: created inside
            # the custom loop's strategy.run they fail it ("You must feed a value for
            # placeholder tensor").
            model.optimizer.build(model.trainable_variables)
        noise = _noise_consumer(config, model, train_pipe.steps_per_epoch)
        train_step = TrainStep(model, [noise] if noise is not None else [])
        if train_step.consumers or train_step.curvature_optimizer is not None:
            train_step.install()
    monitor = divergence.DivergenceMonitor(model)
    monitor.install()
    # Outside the scope: plain host variables, not per-replica ones.
    epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
    history_store = resume.history_variable()

    # model.optimizer: under mixed_float16 the LossScaleOptimizer, whose loss scale resumes too.
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     epochs_done=epochs_done, history=history_store)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(write_dir, "checkpoints"), 2)
    results_path = os.path.join(workdir, RESULTS_FILE)
    results = {"config": config.to_dict(), "epochs": [], "status": "running"}
    extra_callbacks = list(callbacks or [])
    if resume.restore_newest_readable(checkpoint, manager):
        previous = resume.restored_history(history_store, results_path, int(epochs_done))
        results["epochs"] = previous["epochs"]
        for callback in _diagnostics(extra_callbacks):
            # JSON turned the epoch keys into strings.
            earlier = previous["diagnostics"].get(callback.diagnostic_name, {})
            callback.history.update(
                {int(k): v for k, v in earlier.items() if int(k) <= int(epochs_done)})
        # Always said, even at verbose=0: a resumed run must never pass for a fresh one.
        print(f"Resuming {workdir} after epoch {int(epochs_done)}.", flush=True)
    elif is_kfac(config.optimizer) and config.kfac_init_batches:
        # The authors initialise the factors with a pass over the training data.
        optimizer.initialize_factors(model, train_pipe.epoch(0), config.kfac_init_batches)

    log_dir = os.path.join(write_dir, "logs")
    if chief:
        config.save(os.path.join(workdir, "config.json"))
    custom = _CustomLoop(train_step, strategy, monitor) if config.loop == "custom" else None
    step_timer = timing.StepTimer()
    fit_callbacks = [step_timer, divergence.DivergenceCallback(monitor)] + extra_callbacks
    callback_list = keras.callbacks.CallbackList(extra_callbacks, model=model)
    # TensorBoard: this one writer, for the whole run, gets every epoch's record. (Keras's
    # TensorBoard callback, built per fit call, cost ~37 s per epoch and one file per epoch.)
    summary_writer = tf.summary.create_file_writer(os.path.join(log_dir, "epochs"))
    evaluate_model = make_evaluator(model)

    for epoch in range(int(epochs_done), config.epochs):
        pipe = small_pipe if epoch < config.small_batch_epochs else train_pipe
        start, first_step = time.time(), _steps_done(optimizer)
        try:
            if custom is None:
                history = model.fit(pipe.epoch(epoch), initial_epoch=epoch, epochs=epoch + 1,
                                    verbose=config.verbose, callbacks=fit_callbacks, shuffle=False)
                train_metrics = {k: float(v[-1]) for k, v in history.history.items()}
            else:
                if config.verbose:
                    print(f"Epoch {epoch + 1}/{config.epochs}")
                callback_list.on_epoch_begin(epoch)
                train_metrics = custom.run_epoch(pipe.epoch(epoch), pipe.steps_per_epoch,
                                                 config.verbose)
                callback_list.on_epoch_end(epoch, dict(train_metrics))
            failure = None
        except tf.errors.InvalidArgumentError as error:
            if not divergence.is_kfac_factor_error(error):
                raise
            failure, train_metrics = str(error).split("\n")[0], {}
        diverged = _divergence(config, monitor, optimizer, train_metrics, failure, epoch, first_step)
        if diverged:
            results["divergence"] = diverged
            break
        train_seconds = time.time() - start
        record = {
            "epoch": epoch + 1,
            "train_loss": train_metrics["loss"],
            "train_accuracy": train_metrics["accuracy"],
            "learning_rate": float(keras.ops.convert_to_numpy(
                schedule(optimizer.iterations - 1))),
            "wall_time_seconds": train_seconds,
        }
        if custom is None:
            record["step_seconds"] = step_timer.step_seconds
        last_epoch = epoch == config.epochs - 1
        start = time.time()
        for split in ("validation", "test"):
            if split == "test" and not (config.test_every_epoch or last_epoch):
                continue
            if split in pipelines:
                loss, accuracy = evaluate_model(pipelines[split].epoch(0))
                record[f"{split}_loss"], record[f"{split}_accuracy"] = loss, accuracy
        record["evaluation_seconds"] = time.time() - start
        with summary_writer.as_default(step=epoch + 1):
            for key, value in record.items():
                if key != "epoch":
                    tf.summary.scalar(key, value)
        results["epochs"].append(record)
        epochs_done.assign(epoch + 1)
        results["diagnostics"] = {cb.diagnostic_name: cb.history for cb in _diagnostics(extra_callbacks)}
        resume.store_history(history_store, results)
        manager.save(checkpoint_number=epoch + 1)
        results["timing"] = _timing(started, step_timer)
        if chief:
            write_json_atomically(results_path, results, indent=2, sort_keys=True)
        if config.verbose:
            shown = {k: round(v, 4) for k, v in record.items() if k.endswith(("loss", "accuracy"))}
            print(f"epoch {epoch + 1}: {shown}")

    results["status"] = "diverged" if results.get("divergence") else "finished"
    results["final"] = dict(results["epochs"][-1]) if results["epochs"] else {}
    results["timing"] = _timing(started, step_timer)
    if chief:
        write_json_atomically(results_path, results, indent=2, sort_keys=True)
        if results["status"] == "finished":  # a diverged model's weights are not finite
            model.save(os.path.join(workdir, "model.keras"))
    if results["status"] == "diverged":
        print(f"{workdir}: {results['divergence']['message']}", flush=True)
    return results
