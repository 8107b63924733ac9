"""The hyper-parameter grid of a search: values per TrainConfig field, parsed, checked, enumerated.

A grid maps TrainConfig fields, by flat name (``tfwd.train.config.FLAT_FIELDS``, the flags'
names), to the tuple of values to try, e.g.
``{"learning_rate": (0.3, 0.1, 0.03), "weight_decay": (1e-2, 1e-3)}``; the search trains every
point of the Cartesian product (paper 000, appendix A: grid search on a held-out 5k split).
Fields not in the grid keep the value of the search's base config.

This module owns every grid of the package, so that each grid's values are spelled once:

* ``default_grid`` — what ``python -m tfwd.launch.tune`` searches without ``--grid``
  (docs/equations.md §9 lists the best points of the authors' runs):

  - SGD: learning_rate {0.3, 0.1, 0.03} × weight_decay {1e-2, 3e-3, 1e-3, 3e-4, 1e-4}.
  - Adam: learning_rate {1e-3, 3e-4, 1e-4} × weight_decay {1, 0.3, 0.1, 3e-2, 1e-2} with
    decoupled decay (the paper's Adam "wd", best 0.3 at lr 3e-4; Keras shrinks by η·γ per
    step, so the useful γ are ~100× SGD's), or SGD's decay values with ``decay_type="l2"``.
  - K-FAC (G and F): learning_rate {3e-2, 1e-2, 3e-3} × damping {3e-2, 1e-2, 3e-3, 1e-3} ×
    SGD's weight_decay values.

* ``paper_000_grid`` — the paper-scale runs of paper 000's entries without published
  hyper-parameters (``tfwd.experiments``): wider learning-rate ranges, γ per decay form, no
  damping (the authors' K-FAC damping is fixed). The papers do not publish their grids; these
  contain the authors' best values.
* ``MNIST_PAPER_LEARNING_RATES`` — paper 002 table 1's MNIST rows at the mnist_paper scale.

Learning rates in a grid are base rates at ``base_batch_size`` (128 in the papers): with
``lr_scaling="linear"`` or ``"sqrt"`` in the base config every trial trains with the rate
rescaled to its ``batch_size`` (``tfwd.optimizers.scaled_learning_rate``, the one owner of the
rule), so one grid serves the papers' 128, 640 and 2000 batches; ``effective_learning_rates``
lists the rescaled grid.
"""
from __future__ import annotations

import itertools

from tfwd.choices.decay import DECAY_TYPE, DecayType
from tfwd.choices.optimizers import KFAC_OPTIMIZERS, OPTIMIZERS, Optimizer, is_kfac
from tfwd.optimizers import scaled_learning_rate
from tfwd.train import TrainConfig

# Grid key -> TrainConfig field, and the optimizers each field acts on.
ALIASES = {"lr": "learning_rate"}
_SGD, _ADAM, _KFAC_G, _KFAC_F = Optimizer.SGD, Optimizer.ADAM, Optimizer.KFAC_G, Optimizer.KFAC_F
_L2, _DECOUPLED = DecayType.L2, DecayType.DECOUPLED
TUNABLE_FIELDS = {
    "learning_rate": OPTIMIZERS,
    "weight_decay": OPTIMIZERS,
    "momentum": (_SGD, _KFAC_G, _KFAC_F),
    "damping": KFAC_OPTIMIZERS,
    "kl_clip": KFAC_OPTIMIZERS,
}

# Values several grids share.
_SGD_DECAYS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)  # SGD's γ; Adam's with L2
_ADAM_LEARNING_RATES = (1e-3, 3e-4, 1e-4)
_ADAM_DECOUPLED_DECAYS = (1.0, 0.3, 0.1, 3e-2, 1e-2)

# ``default_grid``.
_SGD_LEARNING_RATES = (0.3, 0.1, 0.03)
_KFAC_GRID = {
    "learning_rate": (3e-2, 1e-2, 3e-3),
    "damping": (3e-2, 1e-2, 3e-3, 1e-3),
    "weight_decay": _SGD_DECAYS,
}

# ``paper_000_grid``: base learning rates at batch 128. Decoupled SGD decay shrinks by ηγ per
# step where L2 through momentum 0.9 shrinks by ~10·ηγ, hence its 10x larger values.
_PAPER_000_KFAC_LEARNING_RATES = (0.1, 0.05, 0.03, 0.01, 3e-3, 1e-3, 3e-4)
_PAPER_000_KFAC_L2_DECAYS = (1e-3, 3e-4, 1e-4, 3e-5)
_PAPER_000_KFAC_DECOUPLED_DECAYS = (1.0, 0.3, 0.1, 3e-2, 1e-2, 3e-3)
PAPER_000_LEARNING_RATES = {
    _SGD: (0.3, 0.1, 0.03, 0.01),
    _ADAM: _ADAM_LEARNING_RATES,
    _KFAC_G: _PAPER_000_KFAC_LEARNING_RATES,
    _KFAC_F: _PAPER_000_KFAC_LEARNING_RATES,
}
PAPER_000_DECAYS = {
    (_SGD, _L2): _SGD_DECAYS,
    (_SGD, _DECOUPLED): (1e-1, 3e-2, 1e-2, 3e-3, 1e-3),
    (_ADAM, _L2): _SGD_DECAYS,
    (_ADAM, _DECOUPLED): _ADAM_DECOUPLED_DECAYS,
    (_KFAC_G, _L2): _PAPER_000_KFAC_L2_DECAYS,
    (_KFAC_G, _DECOUPLED): _PAPER_000_KFAC_DECOUPLED_DECAYS,
    (_KFAC_F, _L2): _PAPER_000_KFAC_L2_DECAYS,
    (_KFAC_F, _DECOUPLED): _PAPER_000_KFAC_DECOUPLED_DECAYS,
}

# Paper 002 table 1's MNIST rows at the mnist_paper scale: base learning rates at batch 128
# searched per regime, a factor 2 either side of its SGD's 0.1 (so 1.6 / 3.2 / 6.4 at
# M_L = 4096 under linear scaling): the paper tunes the rate per regime (appendix E, fig. 4)
# but does not give its grid.
MNIST_PAPER_LEARNING_RATES = (0.05, 0.1, 0.2)

Grid = dict  # field name -> tuple of values, in the order trials are enumerated


class GridError(ValueError):
    """A grid that cannot be searched; the message names the offending key or value."""


def default_grid(optimizer: str, decay_type: str = DECAY_TYPE) -> Grid:
    """The default grid of ``optimizer`` (module docstring)."""
    if optimizer == _SGD:
        return {"learning_rate": _SGD_LEARNING_RATES, "weight_decay": _SGD_DECAYS}
    if optimizer == _ADAM:
        decays = _ADAM_DECOUPLED_DECAYS if decay_type == _DECOUPLED else _SGD_DECAYS
        return {"learning_rate": _ADAM_LEARNING_RATES, "weight_decay": decays}
    if is_kfac(optimizer):
        return dict(_KFAC_GRID)
    raise GridError(f"No default grid for optimizer {optimizer!r}.")


def paper_000_grid(optimizer: str, decay_type: str | None) -> Grid:
    """Paper 000's paper-scale grid: learning rate, and γ when the run decays
    (``decay_type``; None: no decay)."""
    grid = {"learning_rate": PAPER_000_LEARNING_RATES[optimizer]}
    if decay_type is not None:
        grid["weight_decay"] = PAPER_000_DECAYS[(optimizer, decay_type)]
    return grid


def parse_grid(text: str) -> Grid:
    """``"lr=0.1,0.03;weight_decay=1e-4,1e-3"`` -> ``{"learning_rate": (0.1, 0.03), ...}``.

    Keys are TrainConfig fields from ``TUNABLE_FIELDS`` (or ``lr``); values are numbers.
    """
    grid = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, separator, values = part.partition("=")
        key = key.strip()
        if not separator or not key:
            raise GridError(f"{part.strip()!r} is not KEY=V1,V2,...; write e.g. "
                            "'lr=0.1,0.03;weight_decay=1e-4,1e-3'.")
        field = ALIASES.get(key, key)
        if field not in TUNABLE_FIELDS:
            raise GridError(f"unknown key {key!r}; tunable keys are "
                            f"{sorted(set(TUNABLE_FIELDS) | set(ALIASES))}.")
        if field in grid:
            raise GridError(f"key {key!r} appears twice.")
        numbers = []
        for value in values.split(","):
            try:
                numbers.append(float(value))
            except ValueError:
                raise GridError(f"{key}: {value.strip()!r} is not a number.") from None
        if len(set(numbers)) != len(numbers):
            raise GridError(f"{key}: repeated values in {values.strip()!r}.")
        grid[field] = tuple(numbers)
    if not grid:
        raise GridError(f"{text!r} holds no KEY=V1,V2,... entry.")
    return grid


def format_grid(grid: Grid) -> str:
    """The inverse of ``parse_grid`` (with field names as keys)."""
    return ";".join(f"{key}={','.join(repr(v) for v in values)}" for key, values in grid.items())


def grid_points(grid: Grid) -> list[dict]:
    """Every point of the grid, the last key varying fastest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def point_config(base: TrainConfig, point: dict) -> TrainConfig:
    """``base`` with the point's values (a copy; ``base`` is unchanged)."""
    return base.replace(**point)


def check_grid(grid: Grid, base: TrainConfig) -> None:
    """Raise GridError unless every point of ``grid`` is a valid run of ``base.optimizer.name``."""
    for field in grid:
        if base.optimizer.name not in TUNABLE_FIELDS[field]:
            raise GridError(f"{field} has no effect on optimizer {base.optimizer.name!r} (it acts "
                            f"on {', '.join(TUNABLE_FIELDS[field])}); remove it from the grid.")
    for point in grid_points(grid):
        try:
            point_config(base, point).validate()
        except ValueError as error:
            raise GridError(f"point {point}: {error}") from None


def effective_learning_rates(grid: Grid, base: TrainConfig) -> tuple[float, ...]:
    """The grid's learning rates as trials apply them (rescaled to ``base.schedule.batch_size``)."""
    rates = grid.get("learning_rate", (base.optimizer.learning_rate,))
    return tuple(scaled_learning_rate(rate, base.schedule.batch_size, base.schedule.base_batch_size,
                                      base.schedule.lr_scaling) for rate in rates)
