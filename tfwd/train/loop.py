"""``train(config, workdir)``: the one training entry point of every launcher, tuner and experiment.

A run goes through these steps (``_train``, one function each):

1. build (``_build``): check the workdir (``tfwd.train.workdir`` refuses another config), seed
   everything, make ops deterministic; strategy, input pipelines, model, optimizer, training
   step (``tfwd.train.step``), divergence monitor and checkpoint manager;
2. restore (``_restore``): a rerun with the same workdir and config resumes after the last
   finished epoch, with its history (``tfwd.train.resume``); a fresh K-FAC run initialises its
   factors with a pass over the training data. Then config.json is written;
3. per epoch, run it (``_run_epoch``): Keras ``fit`` with progress bar, or the custom
   ``strategy.run`` loop that multi-worker runs need; then the divergence check — a non-finite
   loss or update stops the run with status "diverged" (``tfwd.train.divergence``);
4. record it (``_evaluate_epoch``, ``_record_epoch``): validation and test, TensorBoard, a
   checkpoint of model + optimizer + history, and ``results.json`` (config, per-epoch
   losses/accuracies/learning rate/wall time, K-FAC's adapted damping λ and reduction ratio ρ
   when it adapts them, and the history of every
   ``tfwd.train.RecordedCallback`` — the diagnostics — under ``diagnostics.<name>``);
5. finish (``_finish``): status and final record in results.json, ``model.keras``.

Data order and all sampling are derived from (seed, epoch, step), so a resumed run computes the
same numbers as an uninterrupted one. A partly trained epoch is redone. Only the chief writes
files; the other workers write their share of each checkpoint into a scratch dir.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfwd.choices.data import Split
from tfwd.choices.optimizers import is_kfac
from tfwd.choices.runtime import Loop
from tfwd.noise import make_noise
from tfwd.optimizers import KFAC
from tfwd.train.build import (SMALL_BATCH_PIPELINE, TRAIN_PIPELINE, learning_rate_schedule,
                              make_model, make_optimizer, make_pipelines)
from tfwd.train.config import TrainConfig
from tfwd.train import divergence, resume, timing
from tfwd.train.files import write_json_atomically
from tfwd.train.precision import dtype_policy
from tfwd.train.recorded import recorded_callbacks, recorded_histories
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
        config.noise.kind, model,
        large_batch_size=config.schedule.batch_size,
        small_batch_size=config.schedule.small_batch_size,
        steps_per_epoch=steps_per_epoch, noise_until_epoch=config.noise.until_epoch,
        seed=config.runtime.seed, multiplicative_std=config.noise.multiplicative_std,
    )


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

    The run builds and trains under ``config.runtime.dtype_policy`` (``tfwd.train.precision``); the
    previous Keras policy and floatx are restored afterwards.

    ``callbacks``: extra Keras callbacks (``fit`` loop: passed to fit; custom loop: their
    epoch hooks are called). The histories of those that are ``tfwd.train.RecordedCallback``
    (the callbacks of ``tfwd.diagnostics``, which builds them from ``config.diagnostics.names`` in
    ``tfwd.diagnostics.train_with_diagnostics``) are written to results.json under
    ``diagnostics.<name>`` and restored on resume. Returns the same dict that is written to
    results.json; its ``status`` is "finished" or "diverged" (then ``divergence`` says where
    and what to try).
    ``overwrite`` deletes a previous run in ``workdir``; without it a run with another config
    there is refused (``tfwd.train.workdir.WorkdirError``) before any work.
    """
    config.validate()
    with dtype_policy(config.runtime.dtype_policy):
        return _train(config, workdir, callbacks, overwrite)


def _train(config: TrainConfig, workdir: str, callbacks, overwrite: bool) -> dict:
    """The steps of the module docstring, in their order."""
    run = _build(config, workdir, list(callbacks or []), overwrite)
    _restore(run)
    if run.chief:
        config.save(os.path.join(workdir, "config.json"))
    runner = _epoch_runner(run)
    for epoch in range(int(run.epochs_done), config.schedule.epochs):
        train_metrics, diverged, train_seconds = _run_epoch(run, runner, epoch)
        if diverged:
            run.results["divergence"] = diverged
            break
        record = _evaluate_epoch(run, runner, epoch, train_metrics, train_seconds)
        _record_epoch(run, runner, record)
    return _finish(run, runner)


@dataclasses.dataclass
class _Run:
    """What the build step makes: everything the later steps read or write."""

    config: TrainConfig
    workdir: str
    write_dir: str  # the workdir on the chief, a scratch dir on the other workers
    chief: bool
    started: float  # time.time() once the workdir is checked
    strategy: tf.distribute.Strategy
    pipelines: dict  # split name -> input pipeline (tfwd.train.build.make_pipelines)
    schedule: Callable  # optimizer step -> learning rate
    model: keras.Model
    optimizer: keras.optimizers.Optimizer  # ours; under mixed_float16 model.optimizer wraps it
    train_step: TrainStep
    monitor: divergence.DivergenceMonitor
    callbacks: list  # the caller's Keras callbacks
    epochs_done: tf.Variable  # completed epochs, saved in every checkpoint
    history_store: tf.Variable  # the results' history, saved in every checkpoint
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    results: dict  # what results.json holds

    @property
    def results_path(self) -> str:
        return os.path.join(self.workdir, RESULTS_FILE)


@dataclasses.dataclass
class _EpochRunner:
    """What trains and records the epochs; made once config.json is written."""

    custom_loop: _CustomLoop | None  # None: Keras fit
    step_timer: timing.StepTimer
    fit_callbacks: list
    callback_list: keras.callbacks.CallbackList  # the custom loop calls the epoch hooks here
    summary_writer: tf.summary.SummaryWriter
    evaluate_model: Callable  # dataset -> (mean loss, accuracy)


def _start(config: TrainConfig, workdir: str, overwrite: bool) -> tuple[bool, str, float]:
    """Check the workdir, seed everything, make ops deterministic: (chief, write_dir, started)."""
    chief = is_chief()
    prepare_workdir(config, workdir, overwrite)
    started = time.time()
    # Non-chief workers still take part in checkpoint writes (collectives), into a scratch dir.
    write_dir = workdir if chief else tempfile.mkdtemp(prefix="tfwd-worker-")
    keras.utils.set_random_seed(config.runtime.seed)
    tf.config.experimental.enable_op_determinism()
    return chief, write_dir, started


def _build_model(config: TrainConfig, train_pipe, schedule):
    """(model, optimizer, training step), compiled and built; call under the strategy's scope."""
    model = make_model(config, train_pipe)
    optimizer = make_optimizer(config, schedule)
    model.compile(optimizer=optimizer, loss=_loss(), metrics=["accuracy"])
    if is_kfac(config.optimizer.name):
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
    return model, optimizer, train_step


def _build(config: TrainConfig, workdir: str, callbacks: list, overwrite: bool) -> _Run:
    """Step 1: strategy, pipelines, model, optimizer, training step and checkpoint."""
    chief, write_dir, started = _start(config, workdir, overwrite)
    strategy = make_strategy(config.runtime.strategy, config.runtime.num_replicas)
    pipelines = make_pipelines(config)  # fails fast when data is missing
    train_pipe, small_pipe = pipelines[TRAIN_PIPELINE], pipelines.get(SMALL_BATCH_PIPELINE)
    schedule = learning_rate_schedule(
        config, train_pipe.steps_per_epoch, small_pipe.steps_per_epoch if small_pipe else 1
    )
    with strategy.scope():
        model, optimizer, train_step = _build_model(config, train_pipe, schedule)
    monitor = divergence.DivergenceMonitor(model)
    monitor.install()
    # Outside the scope: plain host variables, not per-replica ones.
    epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
    history_store = resume.history_variable()
    # model.optimizer: under mixed_float16 the LossScaleOptimizer, whose loss scale resumes too.
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     epochs_done=epochs_done, history=history_store)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(write_dir, "checkpoints"), 2)
    return _Run(
        config=config, workdir=workdir, write_dir=write_dir, chief=chief, started=started,
        strategy=strategy, pipelines=pipelines, schedule=schedule, model=model,
        optimizer=optimizer, train_step=train_step, monitor=monitor, callbacks=callbacks,
        epochs_done=epochs_done, history_store=history_store, checkpoint=checkpoint,
        manager=manager, results={"config": config.to_dict(), "epochs": [], "status": "running"},
    )


def _restore(run: _Run) -> None:
    """Step 2: resume after the newest readable checkpoint, or initialise K-FAC's factors."""
    config = run.config
    if resume.restore_newest_readable(run.checkpoint, run.manager):
        epochs_done = int(run.epochs_done)
        previous = resume.restored_history(run.history_store, run.results_path, epochs_done)
        run.results["epochs"] = previous["epochs"]
        for callback in recorded_callbacks(run.callbacks):
            callback.restore_history(
                previous["diagnostics"].get(callback.diagnostic_name, {}), epochs_done)
        # Always said, even at verbose=0: a resumed run must never pass for a fresh one.
        print(f"Resuming {run.workdir} after epoch {epochs_done}.", flush=True)
    elif is_kfac(config.optimizer.name) and config.optimizer.kfac.init_batches:
        # The authors initialise the factors with a pass over the training data.
        run.optimizer.initialize_factors(run.model, run.pipelines[TRAIN_PIPELINE].epoch(0),
                                         config.optimizer.kfac.init_batches)


def _epoch_runner(run: _Run) -> _EpochRunner:
    """The fit callbacks or the custom loop, the TensorBoard writer and the evaluator."""
    custom = (_CustomLoop(run.train_step, run.strategy, run.monitor)
              if run.config.runtime.loop == Loop.CUSTOM else None)
    step_timer = timing.StepTimer()
    return _EpochRunner(
        custom_loop=custom,
        step_timer=step_timer,
        fit_callbacks=[step_timer, divergence.DivergenceCallback(run.monitor)] + run.callbacks,
        callback_list=keras.callbacks.CallbackList(run.callbacks, model=run.model),
        # TensorBoard: this one writer, for the whole run, gets every epoch's record. (Keras's
        # TensorBoard callback, built per fit call, cost ~37 s per epoch and one file per epoch.)
        summary_writer=tf.summary.create_file_writer(
            os.path.join(run.write_dir, "logs", "epochs")),
        evaluate_model=make_evaluator(run.model),
    )


def _train_epoch(run: _Run, runner: _EpochRunner, epoch: int) -> tuple[dict, str | None]:
    """Train epoch ``epoch`` (0-based) by fit or the custom loop: (metrics, K-FAC's failure)."""
    config = run.config
    phase = (SMALL_BATCH_PIPELINE if epoch < config.schedule.small_batch_epochs
             else TRAIN_PIPELINE)
    pipe = run.pipelines[phase]
    try:
        if runner.custom_loop is None:
            history = run.model.fit(pipe.epoch(epoch), initial_epoch=epoch, epochs=epoch + 1,
                                    verbose=config.runtime.verbose, callbacks=runner.fit_callbacks,
                                    shuffle=False)
            return {k: float(v[-1]) for k, v in history.history.items()}, None
        if config.runtime.verbose:
            print(f"Epoch {epoch + 1}/{config.schedule.epochs}")
        runner.callback_list.on_epoch_begin(epoch)
        train_metrics = runner.custom_loop.run_epoch(pipe.epoch(epoch), pipe.steps_per_epoch,
                                                     config.runtime.verbose)
        runner.callback_list.on_epoch_end(epoch, dict(train_metrics))
        return train_metrics, None
    except tf.errors.InvalidArgumentError as error:
        if not divergence.is_kfac_factor_error(error):
            raise
        return {}, str(error).split("\n")[0]


def _run_epoch(run: _Run, runner: _EpochRunner, epoch: int) -> tuple[dict, dict | None, float]:
    """Step 3: train one epoch and check it: (metrics, divergence entry or None, seconds)."""
    start, first_step = time.time(), _steps_done(run.optimizer)
    train_metrics, failure = _train_epoch(run, runner, epoch)
    diverged = _divergence(run.config, run.monitor, run.optimizer, train_metrics, failure,
                           epoch, first_step)
    return train_metrics, diverged, time.time() - start


def _damping_record(optimizer) -> dict:
    """Adaptive damping's λ and its last reduction ratio ρ (docs/equations.md §4.9) at the
    end of the epoch, when the optimizer adapts them: so the run's record shows the rule act."""
    if not isinstance(optimizer, KFAC) or optimizer.damping_adaptation is None:
        return {}
    return {"damping": float(keras.ops.convert_to_numpy(optimizer.damping_variable)),
            "reduction_ratio": float(keras.ops.convert_to_numpy(optimizer.reduction_ratio))}


def _evaluate_epoch(run: _Run, runner: _EpochRunner, epoch: int, train_metrics: dict,
                    train_seconds: float) -> dict:
    """Step 4a: the epoch's record: training metrics, learning rate, times, validation/test."""
    config = run.config
    record = {
        "epoch": epoch + 1,
        "train_loss": train_metrics["loss"],
        "train_accuracy": train_metrics["accuracy"],
        "learning_rate": float(keras.ops.convert_to_numpy(
            run.schedule(run.optimizer.iterations - 1))),
        "wall_time_seconds": train_seconds,
    }
    if runner.custom_loop is None:
        record["step_seconds"] = runner.step_timer.step_seconds
    record.update(_damping_record(run.optimizer))
    last_epoch = epoch == config.schedule.epochs - 1
    start = time.time()
    for split in (Split.VALIDATION, Split.TEST):
        if split == Split.TEST and not (config.data.test_every_epoch or last_epoch):
            continue
        if split in run.pipelines:
            loss, accuracy = runner.evaluate_model(run.pipelines[split].epoch(0))
            record[f"{split}_loss"], record[f"{split}_accuracy"] = loss, accuracy
    record["evaluation_seconds"] = time.time() - start
    return record


def _record_epoch(run: _Run, runner: _EpochRunner, record: dict) -> None:
    """Step 4b: TensorBoard, the checkpoint (with the history) and results.json of an epoch."""
    completed = record["epoch"]
    with runner.summary_writer.as_default(step=completed):
        for key, value in record.items():
            if key != "epoch":
                tf.summary.scalar(key, value)
    run.results["epochs"].append(record)
    run.epochs_done.assign(completed)
    run.results["diagnostics"] = recorded_histories(run.callbacks)
    resume.store_history(run.history_store, run.results)
    run.manager.save(checkpoint_number=completed)
    run.results["timing"] = _timing(run.started, runner.step_timer)
    if run.chief:
        write_json_atomically(run.results_path, run.results, indent=2, sort_keys=True)
    if run.config.runtime.verbose:
        shown = {k: round(v, 4) for k, v in record.items() if k.endswith(("loss", "accuracy"))}
        print(f"epoch {completed}: {shown}")


def _finish(run: _Run, runner: _EpochRunner) -> dict:
    """Step 5: the final status and record in results.json; model.keras when finished."""
    results = run.results
    results["status"] = "diverged" if results.get("divergence") else "finished"
    results["final"] = dict(results["epochs"][-1]) if results["epochs"] else {}
    results["timing"] = _timing(run.started, runner.step_timer)
    if run.chief:
        write_json_atomically(run.results_path, results, indent=2, sort_keys=True)
        if results["status"] == "finished":  # a diverged model's weights are not finite
            run.model.save(os.path.join(run.workdir, "model.keras"))
    if results["status"] == "diverged":
        print(f"{run.workdir}: {results['divergence']['message']}", flush=True)
    return results
