"""What an experiment is: a scale, the runs it trains, and the entry that reports on them.

An **entry** (``Experiment``) reproduces one table or figure of the two seed papers. Its
``runs(scale)`` lists the training runs (``Run``: its name as a ``RunKey``, a ``TrainConfig``,
the seeds, and at paper scale optionally the hyper-parameter grid the paper searched); its
``report(context)`` turns their results into the artifact (a markdown table or a PNG plot)
with the published numbers beside the measured ones.

Four scales (``SCALES``, ``tfwd.choices.scales``):

* ``"paper"`` — the papers' datasets, models, epochs, schedules, grids and the authors'
  hyper-parameters (docs/equations.md §9). Days of GPU time; not run here.
* ``"mnist_paper"`` — paper 002 table 1's MNIST rows exactly as the paper trains them (200
  epochs, M_L = 4096, ...), with the learning rate searched per regime on the held-out split:
  hours on a CPU (``tfwd.experiments.settings``, REPRODUCTION.md). Only the entries that list it
  in ``Experiment.scales``; ``networks`` restricts it to some of the rows.
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

from tfwd.choices.models import Architecture
from tfwd.choices.scales import SCALES, ScaleName
from tfwd.train import TrainConfig

# The scales of an entry that does not name its own (``Experiment.scales``).
DEFAULT_SCALES = (ScaleName.PAPER, ScaleName.SMOKE, ScaleName.TINY)
MNIST_PAPER_NETWORKS = (Architecture.MLP, Architecture.LENET)
# TrainConfig fields that do not change a run's numbers: left out of its identity.
COSMETIC_FIELDS = ("verbose", "data_dir")
# How a weight-norm transfer's identity spells the key of the run it copies norms from, inside
# ``config_hash``'s payload. Part of every such run's key (runs/<key>): changing it orphans
# finished runs.
_REFERENCE_IN_HASH = "run:{key}"


@dataclasses.dataclass(frozen=True)
class Scale:
    """The size of an entry's runs.

    Args:
      name: one of ``SCALES``.
      epochs: smoke/tiny only — train this many epochs instead of the scale's default
        (epoch-based settings such as the noise phase follow it).
      seeds: smoke/tiny only — train every run with seeds 0..seeds-1.
      networks: mnist_paper only — train only the rows of these networks (of
        ``MNIST_PAPER_NETWORKS``); None: all of them.
    """

    name: str
    epochs: int | None = None
    seeds: int | None = None
    networks: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.name not in SCALES:
            raise ValueError(f"scale {self.name!r} is not one of {SCALES}.")
        for field in ("epochs", "seeds"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{field} must be a positive integer or None, got {value!r}.")
            if value is not None and self.name in (ScaleName.PAPER, ScaleName.MNIST_PAPER):
                raise ValueError(
                    f"{field} overrides only the smoke and tiny scales; the {self.name} scale "
                    "keeps the papers' settings."
                )
        if self.networks is not None:
            if self.name != ScaleName.MNIST_PAPER:
                raise ValueError(f"networks selects rows of the mnist_paper scale only, not of "
                                 f"{self.name!r}.")
            unknown = sorted(set(self.networks) - set(MNIST_PAPER_NETWORKS))
            if unknown or not self.networks:
                raise ValueError(f"networks must be some of {MNIST_PAPER_NETWORKS}, got "
                                 f"{self.networks!r}.")

    @property
    def is_paper(self) -> bool:
        return self.name == ScaleName.PAPER

    def describe(self) -> str:
        overrides = [f"{k}={getattr(self, k)}" for k in ("epochs", "seeds") if getattr(self, k)]
        if self.networks:
            overrides.append("networks=" + ",".join(self.networks))
        return self.name + (f" ({', '.join(overrides)})" if overrides else "")


@dataclasses.dataclass(frozen=True)
class RunKey:
    """A run's name inside its entry, as fields: entries build it, reports look runs up by
    it, and nothing parses it back from text.

    ``label`` spells it for legends, tables, logs and the runner's ``only`` patterns: the
    fields that are set, joined by "/" in the order below, e.g.
    ``mnist/mlp(depth=2,width=256)/bn/sgd/wd/b640`` or ``abc/mnist/mlp/diag_f_plain``.

    Attributes:
      panel: the sub-figure group of the run, e.g. ``"abc"`` (paper 002, figure 3 a-c).
      setting: data, network and extras, e.g. ``"cifar10/vgg16/bn+aug"`` or ``"mnist/mlp"``.
      optimizer: ``TrainConfig.optimizer.name``.
      decay: paper 000's decay name (``tfwd.experiments.paper000.runs``).
      regime: paper 002's regime (``tfwd.experiments.paper002.regimes.REGIMES``).
      batch_size: written ``b<batch>`` (paper 000, table 3).
      lr_scaling: a learning-rate rule other than the entry's usual one (``"sqrt"``).
      name: a run named in words (paper 000, figure 4: ``"wn-conv"``).
    """

    panel: str | None = None
    setting: str | None = None
    optimizer: str | None = None
    decay: str | None = None
    regime: str | None = None
    batch_size: int | None = None
    lr_scaling: str | None = None
    name: str | None = None

    def __post_init__(self):
        if all(getattr(self, f.name) is None for f in dataclasses.fields(self)):
            raise ValueError("a RunKey needs at least one field.")

    @property
    def label(self) -> str:
        batch = None if self.batch_size is None else f"b{self.batch_size}"
        parts = (self.panel, self.setting, self.optimizer, self.decay, self.regime, batch,
                 self.lr_scaling, self.name)
        return "/".join(part for part in parts if part is not None)


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One training configuration of an entry, trained once per seed.

    Args:
      key: the run's name inside its entry (``RunKey``; ``label`` spells it).
      config: the ``TrainConfig``; its ``seed`` is replaced by each of ``seeds``.
      seeds: the seeds to train.
      search: paper scale only — {TrainConfig flat name: values}: the grid searched on the
        held-out split before retraining on train + validation (``tfwd.tuning.run_search``).
      reference: the key of another run of the entry whose recorded weight norms this run
        transfers (paper 000 fig. 4); the runner sets
        ``config.diagnostics.weight_norm_reference`` to that run's results.json (same seed), so
        the entry leaves it unset.
      search_once: with ``search``, the grid is searched once, with the first seed, and every
        seed then trains the best point on ``config.data.train_split`` (validation and test
        evaluated; paper 002 table 1 at the mnist_paper scale). False: every seed searches and
        retrains its best point on train + validation (paper 000, appendix A).
    """

    key: RunKey
    config: TrainConfig
    seeds: tuple[int, ...] = (0,)
    search: Mapping[str, tuple] | None = None
    reference: RunKey | None = None
    search_once: bool = False

    def __post_init__(self):
        if not self.seeds:
            raise ValueError(f"run {self.label!r} has no seed.")
        if self.reference is not None and self.config.diagnostics.weight_norm_reference is not None:
            raise ValueError(
                f"run {self.label!r} references run {self.reference.label!r}: leave "
                "config.diagnostics.weight_norm_reference unset, the runner points it at that "
                "run's results.json.")
        if self.search_once and not self.search:
            raise ValueError(f"run {self.label!r}: search_once needs a search grid.")
        self.config.validate()

    @property
    def label(self) -> str:
        return self.key.label


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
      scales: the scales the entry defines runs for.
    """

    name: str
    paper: str
    result: str
    description: str
    runs: Callable[[Scale], Sequence[Run]]
    report: Callable[..., Artifact]
    scales: tuple[str, ...] = DEFAULT_SCALES

    @property
    def citation(self) -> str:
        return f"paper {self.paper}, {self.result}"

    def check_scale(self, scale: Scale) -> None:
        """Raise ValueError, naming the entry's scales, if it has no runs at ``scale``."""
        if scale.name not in self.scales:
            raise ValueError(f"{self.name} is not defined at scale {scale.name!r}; its scales "
                             f"are {self.scales}.")


def seeded(config: TrainConfig, seed: int) -> TrainConfig:
    """``config`` with ``seed`` (a copy)."""
    return config.replace(seed=seed)


def config_hash(config: TrainConfig, search: Mapping[str, tuple] | None = None,
                reference_hash: str | None = None, search_once: bool = False) -> str:
    """12 hex digits identifying a run: the fields of its config that differ from the
    ``TrainConfig`` defaults, by flat name (``TrainConfig.flat``: the parts do not enter it),
    so that a field added later with a behaviour-preserving default keeps finished runs
    valid; its search grid (and whether it is searched once for all seeds,
    ``Run.search_once``), and for a weight-norm transfer the identity of the run it copies
    norms from. Cosmetic fields (``COSMETIC_FIELDS``) do not count."""
    defaults = TrainConfig().flat()
    values = {k: v for k, v in config.flat().items()
              if k not in COSMETIC_FIELDS and v != defaults[k]}
    if reference_hash is not None:
        values["weight_norm_reference"] = _REFERENCE_IN_HASH.format(key=reference_hash)
    payload = {"config": values}
    if search:
        payload["search"] = {k: list(v) for k, v in sorted(search.items())}
    if search_once:
        payload["search_once"] = True
    text = json.dumps(payload, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
