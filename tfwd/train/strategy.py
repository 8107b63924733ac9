"""The ``tf.distribute`` strategy of a run, and CPU devices for multi-replica runs.

* ``default``: no distribution (one device).
* ``mirrored``: ``MirroredStrategy`` over ``num_replicas`` GPUs, or over as many logical CPU
  devices when there is no GPU (``configure_cpu_devices`` must run before TensorFlow's first op).
* ``multi_worker``: ``MultiWorkerMirroredStrategy`` from the ``TF_CONFIG`` environment variable;
  training then uses the custom ``strategy.run`` loop.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from tfwd.choices.runtime import STRATEGIES, Strategy


def configure_cpu_devices(count: int) -> None:
    """Split the CPU into ``count`` logical devices (call before any TensorFlow op)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) >= count:
        return
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


# One strategy object per process and device set: several MirroredStrategy objects in one
# process reuse collective group/instance keys, so a later strategy's all-reduce can be
# matched with an earlier one's op of another shape ("Shape mismatch in the collective
# instance 100") — e.g. the second trial of a search, or a second train() call.
_STRATEGIES: dict = {}


def make_strategy(name: str, num_replicas: int = 1) -> tf.distribute.Strategy:
    """The strategy ``name`` over ``num_replicas`` devices, shared by all runs in this process."""
    key = (name, num_replicas)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _new_strategy(name, num_replicas)
    return _STRATEGIES[key]


def _new_strategy(name: str, num_replicas: int) -> tf.distribute.Strategy:
    if name == Strategy.DEFAULT:
        return tf.distribute.get_strategy()
    if name == Strategy.MIRRORED:
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus if gpus else tf.config.list_logical_devices("CPU")
        if len(devices) < num_replicas:
            raise ValueError(
                f"num_replicas={num_replicas} but only {len(devices)} device(s) are visible. "
                "Without GPUs, call tfwd.train.configure_cpu_devices(n) before any TensorFlow "
                "op (the launcher does this for --num_replicas)."
            )
        return tf.distribute.MirroredStrategy([d.name for d in devices[:num_replicas]])
    if name == Strategy.MULTI_WORKER:
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy='multi_worker' needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, '
                '"task": {"type": "worker", "index": 0}}).'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; use one of {STRATEGIES}.")


def is_chief() -> bool:
    """True on the process that writes results (worker 0, or without TF_CONFIG)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    return task.get("type", "worker") in ("chief", "worker") and task.get("index", 0) == 0 \
        and not ("chief" in config.get("cluster", {}) and task.get("type") == "worker")
