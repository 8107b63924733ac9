"""README's main job, end to end, timed for one or more installs (before/after a change).

    python -m tfwd.bench.end_to_end --pythons=before=/tmp/venv_old/bin/python,after=python \
        --workdir=/tmp/e2e

Each label names a Python interpreter in whose environment one tree of tfwd is installed (a
virtualenv with ``pip install -e <tree>``: ``PYTHONPATH`` alone does not isolate a tree, since
``tfwd.models`` and ``tfwd.tuning`` come from the installed package). Each runs, one after the
other, ``<python> -m tfwd.launch.train <README's flags> --workdir=<workdir>/<label>`` from
``<workdir>`` (so no source tree in the working directory shadows the install); the labels
alternate when ``--rounds`` > 1. For each run it prints one JSON line with the ``tfwd``
package directory that ran and

* ``total_seconds``: process spawn to exit; ``cpu_seconds``: the process's user + system CPU
  time, which waiting for a core on a shared machine does not inflate;
* ``first_step_seconds``: spawn to the progress bar's first ``1/<steps>`` (the first training
  step done, tracing included); ``cpu_seconds_to_first_step``: the process's CPU time until its
  first step began (results.json's ``timing``, when the tree records it);
* per epoch ``fit_seconds`` (results.json's ``wall_time_seconds``), ``progress_bar_seconds``
  (the Keras progress bar's total for the epoch), ``step_seconds`` and ``evaluation_seconds``
  when the tree records them;
* ``mnist_load_seconds``: a separate process's time to build the train, validation and test
  pipelines (``tfwd.data.input_pipeline``), TensorFlow already imported.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import time

# README's first command (its training part), without --workdir.
README_JOB = ("--dataset=mnist --model=mlp --optimizer=kfac_g --lr=0.03 --damping=1e-3 "
              "--kl_clip=1e-4 --weight_decay=1e-3 --decay_type=decoupled --epochs=5 "
              "--batch_size=128 --seed=0").split()
_FIRST_STEP = re.compile(rb"\b1/(\d+)\b")
_ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")
_EPOCH_TOTAL = re.compile(r"^(\d+)/\1 \S+ (\d+)s ")
_MNIST_LOAD = """
import time, tensorflow, tfwd.data
start = time.time()
for split in ("train", "validation", "test"):
    tfwd.data.input_pipeline("mnist", split, batch_size=128, seed=0, training=split == "train")
print(time.time() - start)
"""


_PACKAGE_DIRECTORY = "import os, tfwd, tfwd.models; print(os.path.dirname(tfwd.__file__))"


def _environment() -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**environment, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run_python(python: str, code: str, cwd: str) -> str:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env=_environment(), check=True).stdout.strip().splitlines()[-1]


def run_job(python: str, workdir: str) -> dict:
    """One run of README's job by ``python``; the measurements of the module docstring."""
    shutil.rmtree(workdir, ignore_errors=True)
    command = [python, "-m", "tfwd.launch.train", f"--workdir={workdir}", *README_JOB]
    spawned = time.time()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=_environment(), cwd=os.path.dirname(workdir))
    output, first_step = b"", None
    while chunk := process.stdout.read1(65536):
        if first_step is None and _FIRST_STEP.search(chunk):
            first_step = time.time() - spawned
        output += chunk
    process.wait()
    total = time.time() - spawned
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children.ru_utime - children_before.ru_utime
           + children.ru_stime - children_before.ru_stime)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{python}: exit status {process.returncode}:\n{text[-3000:]}")
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    bar_totals = []  # an epoch's last progress-bar line ends in "\n", its updates in "\r"
    for line in text.split("\n"):
        match = _EPOCH_TOTAL.match(_ANSI_CODE.sub("", line.split("\r")[-1]))
        if match and match.group(2) != "0":  # "0s" is the ETA of the last update, not a total
            bar_totals.append(float(match.group(2)))
    epochs = []
    for index, record in enumerate(results["epochs"]):
        epochs.append({
            "fit_seconds": record["wall_time_seconds"],
            "progress_bar_seconds": bar_totals[index] if index < len(bar_totals) else None,
            "step_seconds": record.get("step_seconds"),
            "evaluation_seconds": record.get("evaluation_seconds"),
        })
    return {"total_seconds": total, "cpu_seconds": cpu, "first_step_seconds": first_step,
            "cpu_seconds_to_first_step": results.get("timing", {}).get("cpu_seconds_to_first_step"),
            "epochs": epochs,
            "test_accuracy": results["final"]["test_accuracy"]}


def mnist_load_seconds(python: str, cwd: str) -> float:
    return float(_run_python(python, _MNIST_LOAD, cwd))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pythons", required=True,
                        help="label=interpreter,label=interpreter (e.g. a virtualenv's bin/python)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    pythons = dict(item.split("=", 1) for item in args.pythons.split(","))
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    packages = {label: _run_python(python, _PACKAGE_DIRECTORY, workdir)
                for label, python in pythons.items()}
    if len(set(packages.values())) < len(packages):
        raise SystemExit(f"Two labels run the same tfwd install: {packages}. Give each tree "
                         "its own virtualenv (see this module's docstring).")
    for round_index in range(args.rounds):
        for label, python in pythons.items():
            started = time.strftime("%H:%M:%S")
            measured = run_job(python, os.path.join(workdir, label))
            measured["mnist_load_seconds"] = mnist_load_seconds(python, workdir)
            load = os.getloadavg()
            print(json.dumps({"label": label, "package": packages[label], "round": round_index,
                              "started": started, "load_average": load, **measured}), flush=True)


if __name__ == "__main__":
    main()
