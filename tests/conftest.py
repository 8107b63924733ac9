"""Test-session set-up that must happen before TensorFlow runs any op.

Two logical CPU devices let the multi-replica tests run without GPUs; they have to be
configured at import time, before the first op, or TensorFlow raises RuntimeError.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

# absl flags raise UnparsedFlagAccessError under plain pytest unless marked as parsed.
flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session")
def two_replicas():
    """The session's one 2-replica MirroredStrategy over the logical CPUs.

    Several MirroredStrategy objects in one process share collective group and instance
    keys: a second strategy's all-reduce can be matched with a first one's earlier op of
    another shape ("Shape mismatch in the collective instance 100"). Tests therefore share the
    one ``tfwd.train.make_strategy`` keeps for the process, as train() runs do.
    """
    from tfwd.train import make_strategy

    return make_strategy("mirrored", 2)
