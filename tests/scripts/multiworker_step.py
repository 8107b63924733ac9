"""One worker of a 2-process MultiWorkerMirroredStrategy check (run by test_distributed.py).

usage: multiworker_step.py WORKER_INDEX PORT0,PORT1 OUT.npy
Trains the tiny model of ``test_distributed._build`` for a few K-FAC steps with the custom
strategy.run step and saves the flattened weights.
"""
import json
import os
import sys

index, ports, out = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
    "task": {"type": "worker", "index": index},
})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from test_distributed import run_steps  # noqa: E402

weights = run_steps(tf.distribute.MultiWorkerMirroredStrategy(), "kfac", loop="custom")
np.save(out, np.concatenate([w.ravel() for w in weights]))
