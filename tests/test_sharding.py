"""The assignment of inverse work to replicas (tfwd.optimizers.sharding), without a strategy.

The 2-device and 2-worker runs that check the sharded update against the unsharded one are
in test_distributed.py.
"""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfwd.curvature.registry import split_blocks
from tfwd.optimizers import KFAC
from tfwd.optimizers.sharding import (greedy_assignment, local_parts, replica_loads,
                                      sharded_inverse_flops)


def test_longest_block_first_onto_the_least_loaded_replica():
    # By hand: 5 → r0; 4 → r1 (idle); 3 → r1 (4 < 5); 3 → r0 (5 < 7); 3 → r1 (7 < 8).
    costs = [3, 5, 3, 4, 3]
    owners = greedy_assignment(costs, 2)
    assert owners == [1, 0, 0, 1, 1]
    assert replica_loads(costs, owners, 2) == [5 + 3, 4 + 3 + 3]


def test_ties_go_in_block_order_to_the_lowest_replica():
    assert greedy_assignment([2, 2, 2, 2, 2], 3) == [0, 1, 2, 0, 1]
    assert greedy_assignment([7, 1], 1) == [0, 0]


def _optimal_largest_load(costs, replicas):
    """Brute force over every assignment: the best possible largest load."""
    return min(max(replica_loads(costs, owners, replicas))
               for owners in itertools.product(range(replicas), repeat=len(costs)))


@pytest.mark.parametrize("replicas", [2, 3])
def test_largest_load_is_within_grahams_bound_of_the_optimum(replicas):
    rng = np.random.default_rng(replicas)
    for _ in range(20):
        costs = [int(c) for c in rng.integers(1, 100, size=7)]
        largest = max(replica_loads(costs, greedy_assignment(costs, replicas), replicas))
        optimum = _optimal_largest_load(costs, replicas)
        # Graham (1969): LPT ≤ (4/3 − 1/(3R)) · optimum; any list schedule ≤ Σ/R + max.
        assert largest <= (4 / 3 - 1 / (3 * replicas)) * optimum + 1e-9
        assert largest <= sum(costs) / replicas + max(costs)


def test_bad_replica_count_raises():
    with pytest.raises(ValueError, match="replicas must be >= 1"):
        greedy_assignment([1, 2], 0)


def _mlp_blocks():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="hidden"),
                              keras.layers.Dense(3, name="top")])
    blocks, _ = split_blocks(model)
    return blocks


def test_per_replica_flops_add_up_to_one_replicas_work():
    blocks = _mlp_blocks()
    flops = sharded_inverse_flops(blocks, 2)
    costs = [b.inverse_cost() for b in blocks]
    assert flops["unsharded_flops_per_replica"] == sum(costs)
    assert sorted(flops["sharded_flops_per_replica"]) == sorted(costs)  # one block each
    assert flops["owners"] == {"hidden": 0, "top": 1}  # hidden: 5³ + 6³ > top: 6³ + 3³


def _checked(block, values):
    return [tf.debugging.check_numerics(v, f"factors of {block.name} are not finite")
            for v in values]


def _inverses_of(block, values):
    return block.damped_inverses(values, 1e-2)


def _factors(blocks, rng):
    factors = []
    for block in blocks:
        values = []
        for spec in block.factor_specs():
            root = rng.normal(size=spec.shape).astype("float32")
            values.append(tf.constant(root @ root.T))
        factors.append(values)
    return factors


def test_a_part_holds_its_owned_inverses_and_zeros_elsewhere():
    blocks = _mlp_blocks()
    factors = _factors(blocks, np.random.default_rng(0))
    parts = tf.function(lambda f: local_parts(blocks, [0, 1], 1, f, _inverses_of, _checked))(
        factors)
    hidden_zeros, top = parts[:2], parts[2:]
    for zeros, spec in zip(hidden_zeros, blocks[0].inverse_specs()):
        np.testing.assert_array_equal(zeros, np.zeros(spec.shape))
    # The owned block's part is its damped inverses (computed eagerly here, outside the part).
    for value, reference in zip(top, _inverses_of(blocks[1], factors[1])):
        np.testing.assert_allclose(value, reference, rtol=1e-6, atol=1e-7)


def test_a_replica_checks_the_factors_of_blocks_it_does_not_own():
    blocks = _mlp_blocks()
    factors = _factors(blocks, np.random.default_rng(1))
    factors[0][0] = factors[0][0] + np.nan
    part = tf.function(lambda f: local_parts(blocks, [0, 1], 1, f, _inverses_of, _checked))
    with pytest.raises(tf.errors.InvalidArgumentError, match="factors of hidden are not finite"):
        part(factors)


def test_shard_inverses_round_trips_the_config():
    config = KFAC(shard_inverses=False).get_config()
    assert config["shard_inverses"] is False
    assert KFAC.from_config(config).shard_inverses is False
    assert KFAC().shard_inverses is True
