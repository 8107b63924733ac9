"""Which models K-FAC trains in which loop, replica count and precision: the support matrix.

    python -m tfwd.bench.support_matrix [--models=transformer,resnet32] [--json]

For every cell (model × loop ∈ {fit, custom} × replicas ∈ {1, 2} × dtype policy ∈ {float32,
mixed_bfloat16, float64}) it builds the model under the policy (``tfwd.train.precision``), a
KFAC-G optimizer (statistics every step, inverses every 3 steps, so factors, inverses and
preconditioning all act), installs ``tfwd.train.TrainStep`` and takes ``STEPS`` steps on a fixed
synthetic batch cycle, in Keras ``fit`` or in a ``strategy.run`` loop like the launcher's custom
loop. Per cell it reports whether the run completed, the first and last loss (the same batches
recur, so the loss must fall), the fraction of trainable parameters K-FAC preconditions, and for 2
replicas the largest weight difference from the 1-replica run of the same loop and policy (equal up
to summation order for models without batch norm; BatchNormalization normalizes by each replica's
own batch, so its 2-replica steps legitimately differ and the entry is reported, not judged).

Models: ``transformer`` on 28×28×1 inputs (the launcher's ``--model=transformer``) and
``resnet32`` with affine batch norm on 32×32×3 inputs at ``width_factor=1`` (the layer types of the
paper's width-4 net, at a size whose inverses fit a CPU in seconds). Two logical CPU devices are
configured before TensorFlow runs an op, so the 2-replica cells run without GPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfwd.choices.curvature import Curvature  # noqa: E402
from tfwd.choices.models import Architecture  # noqa: E402
from tfwd.choices.runtime import DtypePolicy, Loop, Strategy  # noqa: E402
from tfwd.train.strategy import configure_cpu_devices, make_strategy  # noqa: E402

STEPS = 6
GLOBAL_BATCH = 8
REPLICAS = (1, 2)
POLICIES = (DtypePolicy.FLOAT32, DtypePolicy.MIXED_BFLOAT16, DtypePolicy.FLOAT64)
MODELS = {
    # name: (input shape, tfwd.models.build keyword arguments)
    Architecture.TRANSFORMER: ((28, 28, 1), {}),
    Architecture.RESNET32: ((32, 32, 3), {"batch_norm": True, "bn_affine": True,
                                          "width_factor": 1}),
}


def _batches(input_shape) -> tf.data.Dataset:
    """Two fixed batches of images and labels, cycled to STEPS steps."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * GLOBAL_BATCH, *input_shape)).astype("float32")
    y = rng.integers(0, 10, 2 * GLOBAL_BATCH).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    return dataset.repeat(STEPS // 2)


def _build(model_name: str):
    import tfwd.models
    import tfwd.optimizers
    from tfwd.train import TrainStep

    input_shape, kwargs = MODELS[model_name]
    model = tfwd.models.build(model_name, input_shape=input_shape, num_classes=10, seed=0,
                              **kwargs)
    optimizer = tfwd.optimizers.KFAC(0.01, curvature=Curvature.GAUSS_NEWTON, cov_every=1,
                                     inv_every=3, damping=1e-2, kl_clip=1e-2, weight_decay=1e-4,
                                     seed=0)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    optimizer.attach(model)
    TrainStep(model).install()
    covered = sum(int(np.prod(v.shape)) for block in optimizer.curvature_blocks
                  for v in block.variables)
    total = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    return model, covered / total


def _train(model, strategy, dataset, loop: str) -> list[float]:
    """The loss of each of the STEPS steps."""
    if loop == Loop.FIT:
        losses = []
        per_batch = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
        model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=[per_batch])
        # fit's "loss" is the running mean of the epoch: undo it to get each step's loss.
        return [losses[0]] + [(i + 1) * losses[i] - i * losses[i - 1]
                              for i in range(1, len(losses))]
    replica_step = model.train_step.__self__.replica_step

    @tf.function
    def step(x, y):
        _, loss = strategy.run(replica_step, args=(x, y))
        return strategy.reduce("SUM", loss, axis=None)  # Keras divided by the replica count

    return [float(step(x, y)) for x, y in strategy.experimental_distribute_dataset(dataset)]


def run_cell(model_name: str, loop: str, replicas: int, policy: str) -> dict:
    from tfwd.train.precision import dtype_policy

    strategy = (make_strategy(Strategy.MIRRORED, 2) if replicas == 2
                else tf.distribute.get_strategy())
    cell = {"model": model_name, "loop": loop, "replicas": replicas, "dtype_policy": policy}
    started = time.perf_counter()
    try:
        keras.utils.set_random_seed(0)
        with dtype_policy(policy):
            with strategy.scope():
                model, coverage = _build(model_name)
            losses = _train(model, strategy, _batches(MODELS[model_name][0]), loop)
            weights = np.concatenate([keras.ops.convert_to_numpy(v).astype(np.float64).ravel()
                                      for v in model.trainable_variables])
    except Exception as error:  # a cell that fails is a finding of the matrix, not a crash
        cell.update(status="failed", error=f"{type(error).__name__}: {str(error)[:300]}",
                    traceback=traceback.format_exc()[-2000:])
        return cell
    finite = bool(np.all(np.isfinite(losses)) and np.all(np.isfinite(weights)))
    cell.update(status="ran" if finite else "not finite", coverage=coverage, steps=len(losses),
                first_loss=losses[0], last_loss=losses[-1], seconds=time.perf_counter() - started,
                weights=weights)
    return cell


def _agreement(cell: dict, reference: dict | None) -> None:
    """Adds to a 2-replica ``cell`` its largest weight difference from ``reference``, the
    1-replica cell of the same model, loop and policy, relative to the largest weight."""
    if reference and "weights" in cell and "weights" in reference:
        difference = np.abs(cell["weights"] - reference["weights"]).max()
        cell["max_weight_difference_vs_1_replica"] = float(
            difference / np.abs(reference["weights"]).max())


def _markdown(cells: list[dict]) -> str:
    rows = ["| model | loop | replicas | dtype policy | status | coverage | loss first → last "
            "| Δw vs 1 replica | seconds |", "|" + "---|" * 9]
    for c in cells:
        if c["status"] == "failed":
            rows.append(f"| {c['model']} | {c['loop']} | {c['replicas']} | {c['dtype_policy']} "
                        f"| failed: {c['error'][:80]} | | | | |")
            continue
        difference = c.get("max_weight_difference_vs_1_replica")
        rows.append(
            f"| {c['model']} | {c['loop']} | {c['replicas']} | {c['dtype_policy']} | {c['status']} "
            f"| {100 * c['coverage']:.2f} % | {c['first_loss']:.4f} → {c['last_loss']:.4f} "
            f"| {'' if difference is None else f'{difference:.1e}'} | {c['seconds']:.1f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", action="store_true", help="one JSON line per cell")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    configure_cpu_devices(2)
    cells = []
    for name in names:
        for loop in Loop.values():
            for policy in POLICIES:
                single = run_cell(name, loop, 1, policy)
                double = run_cell(name, loop, 2, policy)
                _agreement(double, single)
                for cell in (single, double):
                    cell.pop("weights", None)
                    if args.json:
                        print(json.dumps(cell), flush=True)
                    elif cell["status"] == "failed":
                        print(cell["traceback"], flush=True)
                    cells.append(cell)
    print(_markdown(cells))
    return 0 if all(c["status"] == "ran" for c in cells) else 1


if __name__ == "__main__":
    raise SystemExit(main())
