"""K-FAC's damped inverses shared out across replicas instead of recomputed by each.

Without sharding, every replica recomputes every block's damped inverses on an inverse step:
R replicas do R times the same work (the factors are identical mirrored copies). With
sharding, each block b has one owner replica o(b) that computes its inverses, and the
results are shared:

    o = greedy longest-processing-time assignment on the blocks' ``inverse_cost`` c_b
        (Graham 1969): blocks by decreasing c_b (ties: block order), each onto the replica
        with the least cost assigned so far (ties: the lowest replica id). Deterministic; the
        largest load L_max ≤ (4/3 − 1/(3R)) · L_opt, and L_max ≤ Σ c_b / R + max c_b.
    X_r  = [inverses of b if o(b) = r else 0  for every block b]   (replica r's part)
    inverses ← Σ_r X_r      (one all-reduce SUM, onto every replica's inverse variables)

Each sum has exactly one non-zero term, and x + 0 = x exactly in floating point, so every
replica receives the owner's values bit for bit: the update equals the unsharded one.

Why an all-reduce SUM of zero-filled parts rather than an all-gather: the inverse step runs
in cross-replica context (a merge of the K-FAC step), where the public collective is
``extended.batch_reduce_to`` onto the inverse variables themselves, the same path the factor
statistics take (``KFAC._mean_over_replicas``), for MirroredStrategy and
MultiWorkerMirroredStrategy alike. An all-gather concatenates equal-shaped tensors, so blocks
of different shapes would need flattening, padding and splitting. The price is bandwidth: a
ring all-reduce moves about twice the bytes of an all-gather of the same inverses, once every
``inv_every`` steps, O(Σ d²) values against the O(Σ d³) factorizations it saves.

Used by ``tfwd.optimizers.kfac`` for MirroredStrategy and MultiWorkerMirroredStrategy with
more than one replica; a single replica (and any strategy that runs the inverse step in
replica context, without a merge) keeps the unsharded path.
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf
from tensorflow.python.distribute import values as distribute_values

SHARDED_STRATEGIES = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)


def greedy_assignment(costs: Sequence[float], replicas: int) -> list[int]:
    """The owner replica of each block: longest processing time first, least-loaded replica."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas!r}.")
    loads = [0] * replicas
    owners = [0] * len(costs)
    for block in sorted(range(len(costs)), key=lambda b: -costs[b]):  # stable: ties by order
        owner = min(range(replicas), key=lambda r: loads[r])  # ties: the lowest replica id
        owners[block] = owner
        loads[owner] += costs[block]
    return owners


def replica_loads(costs: Sequence[float], owners: Sequence[int], replicas: int) -> list:
    """The cost each replica computes under ``owners``."""
    loads = [0] * replicas
    for cost, owner in zip(costs, owners):
        loads[owner] += cost
    return loads


def shards_inverses(strategy: tf.distribute.Strategy) -> bool:
    """Whether the inverse step under ``strategy`` can be shared out: a mirrored strategy with
    more than one replica, inside its merge (cross-replica context)."""
    return (isinstance(strategy, SHARDED_STRATEGIES) and strategy.num_replicas_in_sync > 1
            and tf.distribute.in_cross_replica_context())


def local_replica_ids(strategy: tf.distribute.Strategy) -> list[int]:
    """The global replica ids of this worker's devices, in ``extended.worker_devices`` order
    (worker w of MultiWorkerMirroredStrategy with n devices each holds w·n … w·n + n − 1)."""
    ids = strategy.experimental_distribute_values_from_function(
        lambda context: context.replica_id_in_sync_group)
    return list(strategy.experimental_local_results(ids))


def _local_values(strategy, variables, device_index: int) -> list:
    return [strategy.experimental_local_results(v.value)[device_index] for v in variables]


def local_parts(blocks, owners, replica: int, factor_values, inverses_of, checked) -> list:
    """Replica ``replica``'s part X_r, flat over blocks in ``inverse_specs`` order.

    ``factor_values[b]`` are this replica's copies of block b's factors; ``checked(block,
    values)`` validates them (every block, owned or not, so that every replica stops on the
    same step) and ``inverses_of(block, values)`` computes the damped inverses (owned only).
    """
    parts = []
    for block, owner, values in zip(blocks, owners, factor_values):
        values = checked(block, values)  # a check runs in a tf.function even when unread
        if owner == replica:
            parts.extend(inverses_of(block, values))
        else:
            parts.extend(tf.zeros(spec.shape, block.dtype) for spec in block.inverse_specs())
    return parts


def update_shared_inverses(strategy: tf.distribute.Strategy, blocks,
                           inverses_of: Callable, checked: Callable) -> None:
    """Every block's inverse variables ← its damped inverses, each computed by its owner and
    shared by an all-reduce SUM of zero-filled parts. Call in cross-replica context
    (``shards_inverses``); ``inverses_of`` and ``checked`` as in ``local_parts``."""
    owners = greedy_assignment([b.inverse_cost() for b in blocks], strategy.num_replicas_in_sync)
    devices = strategy.extended.worker_devices
    per_device = []
    for index, (device, replica) in enumerate(zip(devices, local_replica_ids(strategy))):
        with tf.device(device):
            factor_values = [_local_values(strategy, b.factors, index) for b in blocks]
            per_device.append(local_parts(blocks, owners, replica, factor_values, inverses_of,
                                          checked))
    targets = [inverse for block in blocks for inverse in block.inverses]
    # One value per local device, as a PerReplica even for one device per worker (which
    # batch_reduce_to would otherwise take as the same value on every replica).
    pairs = [(distribute_values.PerReplica(tuple(parts)), target.value)
             for parts, target in zip(zip(*per_device), targets)]
    shared = strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM, pairs)
    for target, value in zip(targets, shared):
        strategy.extended.update(target.value, lambda var, new: var.assign(new), args=(value,),
                                 group=False)


def sharded_inverse_flops(blocks, replicas: int) -> dict:
    """What each of ``replicas`` replicas computes on an inverse step, from ``inverse_cost``."""
    costs = [b.inverse_cost() for b in blocks]
    owners = greedy_assignment(costs, replicas)
    return {"replicas": replicas,
            "unsharded_flops_per_replica": sum(costs),
            "sharded_flops_per_replica": replica_loads(costs, owners, replicas),
            "owners": {b.name: owner for b, owner in zip(blocks, owners)}}
