"""tfwd.curvature.finite.check_finite: the same verdict as checking every entry."""
import numpy as np
import pytest
import tensorflow as tf

from tfwd.curvature.finite import check_finite

BIG = np.finfo(np.float32).max


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_entry_raises_with_the_message(bad):
    values = np.ones((3, 4), np.float32)
    values[1, 2] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match="factor X is not finite"):
        tf.function(check_finite)(tf.constant(values), "factor X is not finite")


def test_inf_and_minus_inf_together_raise():
    # Their sum is NaN; either alone gives ±inf: both are caught by the sum.
    values = tf.constant([[np.inf, -np.inf], [1.0, 2.0]], tf.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad"):
        check_finite(values, "bad")


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("values, sum_overflows", [
    (np.arange(12, dtype=np.float32).reshape(3, 4), False),
    (np.full((2, 2), BIG, np.float32), True),  # every entry finite, Σ = inf
])
def test_finite_entries_pass_unchanged_even_when_their_sum_overflows(compiled, values,
                                                                      sum_overflows):
    assert bool(np.isinf(tf.reduce_sum(values))) == sum_overflows
    check = tf.function(check_finite) if compiled else check_finite
    np.testing.assert_array_equal(check(tf.constant(values), "unused").numpy(), values)
