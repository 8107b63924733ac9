"""Data-parallel runs take the same steps as one replica with the same global batch.

Under a strategy Keras divides each replica's loss by the replica count and SUM-all-reduces
gradients; K-FAC additionally all-reduces (mean) its factor statistics. So 2 replicas at
global batch B must reproduce 1 replica at batch B (up to float summation order).
"""
import contextlib
import os
import socket
import subprocess
import sys
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfwd.optimizers
from tfwd.optimizers.sharding import greedy_assignment
from tfwd.train import TrainStep

GLOBAL_BATCH = 16
STEPS = 4


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 6)).astype("float32")
    y = rng.integers(0, 3, GLOBAL_BATCH * STEPS).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)


def _build(kind, **kfac_options):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, name="dense_1",
                                kernel_initializer=keras.initializers.GlorotUniform(1))(inputs)
    hidden = keras.layers.ReLU()(hidden)
    outputs = keras.layers.Dense(3, name="top",
                                 kernel_initializer=keras.initializers.GlorotUniform(2))(hidden)
    model = keras.Model(inputs, outputs)
    if kind == "kfac":
        # cov_every=1, inv_every=2: statistics, inverses and KL clipping all act in 4 steps.
        optimizer = tfwd.optimizers.KFAC(0.05, gauss_newton_samples=None, cov_every=1,
                                         inv_every=2, weight_decay=1e-2, kl_clip=1e-2,
                                         **kfac_options)
    elif kind == "kfac_low_rank":
        # One replica preconditions through the gradient's per-example factors; two replicas
        # (all-reduced gradients, per-replica factors) take the dense route: same updates.
        optimizer = tfwd.optimizers.KFAC(0.05, gauss_newton_samples=None, cov_every=1,
                                         inv_every=2, weight_decay=1e-2, kl_clip=1e-2,
                                         low_rank="always")
    elif kind == "kfac_f":
        optimizer = tfwd.optimizers.KFAC(0.05, curvature="fisher", cov_every=1, inv_every=2,
                                         weight_decay=1e-2, decay_type="l2", **kfac_options)
    elif kind == "adam":
        optimizer = tfwd.optimizers.Adam(0.01, weight_decay=1e-2, decay_type="l2")
    else:
        optimizer = tfwd.optimizers.SGD(0.1, weight_decay=1e-2, decay_type="l2")
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if kind.startswith("kfac"):
        optimizer.attach(model)
    else:
        optimizer.build(model.trainable_variables)
    TrainStep(model).install()
    return model, optimizer


def train(strategy, kind, loop, **kfac_options):
    """(model, optimizer) after STEPS steps of ``kind`` under ``strategy``, ``loop`` fit|custom."""
    with strategy.scope():
        model, optimizer = _build(kind, **kfac_options)
    dataset = _data()
    if loop == "fit":
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    else:
        step = tf.function(lambda x, y: strategy.run(model.train_step.__self__.replica_step,
                                                     args=(x, y)))
        for x, y in strategy.experimental_distribute_dataset(dataset):
            step(x, y)
    return model, optimizer


def run_steps(strategy, kind, loop, **kfac_options):
    """Weights after STEPS steps of ``kind`` under ``strategy`` with ``loop`` fit|custom."""
    model, _ = train(strategy, kind, loop, **kfac_options)
    return [v.numpy() for v in model.trainable_weights]


@pytest.mark.parametrize("kind", ["sgd", "adam", "kfac", "kfac_f", "kfac_low_rank"])
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_two_replicas_match_one(kind, loop, two_replicas):
    single = run_steps(tf.distribute.get_strategy(), kind, loop="fit")
    mirrored = run_steps(two_replicas, kind, loop=loop)
    moved = max(np.abs(a).max() for a in single)
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(b, a, atol=1e-5 * moved)


def test_low_rank_preconditioning_runs_on_one_replica_only(two_replicas, monkeypatch):
    from tfwd.curvature.kronecker import DenseBlock

    traced = []
    original = DenseBlock.precondition_low_rank
    monkeypatch.setattr(DenseBlock, "precondition_low_rank",
                        lambda self, *a: traced.append(self.name) or original(self, *a))
    run_steps(two_replicas, "kfac_low_rank", loop="fit")
    assert traced == []  # the factors are per replica, the gradient all-reduced: dense
    run_steps(tf.distribute.get_strategy(), "kfac_low_rank", loop="fit")
    assert set(traced) == {"dense_1", "top"}


def test_replicas_really_split_the_batch():
    # Guard against a vacuous comparison: a different global batch gives different weights.
    single = run_steps(tf.distribute.get_strategy(), "kfac", loop="fit")
    with tf.distribute.get_strategy().scope():
        model, _ = _build("kfac")
    model.fit(_data().unbatch().batch(GLOBAL_BATCH // 2), epochs=1, verbose=0, shuffle=False)
    assert max(np.abs(a - b.numpy()).max() for a, b in zip(single, model.trainable_weights)) > 1e-3


def test_mixed_float16_kfac_custom_loop_on_two_replicas_matches_one(tmp_path):
    # Keras's LossScaleOptimizer wraps K-FAC under mixed_float16; train() builds it before the
    # multi-replica step is traced (its variables created inside strategy.run fail the step).
    from tfwd.train import TrainConfig, train

    base = dict(dataset="mnist", model="mlp", model_kwargs={"depth": 1, "width": 16},
                batch_size=1000, epochs=1, verbose=0, seed=0, optimizer="kfac_g",
                learning_rate=0.03, kl_clip=1e-3, dtype_policy="mixed_float16", loop="custom",
                kfac_init_batches=1, evaluate_test=False)
    single = train(TrainConfig.from_flat(**base), str(tmp_path / "one"))
    double = train(TrainConfig.from_flat(**base, strategy="mirrored", num_replicas=2),
                   str(tmp_path / "two"))
    assert double["status"] == single["status"] == "finished"
    # float16 compute: the two summation orders agree to its round-off (2^-11), not float32's.
    assert double["final"]["train_loss"] == pytest.approx(single["final"]["train_loss"], rel=1e-2)
    assert double["final"]["validation_accuracy"] == pytest.approx(
        single["final"]["validation_accuracy"], abs=5e-3)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@contextlib.contextmanager
def recording_inverted_layers():
    """Yields the set of (layer name, device) of every damped-inverse computation traced."""
    computed = set()
    original = tfwd.optimizers.KFAC._damped_inverses

    def recording(optimizer, block, factor_values, *damping):
        inverses = original(optimizer, block, factor_values, *damping)
        computed.add((block.name, tf.DeviceSpec.from_string(inverses[0].device).to_string()))
        return inverses

    with mock.patch.object(tfwd.optimizers.KFAC, "_damped_inverses", recording):
        yield computed


def _inverse_copies(strategy, optimizer):
    """[device][inverse variable] values of every replica's copy."""
    variables = [v.value for inverses in optimizer.block_inverses for v in inverses]
    return [[strategy.experimental_local_results(v)[device].numpy() for v in variables]
            for device in range(len(strategy.extended.worker_devices))]


def _expected_owners(blocks, replicas):
    """The tiny model's two blocks on two replicas: the costlier one on replica 0 (LPT)."""
    costs = [b.inverse_cost() for b in blocks]
    assert len(blocks) == replicas == 2 and costs[0] != costs[1]
    costlier = max(range(2), key=lambda b: costs[b])
    return {blocks[costlier].name: 0, blocks[1 - costlier].name: 1}


@pytest.mark.parametrize("kind", ["kfac", "kfac_f"])
def test_sharded_inverses_equal_every_replica_computing_all(kind, two_replicas):
    runs = {}
    for shard in (True, False):
        model, optimizer = train(two_replicas, kind, "custom", shard_inverses=shard)
        runs[shard] = ([w.numpy() for w in model.trainable_weights],
                       _inverse_copies(two_replicas, optimizer))
    (sharded_weights, sharded_inverses), (weights, inverses) = runs[True], runs[False]
    # Each inverse is its owner's value plus zeros, and x + 0 = x: equal bit for bit.
    for a, b in zip(sharded_weights, weights):
        np.testing.assert_array_equal(a, b)
    for device_copies in sharded_inverses:
        for a, b in zip(device_copies, inverses[0]):
            np.testing.assert_array_equal(a, b)
    assert max(np.abs(a - np.eye(a.shape[-1])).max() for a in inverses[0]) > 1e-2  # not initial


def test_each_block_is_inverted_by_its_owner_only(two_replicas):
    devices = [tf.DeviceSpec.from_string(d).to_string()
               for d in two_replicas.extended.worker_devices]
    computed = {}
    for shard in (True, False):
        with recording_inverted_layers() as computed[shard]:
            _, optimizer = train(two_replicas, "kfac", "custom", shard_inverses=shard)
    blocks = optimizer.curvature_blocks
    owners = _expected_owners(blocks, 2)
    assert owners == {b.name: o for b, o in zip(blocks, greedy_assignment(
        [b.inverse_cost() for b in blocks], 2))}
    assert computed[True] == {(name, devices[owner]) for name, owner in owners.items()}
    assert computed[False] == {(b.name, d) for b in blocks for d in devices}


def test_two_worker_processes_match_one_replica(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "scripts", "multiworker_step.py")
    ports = ",".join(str(p) for p in _free_ports(2))
    outputs = [tmp_path / f"worker{i}.npz" for i in range(2)]
    workers = [subprocess.Popen([sys.executable, script, str(i), ports, str(outputs[i])],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for i in range(2)]
    for worker in workers:
        log, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, log.decode()[-3000:]
    model, optimizer = train(tf.distribute.get_strategy(), "kfac", "fit")
    single = np.concatenate([w.numpy().ravel() for w in model.trainable_weights])
    owners = _expected_owners(optimizer.curvature_blocks, 2)
    for worker, output in enumerate(outputs):
        result = np.load(output)
        np.testing.assert_allclose(result["sharded"], single, atol=1e-5 * np.abs(single).max())
        np.testing.assert_array_equal(result["sharded"], result["unsharded"])
        assert list(result["inverted"]) == [name for name, o in owners.items() if o == worker]


def test_runs_in_one_process_share_one_mirrored_strategy(two_replicas):
    # A second MirroredStrategy in the process would collide with the first's collective keys
    # (the second trial of a search failed so); train() therefore asks make_strategy.
    from tfwd.train import make_strategy

    assert make_strategy("mirrored", 2) is two_replicas
    assert make_strategy("mirrored", 2).num_replicas_in_sync == 2


def test_an_ordinary_kfac_step_all_reduces_what_an_sgd_step_does(two_replicas, monkeypatch):
    # Count the elements each all-reduce of the traced fit step reduces, by where it sits:
    # K-FAC's factor statistics may only be reduced inside its statistics-step branch, the
    # shared inverses only inside the inverse step (``_merge_inverses``, itself in a branch).
    reductions = []
    cross_device_ops = two_replicas.extended._cross_device_ops
    original = cross_device_ops.batch_reduce
    original_merge_inverses = tfwd.optimizers.KFAC._merge_inverses
    in_inverse_step = []

    def counting_batch_reduce(reduce_op, value_destination_pairs, options=None):
        size = sum(v.values[0].shape.num_elements() for v, _ in value_destination_pairs)
        graph = tf.compat.v1.get_default_graph().name
        where = "inverse step" if in_inverse_step else "branch" if "cond" in graph else "step"
        reductions.append((where, size))
        return original(reduce_op, value_destination_pairs, options)

    def flagged_merge_inverses(optimizer, strategy):
        in_inverse_step.append(True)
        try:
            return original_merge_inverses(optimizer, strategy)
        finally:
            in_inverse_step.pop()

    monkeypatch.setattr(cross_device_ops, "batch_reduce", counting_batch_reduce)
    monkeypatch.setattr(tfwd.optimizers.KFAC, "_merge_inverses", flagged_merge_inverses)
    counts = {}
    for kind in ("sgd", "kfac"):
        reductions.clear()
        with two_replicas.scope():
            model, optimizer = _build(kind)
        model.fit(_data().take(1), epochs=1, verbose=0)
        counts[kind] = list(reductions)
    parameters = sum(v.shape.num_elements() for v in model.trainable_variables)
    factors = sum(f.shape.num_elements() for fs in optimizer.block_factors for f in fs)
    inverses = sum(i.shape.num_elements() for inv in optimizer.block_inverses for i in inv)
    assert [size for _, size in counts["sgd"]] == [parameters]
    assert [size for where, size in counts["kfac"] if where == "step"] == [parameters]
    assert sum(size for where, size in counts["kfac"] if where == "branch") == factors
    assert sum(size for where, size in counts["kfac"] if where == "inverse step") == inverses
