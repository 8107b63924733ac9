"""One worker of a 2-process MultiWorkerMirroredStrategy check (run by test_distributed.py).

usage: multiworker_step.py WORKER_INDEX PORT0,PORT1 OUT.npz
Trains the tiny model of ``test_distributed._build`` for a few K-FAC steps with the custom
strategy.run step, with inverses shared out across the workers and without, and saves the
flattened weights of both runs and the layers whose inverses this worker computed when sharing.
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

from test_distributed import recording_inverted_layers, run_steps  # noqa: E402

# One strategy for both runs: a second one in the process would reuse collective keys.
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with recording_inverted_layers() as inverted:
    sharded = run_steps(strategy, "kfac", loop="custom", shard_inverses=True)
unsharded = run_steps(strategy, "kfac", loop="custom", shard_inverses=False)
np.savez(out, sharded=np.concatenate([w.ravel() for w in sharded]),
         unsharded=np.concatenate([w.ravel() for w in unsharded]),
         inverted=np.array(sorted({name for name, _ in inverted})))
