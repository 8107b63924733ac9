"""What an experiment is: a scale, the runs it trains, and the entry that reports on them.

An **entry** (``Experiment``) reproduces one table or figure of the two seed papers. Its
``runs(scale)`` lists the training runs (``Run``: a label, a ``TrainConfig``, the seeds, and at
paper scale optionally the hyper-parameter grid the paper searched); its
``report(context)`` turns their results into the artifact (a markdown table or a PNG plot)
with the published numbers beside the measured ones.

Three scales (``SCALES``):

* ``"paper"`` — the papers' datasets, models, epochs, schedules, grids and the authors'
  hyper-parameters (REFERENCE.md §3-4). Days of GPU time; not run here.
* ``"smoke"`` — real MNIST, small models, 2 epochs: every entry in a few minutes on a CPU.
  ``epochs`` and ``seeds`` may override its budget (REPRODUCTION.md runs).
* ``"tiny"`` — the same pipeline in seconds per run, for the tests only.

A run's identity is the hash of its configuration (``config_hash``): entries that need the
same run share it (``tfwd.experiments.runner`` trains it once).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Callable, Mapping, Sequence

from tfwd.train import TrainConfig

SCALES = ("paper", "smoke", "tiny")
# TrainConfig fields that do not change a run's numbers: left out of its identity.
COSMETIC_FIELDS = ("verbose", "data_dir")
# ``weight_norm_reference`` value that points at another run of the same entry.
REFERENCE_PREFIX = "run:"


@dataclasses.dataclass(frozen=True)
class Scale:
    """The size of an entry's runs.

    Args:
      name: one of ``SCALES``.
      epochs: smoke/tiny only — train this many epochs instead of the scale's default
        (epoch-based settings such as the noise phase follow it).
      seeds: smoke/tiny only — train every run with seeds 0..seeds-1.
    """

    name: str
    epochs: int | None = None
    seeds: int | None = None

    def __post_init__(self):
        if self.name not in SCALES:
            raise ValueError(f"scale {self.name!r} is not one of {SCALES}.")
        for field in ("epochs", "seeds"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{field} must be a positive integer or None, got {value!r}.")
            if value is not None and self.name == "paper":
                raise ValueError(
                    f"{field} overrides only the smoke and tiny scales; the paper scale "
                    "keeps the papers' settings."
                )

    @property
    def is_paper(self) -> bool:
        return self.name == "paper"

    def describe(self) -> str:
        overrides = [f"{k}={getattr(self, k)}" for k in ("epochs", "seeds") if getattr(self, k)]
        return self.name + (f" ({', '.join(overrides)})" if overrides else "")


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One training configuration of an entry, trained once per seed.

    Args:
      label: the run's name inside its entry (legend entry / table cell), e.g. ``"sgd/wd"``.
      config: the ``TrainConfig``; its ``seed`` is replaced by each of ``seeds``.
      seeds: the seeds to train.
      search: paper scale only — {TrainConfig field: values}: the grid searched on the
        held-out split before retraining on train + validation (``tfwd.tuning.run_search``).
      reference: the label of another run of the entry whose recorded weight norms this run
        transfers (paper 000 fig. 4); ``config.weight_norm_reference`` is then
        ``"run:<label>"`` and the runner fills in that run's results.json (same seed).
    """

    label: str
    config: TrainConfig
    seeds: tuple[int, ...] = (0,)
    search: Mapping[str, tuple] | None = None
    reference: str | None = None

    def __post_init__(self):
        if not self.seeds:
            raise ValueError(f"run {self.label!r} has no seed.")
        if self.reference is not None:
            expected = REFERENCE_PREFIX + self.reference
            if self.config.weight_norm_reference != expected:
                raise ValueError(
                    f"run {self.label!r} references {self.reference!r}: set "
                    f"config.weight_norm_reference={expected!r}."
                )
        self.config.validate()


@dataclasses.dataclass
class Artifact:
    """What an entry's report wrote: ``path`` relative to the entry directory.

    ``summary`` is one line for index.md (measured vs published); ``series`` names the
    plotted series (plots) or table columns (tables).
    """

    path: str
    kind: str  # "table" | "plot" | "page"
    summary: str
    series: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One registry entry: a table or figure of a seed paper.

    Args:
      name: registry key, ``p000_table1`` style.
      paper: ``"000"`` (Three Mechanisms of Weight Decay Regularization) or ``"002"``
        (Exploring curvature noise in large-batch stochastic optimization).
      result: the paper's label, e.g. ``"Table 1"``.
      description: what is compared, and how (one paragraph).
      runs: ``Scale -> list[Run]``.
      report: ``ReportContext -> Artifact`` (``tfwd.experiments.reporting``).
    """

    name: str
    paper: str
    result: str
    description: str
    runs: Callable[[Scale], Sequence[Run]]
    report: Callable[..., Artifact]

    @property
    def citation(self) -> str:
        return f"paper {self.paper}, {self.result}"


def seeded(config: TrainConfig, seed: int) -> TrainConfig:
    """``config`` with ``seed`` (a copy)."""
    return dataclasses.replace(config, seed=seed)


def config_hash(config: TrainConfig, search: Mapping[str, tuple] | None = None,
                reference_hash: str | None = None) -> str:
    """12 hex digits identifying a run: the fields of its config that differ from the
    ``TrainConfig`` defaults (so a field added later with a behaviour-preserving default
    keeps finished runs valid), its search grid, and for a weight-norm transfer the identity
    of the run it copies norms from. Cosmetic fields (``COSMETIC_FIELDS``) do not count."""
    defaults = TrainConfig().to_dict()
    values = {k: v for k, v in config.to_dict().items()
              if k not in COSMETIC_FIELDS and v != defaults[k]}
    if reference_hash is not None:
        values["weight_norm_reference"] = REFERENCE_PREFIX + reference_hash
    payload = {"config": values}
    if search:
        payload["search"] = {k: list(v) for k, v in sorted(search.items())}
    text = json.dumps(payload, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
