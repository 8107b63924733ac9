"""How the benchmark measures time, and on what machine.

The machine is shared (2 cores, other people's jobs come and go), so a number timed a
minute after another is not comparable with it. Everything that enters one ratio is
therefore timed in *interleaved rounds* (``interleave``): round 1 of every series, then
round 2 of every series, …, so SGD, K-FAC and the floor's components sample the same spread
of machine load. A series' value is the median of its samples.

A call is timed with ``time.perf_counter`` around a blocking call: TensorFlow's eager context
executes synchronously on the CPU (``check_synchronous``), so a ``tf.function`` call or
``Model.train_on_batch`` returns only once its work is done.

Warm-up is excluded: ``tf.function`` s are traced before timing (``trace``); a series' first
execution is discarded (``warm_up``) — always for ``train_on_batch`` series, whose first call
traces, and for traced functions when it is cheap (< ``WARMUP_KEEP_SECONDS``), where one-time
costs (oneDNN primitive creation, first-touch allocation) are a visible share. A first
execution longer than that is kept as a sample: those costs are then well under 1 %, and
an eigendecomposition of a 4608 × 4608 factor takes minutes here.

Every sample holds two clocks: wall time (``perf_counter``, what the results report as
seconds) and this process's CPU time (``process_time``, all its threads). With other jobs on
the machine, wall time includes the time our threads waited for a core; CPU time counts only
the work done, so CPU-time ratios are the load-robust companion of the wall-time ratios (they
miss only real idling, e.g. a single-threaded op leaving the second core unused). Every
series also records the 1-minute load average at each of its rounds and the share of the
machine's cores this process used while it ran (CPU time / (wall time · cores)): a share well
below 1 means other jobs took the rest.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from typing import Callable, NamedTuple, Sequence

import keras
import tensorflow as tf

WARMUP_KEEP_SECONDS = 1.0


def progress(message: str) -> None:
    """A time-stamped progress line on stderr (stdout carries only the table or the JSON)."""
    print(f"[tfwd.bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def logical_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float:
    """The 1-minute load average (runnable processes on the machine), or NaN."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def machine_info() -> dict:
    return {
        "cpu_model": cpu_model(),
        "logical_cores": logical_cores(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or logical_cores(),
    }


def check_synchronous() -> None:
    if not tf.executing_eagerly() or tf.config.experimental.get_synchronous_execution() is False:
        raise RuntimeError(
            "tfwd.bench needs synchronous eager execution (the default): a call must return "
            "only when its work is done. Remove tf.config.experimental.set_synchronous_execution(False)."
        )


def trace(function, *args) -> None:
    """Trace a ``tf.function`` for ``args`` without running it."""
    function.get_concrete_function(*args)


class Sample(NamedTuple):
    wall: float  # seconds
    cpu: float  # CPU seconds of this process, all threads


def timed_call(call: Callable[[], object]) -> Sample:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return Sample(time.perf_counter() - wall, time.process_time() - cpu)


def medians(samples: Sequence[Sample]) -> Sample | None:
    """(median wall, median CPU) seconds, or None without samples."""
    if not samples:
        return None
    return Sample(statistics.median(s.wall for s in samples),
                  statistics.median(s.cpu for s in samples))


class Series:
    """Samples of one repeated call, ``per_round`` of them in each round.

    ``always_discard_first``: the first call traces (``train_on_batch``) and is never kept.
    Subclasses override ``_round`` to time something other than one call per sample.
    """

    def __init__(self, call: Callable[[], object], per_round: int,
                 always_discard_first: bool = False):
        if per_round < 1:
            raise ValueError(f"per_round must be >= 1, got {per_round}.")
        self.call, self.per_round = call, per_round
        self.always_discard_first = always_discard_first
        self.samples: list[Sample] = []
        self.loads: list[float] = []
        self._wall = self._cpu = 0.0

    def warm_up(self) -> None:
        check_synchronous()
        load = load_average()
        first = timed_call(self.call)
        if not self.always_discard_first and first.wall >= WARMUP_KEEP_SECONDS:
            self.samples.append(first)
            self.loads.append(load)
            self._wall += first.wall
            self._cpu += first.cpu

    def sample_round(self, work: Callable[[], None] | None = None) -> None:
        """One round of ``_round`` (or of ``work``), with its load and CPU share recorded."""
        self.loads.append(load_average())
        wall, cpu = time.perf_counter(), time.process_time()
        (work or self._round)()
        self._wall += time.perf_counter() - wall
        self._cpu += time.process_time() - cpu

    def _round(self) -> None:
        for _ in range(self.per_round):
            self.samples.append(timed_call(self.call))

    @property
    def median(self) -> float:
        """Median wall seconds."""
        return medians(self.samples).wall

    @property
    def cpu_median(self) -> float:
        """Median CPU seconds."""
        return medians(self.samples).cpu

    @property
    def cpu_share(self) -> float:
        return round(self._cpu / max(self._wall * logical_cores(), 1e-9), 3)

    @property
    def load_average(self) -> float:
        return round(statistics.mean(self.loads), 2) if self.loads else load_average()

    def to_json(self) -> dict:
        walls = [s.wall for s in self.samples]
        return {
            "median_seconds": self.median,
            "median_cpu_seconds": self.cpu_median,
            "samples": len(self.samples),
            "min_seconds": min(walls),
            "max_seconds": max(walls),
            "load_average": self.load_average,
            "cpu_share": self.cpu_share,
        }


def interleave(series: Sequence[Series], rounds: int) -> None:
    """Warm every series up, then run ``rounds`` rounds, each sampling every series once."""
    for item in series:
        item.warm_up()
    for round_index in range(rounds):
        progress(f"  round {round_index + 1}/{rounds} (load average {load_average()})")
        for item in series:
            item.sample_round()


def measure(call: Callable[[], object], repeats: int) -> Series:
    """A series of ``repeats`` calls on its own, not interleaved (warm-up as ``Series``)."""
    series = Series(call, per_round=1)
    series.warm_up()
    while len(series.samples) < repeats:
        series.sample_round()
    return series
